"""Classical baselines the learnt hierarchy has to beat (method.md §13): k-means and a Gaussian
mixture on hand-made features, each clustering one volume directly into k groups.

They are part of the product, not only of the benchmarks: the demo prints the best of them beside
the model's score, so a user sees at once whether training was worth it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .parallel import worker_count

MAX_FIT_VOXELS = 200_000


def _standardise(features: np.ndarray) -> np.ndarray:
    return (features - features.mean(0)) / (features.std(0) + 1e-8)


def _fit_predict(model, features: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = features[rng.choice(len(features), min(MAX_FIT_VOXELS, len(features)), replace=False)]
    model.fit(sample)
    return model.predict(features) + 1


def intensity_features(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).reshape(-1, 1)


def smoothed_features(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma).reshape(-1, 1)


MULTISCALE_SIGMAS = (0.5, 1.0, 2.0, 4.0)
MULTISCALE_WINDOW = 5
MULTISCALE_REACH = int(4 * max(MULTISCALE_SIGMAS) + 0.5)
"""Planes the widest of those filters reaches on each side (scipy's Gaussians are cut at 4 sigma)."""


def multiscale_columns(image: np.ndarray) -> np.ndarray:
    """(Z, Y, X, 6) float32, not standardised: Gaussian-smoothed intensity at four scales, gradient
    magnitude at sigma 1 and the local standard deviation in a 5^3 neighbourhood."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    columns = [ndimage.gaussian_filter(image, s) for s in MULTISCALE_SIGMAS]
    columns.append(ndimage.gaussian_gradient_magnitude(image, 1.0))
    mean = ndimage.uniform_filter(image, MULTISCALE_WINDOW)
    columns.append(np.sqrt(np.maximum(ndimage.uniform_filter(image * image, MULTISCALE_WINDOW) - mean * mean, 0)))
    return np.stack(columns, axis=-1)


def _symmetric(index: int, size: int) -> int:
    """scipy.ndimage's "reflect" border (d c b a | a b c d | d c b a) as an index map, any distance."""
    index %= 2 * size
    return index if index < size else 2 * size - 1 - index


def multiscale_column_slabs(image, planes: int = 1):
    """Yield (start, (n, Y, X, 6) float32) for Z planes start..start+n-1, slab by slab: the columns of
    multiscale_columns of the whole volume (up to float rounding), with about 100 planes of the image's
    filters in memory whatever the volume's depth. `image` may be a memory map; it is read plane by plane.

    Why not filter slabs with a margin: the widest Gaussian reaches MULTISCALE_REACH (16) planes either
    side, so slabs of a 1k x 1k tomogram (one plane each) would filter 33 planes per plane kept. Instead every
    filter runs in Y and X on each plane once, is kept while the Z passes of later planes need it,
    and is combined along Z with the filter's own taps (its response to a unit impulse).
    """
    from scipy import ndimage

    from .pages import release_pages

    depth = image.shape[0]
    planes = max(1, int(planes))

    def taps(kernel) -> np.ndarray:
        """Convolution taps t = -r..r of a 1-D filter, from its response to an impulse."""
        radius = MULTISCALE_REACH
        impulse = np.zeros(2 * radius + 1)
        impulse[radius] = 1.0
        response = kernel(impulse)
        nonzero = np.flatnonzero(np.abs(response) > 0)
        reach = int(max(radius - nonzero[0], nonzero[-1] - radius))
        return response[radius - reach:radius + reach + 1]

    def gaussian(sigma, order=0):
        return lambda v: ndimage.gaussian_filter1d(v, sigma, order=order, mode="constant")

    def box(v):
        return ndimage.uniform_filter1d(v, MULTISCALE_WINDOW, mode="constant")

    # Each in-plane filter (of one image plane) and the Z taps that complete a column from it.
    plane_filters = {f"g{s}": (lambda p, s=s: ndimage.gaussian_filter(p, s)) for s in MULTISCALE_SIGMAS}
    plane_filters["dy"] = lambda p: ndimage.gaussian_filter(p, 1.0, order=(1, 0))
    plane_filters["dx"] = lambda p: ndimage.gaussian_filter(p, 1.0, order=(0, 1))
    plane_filters["mean"] = lambda p: ndimage.uniform_filter(p, MULTISCALE_WINDOW)
    plane_filters["square"] = lambda p: ndimage.uniform_filter(p * p, MULTISCALE_WINDOW)
    z_passes = {f"g{s}": (f"g{s}", taps(gaussian(s))) for s in MULTISCALE_SIGMAS}
    z_passes.update({"dz": ("g1.0", taps(gaussian(1.0, 1))), "dy": ("dy", taps(gaussian(1.0))),
                     "dx": ("dx", taps(gaussian(1.0))), "mean": ("mean", taps(box)), "square": ("square", taps(box))})
    reach = {name: max(len(t) // 2 for source, t in z_passes.values() if source == name) for name in plane_filters}
    kept: dict[str, dict[int, np.ndarray]] = {name: {} for name in plane_filters}

    def filter_plane(source: int, names: list[str]) -> None:
        plane = np.asarray(image[source], dtype=np.float32)
        release_pages(image)
        for name in names:
            kept[name][source] = plane_filters[name](plane)

    def along_z(name: str, z: int, out: np.ndarray) -> np.ndarray:
        source, weights = z_passes[name]
        r = len(weights) // 2
        out[...] = 0
        for t, weight in enumerate(weights):       # out = sum_t weight[t] * plane(z + r - t)
            if weight != 0:
                np.multiply(kept[source][_symmetric(z + r - t, depth)], np.float32(weight), out=term)
                out += term
        return out

    scratch = {name: np.empty(image.shape[1:], dtype=np.float32) for name in z_passes}
    term = np.empty(image.shape[1:], dtype=np.float32)
    # The in-plane filters of the planes an output plane newly needs run on every core (scipy's
    # filters release the GIL); the combination along Z stays in this thread.
    pool = ThreadPoolExecutor(worker_count(), thread_name_prefix="hypseg-filters")
    try:
        for start in range(0, depth, planes):
            stop = min(depth, start + planes)
            slab = np.empty((stop - start, *image.shape[1:], 6), dtype=np.float32)
            for z in range(start, stop):
                missing: dict[int, list[str]] = {}
                for name, cache in kept.items():
                    for source in {_symmetric(z + t, depth) for t in range(-reach[name], reach[name] + 1)}:
                        if source not in cache:
                            missing.setdefault(source, []).append(name)
                list(pool.map(lambda item: filter_plane(*item), missing.items()))
                out = slab[z - start]
                for column, sigma in enumerate(MULTISCALE_SIGMAS):
                    out[..., column] = along_z(f"g{sigma}", z, scratch[f"g{sigma}"])
                gradient = sum(along_z(axis, z, scratch[axis]) ** 2 for axis in ("dz", "dy", "dx"))
                out[..., 4] = np.sqrt(gradient)
                mean = along_z("mean", z, scratch["mean"])
                out[..., 5] = np.sqrt(np.maximum(along_z("square", z, scratch["square"]) - mean * mean, 0))
                for name, cache in kept.items():      # forget planes no later output plane reads
                    for source in [s for s in cache if s < z + 1 - reach[name]]:
                        del cache[source]
            yield start, slab
    finally:
        pool.shutdown(wait=True)


def multiscale_features(image: np.ndarray) -> np.ndarray:
    """The six multi-scale columns as standardised (voxels, 6) rows."""
    return _standardise(multiscale_columns(image).reshape(-1, 6))


def kmeans_raw(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return _fit_predict(KMeans(k, n_init=4, random_state=seed), intensity_features(image), seed).reshape(image.shape)


def kmeans_smoothed(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return _fit_predict(KMeans(k, n_init=4, random_state=seed), smoothed_features(image), seed).reshape(image.shape)


def kmeans_multiscale(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return _fit_predict(KMeans(k, n_init=4, random_state=seed), multiscale_features(image), seed).reshape(image.shape)


def gmm_multiscale(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(k, covariance_type="full", init_params="kmeans", reg_covar=1e-4, n_init=2,
                            random_state=seed)
    return _fit_predict(model, multiscale_features(image), seed).reshape(image.shape)


BASELINES = {
    "k-means, raw intensity": kmeans_raw,
    "k-means, smoothed intensity": kmeans_smoothed,
    "k-means, multi-scale features": kmeans_multiscale,
    "Gaussian mixture, multi-scale features": gmm_multiscale,
}
"""Name -> function(image, k, seed) returning (Z, Y, X) labels 1..k."""
