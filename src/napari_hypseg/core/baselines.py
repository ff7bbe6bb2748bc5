"""Classical baselines the learnt hierarchy has to beat (method.md §13): k-means and a Gaussian
mixture on hand-made features, each clustering one volume directly into k groups.

They are part of the product, not only of the benchmarks: the demo prints the best of them beside
the model's score, so a user sees at once whether training was worth it.
"""

from __future__ import annotations

import numpy as np

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
MULTISCALE_HALO = int(4 * max(MULTISCALE_SIGMAS) + 0.5) + 1
"""Voxels of context the multi-scale columns of a slab need on each side (scipy's Gaussians reach
4 sigma), so columns computed slab by slab equal those of the whole volume."""


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
