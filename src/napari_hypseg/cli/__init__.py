"""The `hypseg` command line: one subcommand per module in this package."""

from .main import main

__all__ = ["main"]
