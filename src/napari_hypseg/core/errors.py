"""Errors a user can act on: each message says what was found and what to do about it."""


class HypsegError(Exception):
    """Base of every error whose message is meant for the user (CLI error line, GUI notification)."""


class VolumeError(HypsegError, ValueError):
    """A volume file or array that cannot be used: wrong dimensionality, NaN, corrupt or empty file."""


class CheckpointError(HypsegError):
    """A model file that is corrupt, not ours, or from another configuration."""


class ConfigError(HypsegError, ValueError):
    """A parameter outside its valid range, or parameters that contradict each other."""


class OutputError(HypsegError):
    """An output that cannot be written (missing or read-only folder), or that would replace an input."""
