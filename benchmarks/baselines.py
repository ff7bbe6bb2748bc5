"""Non-deep baselines the model has to beat: k-means and a Gaussian mixture on hand-made features.

They cluster each volume directly into k groups (no hierarchy), which is the protocol the paper used
for every method.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

MAX_FIT_VOXELS = 100_000


def _standardise(features: np.ndarray) -> np.ndarray:
    return (features - features.mean(0)) / (features.std(0) + 1e-8)


def _fit_predict(model, features: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = features[rng.choice(len(features), min(MAX_FIT_VOXELS, len(features)), replace=False)]
    model.fit(sample)
    return model.predict(features) + 1


def intensity_features(image: np.ndarray) -> np.ndarray:
    return image.reshape(-1, 1).astype(np.float32)


def smoothed_features(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return ndimage.gaussian_filter(image.astype(np.float32), sigma).reshape(-1, 1)


def multiscale_features(image: np.ndarray, sigmas=(1.0, 2.0, 4.0), window: int = 5) -> np.ndarray:
    """Smoothed intensity at several scales, gradient magnitude and local standard deviation."""
    image = image.astype(np.float32)
    columns = [ndimage.gaussian_filter(image, s) for s in sigmas]
    columns += [ndimage.gaussian_gradient_magnitude(image, s) for s in sigmas[:2]]
    mean = ndimage.uniform_filter(image, window)
    columns.append(np.sqrt(np.maximum(ndimage.uniform_filter(image * image, window) - mean * mean, 0)))
    return _standardise(np.stack([c.reshape(-1) for c in columns], axis=1))


def kmeans_raw(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    model = KMeans(k, n_init=4, random_state=seed)
    return _fit_predict(model, intensity_features(image), seed).reshape(image.shape)


def kmeans_smoothed(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    model = KMeans(k, n_init=4, random_state=seed)
    return _fit_predict(model, smoothed_features(image), seed).reshape(image.shape)


def gmm_multiscale(image: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    model = GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed)
    return _fit_predict(model, multiscale_features(image), seed).reshape(image.shape)


BASELINES = {
    "k-means, raw intensity": kmeans_raw,
    "k-means, smoothed intensity": kmeans_smoothed,
    "Gaussian mixture, multi-scale features": gmm_multiscale,
}
