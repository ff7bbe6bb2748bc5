"""core.parallel: work on every core from threads."""

import numpy as np
import pytest


def test_one_ahead_keeps_order_passes_errors_and_stops_early():
    """The slabs of the image features are computed one ahead in a thread: the same items in the same
    order, an error inside reaches the caller, and leaving early leaves no thread running."""
    import threading

    from napari_hypseg.core.parallel import one_ahead

    assert list(one_ahead(iter(range(7)))) == list(range(7))
    assert list(one_ahead([])) == []
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i
    for item in one_ahead(items()):
        if item == 3:
            break
    assert made == [0, 1, 2, 3, 4]          # one computed ahead, no more
    assert not [t for t in threading.enumerate() if t.name.startswith("hypseg-ahead")]

    def failing():
        yield 1
        raise ValueError("bad slab")
    with pytest.raises(ValueError, match="bad slab"):
        list(one_ahead(failing()))


def test_threaded_gaussian_filter_is_scipys_to_the_bit():
    """core.parallel.gaussian_filter splits each 1-D pass across another axis: scipy's result
    exactly, in place, for thin and odd shapes too."""
    from scipy import ndimage

    from napari_hypseg.core.parallel import gaussian_filter

    rng = np.random.default_rng(2)
    for shape, sigma in [((4, 5, 6), 0.0), ((9, 31, 17), 1.5), ((1, 40, 3), 6.0), ((2, 2, 2), 0.7), ((33, 5, 64), 3.0)]:
        values = rng.normal(size=shape).astype(np.float32)
        expected = ndimage.gaussian_filter(values, sigma, mode="nearest")
        result = gaussian_filter(values, sigma, mode="nearest")
        assert result is values
        np.testing.assert_array_equal(values, expected)
