"""Framework-neutral metrics on NumPy arrays: reconstruction error, PSNR, sharpness, Frechet distance."""

from __future__ import annotations

import warnings

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over every pixel of two same-shaped arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(reference: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> float:
    """Mean per-image peak signal-to-noise ratio in dB, ``10 log10(range^2 / MSE_i)``.

    Images are along axis 0; a perfect image is capped at 100 dB so the mean stays finite.
    """
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    est = np.asarray(estimate, np.float64).reshape(len(estimate), -1)
    if ref.shape != est.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {est.shape}")
    per_image = np.mean((ref - est) ** 2, axis=1)
    db = 10.0 * np.log10(data_range**2 / np.maximum(per_image, 1e-10))
    return float(np.mean(np.minimum(db, 100.0)))


def grey_share(images: np.ndarray, ink: float = 0.1, solid: float = 0.9) -> float:
    """Share of the inked pixels (> ``ink``) that are not solid (< ``solid``): a sharpness measure.

    A real MNIST stroke is mostly solid with a thin grey rim; a blurred one is grey throughout, so
    an output that averages several plausible digits (what a squared or absolute error rewards) scores higher.
    """
    x = np.asarray(images, np.float32)
    inked = x > ink
    return float(np.sum(inked & (x < solid)) / max(int(np.sum(inked)), 1))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples).

    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, the formula behind FID.
    """
    from scipy import linalg

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # handled below
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            # Singular covariances (dead features, a collapsed generator): add a small ridge.
            ridge = np.eye(len(cov_a)) * 1e-6
            root = linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge))
    if np.iscomplexobj(root):
        root = root.real  # tiny imaginary parts come from round-off
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def class_coverage(predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Fraction of samples assigned to each class (sums to 1); a collapsed GAN puts most in few."""
    counts = np.bincount(np.asarray(predicted, np.int64), minlength=n_classes)
    return counts / max(counts.sum(), 1)
