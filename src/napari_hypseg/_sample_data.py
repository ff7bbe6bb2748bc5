"""npe2 sample data: one synthetic volume with its three levels of truth, regular or irregular."""

from __future__ import annotations

SAMPLE_SEED = 0
"""A fixed seed, so the sample is the same volume every time it is opened."""


def _sample(irregular: bool) -> list[tuple]:
    from .core.synthetic import make_toy_volume

    volume = make_toy_volume(SAMPLE_SEED, irregular=irregular)
    layers = [(volume.image, {"name": "toy image"}, "image")]
    layers += [(volume.truth[level], {"name": f"truth level {level}"}, "labels") for level in (1, 2, 3)]
    return layers


def toy_sample() -> list[tuple]:
    """The image and the truth at levels 1 (cell), 2 (+ organelles) and 3 (+ small objects)."""
    return _sample(irregular=False)


def irregular_toy_sample() -> list[tuple]:
    """The same, with deformed shapes."""
    return _sample(irregular=True)
