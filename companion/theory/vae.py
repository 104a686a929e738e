"""The variational autoencoder's numerics in NumPy, written once for both frameworks.

A VAE's encoder gives a diagonal Gaussian q(z | x) = N(mean, diag(exp(log_var))); the prior is
p(z) = N(0, I); the decoder gives one logit per pixel, read as a Bernoulli probability of "ink".
Everything is in nats per image (summed over latent units or pixels, one value per image) and
computed in float64, so it can check the frameworks' float32 losses:

- :func:`gaussian_kl`: KL(q(z | x) || p(z)) in closed form, and :func:`monte_carlo_kl` the same
  quantity estimated from samples (the chapter checks one against the other);
- :func:`bernoulli_log_likelihood`: log p(x | z) from the decoder's logits, without overflow;
- :func:`log_normal` and :func:`log_mean_exp`: the pieces of the importance-weighted bound
  log (1/k) sum_i p(x, z_i) / q(z_i | x) (Burda et al., 2016);
- :func:`active_units`: how many latent units the encoder uses (Burda et al.'s activity test).
"""

from __future__ import annotations

import numpy as np

from companion.validation import InputError, check_positive

LOG_2PI = float(np.log(2.0 * np.pi))


def _gaussian(mean: np.ndarray, log_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    if mean.shape != log_var.shape or mean.ndim < 1:
        raise InputError(
            f"mean and log_var must have the same shape (N, latent), got {mean.shape} and {log_var.shape}"
        )
    if not (np.isfinite(mean).all() and np.isfinite(log_var).all()):
        raise InputError("mean and log_var must be finite; a NaN usually means training diverged")
    return mean, log_var


def gaussian_kl_per_unit(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mean, exp(log_var)) || N(0, 1)) of every latent unit separately (same shape as ``mean``):
    ``(exp(log_var) + mean^2 - 1 - log_var) / 2``."""
    mean, log_var = _gaussian(mean, log_var)
    return 0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var)


def gaussian_kl(mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(q(z | x) || N(0, I)) per image, in closed form: :func:`gaussian_kl_per_unit` summed over
    the last axis. ``mean`` and ``log_var`` are (N, latent); returns (N,) in nats."""
    return gaussian_kl_per_unit(mean, log_var).sum(axis=-1)


def log_normal(
    z: np.ndarray, mean: np.ndarray | float = 0.0, log_var: np.ndarray | float = 0.0
) -> np.ndarray:
    """log N(z; mean, diag(exp(log_var))) summed over the last axis (the latent units); the
    defaults give the prior N(0, I). Shapes broadcast; returns one value per vector of ``z``."""
    z = np.asarray(z, np.float64)
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return -0.5 * np.sum(LOG_2PI + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def monte_carlo_kl(mean: np.ndarray, log_var: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """KL(q(z | x) || N(0, I)) per image estimated from ``n_samples`` draws z ~ q(z | x):
    the mean of log q(z | x) - log p(z). Its standard error shrinks like 1 / sqrt(n_samples)."""
    mean, log_var = _gaussian(mean, log_var)
    check_positive("n_samples", n_samples, integer=True)
    eps = np.random.default_rng(seed).standard_normal((int(n_samples), *mean.shape))
    z = mean + np.exp(0.5 * log_var) * eps
    return np.mean(log_normal(z, mean, log_var) - log_normal(z), axis=0)


def log_mean_exp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(mean(exp(a))) along ``axis``, without overflow or underflow (the largest term is
    factored out first): the IWAE bound of log-weights a_i = log p(x, z_i) - log q(z_i | x)."""
    a = np.asarray(a, np.float64)
    if a.size == 0 or a.shape[axis] == 0:
        raise InputError(f"log_mean_exp needs at least one value along axis {axis}, got shape {a.shape}")
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)  # all -inf stays -inf instead of turning into NaN
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right answer when every weight is 0
        return np.squeeze(top, axis=axis) + np.log(np.mean(np.exp(a - top), axis=axis))


def bernoulli_log_likelihood(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """log p(x | z) per image for pixel intensities ``x`` in [0, 1] read as probabilities of ink and
    the decoder's ``logits`` (any shape (N, ...)): sum over pixels of x l - log(1 + e^l), which is
    minus the binary cross-entropy. ``logaddexp`` keeps it finite for logits of any size."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    if x.shape != logits.shape:
        raise InputError(f"x and logits must have the same shape, got {x.shape} and {logits.shape}")
    per_pixel = x * logits - np.logaddexp(0.0, logits)
    return per_pixel.reshape(len(per_pixel), -1).sum(axis=1)


def active_units(means: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent units whose posterior mean varies across the data: Var_x(E_q[z_j | x]) above
    ``threshold`` (Burda et al., 2016). ``means`` are the encoder means (N, latent) of N images; a
    unit below the threshold ignores its input, as under posterior collapse."""
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise InputError(f"means must be (N, latent) with N >= 2 images, got shape {means.shape}")
    check_positive("threshold", threshold)
    return int(np.sum(means.var(axis=0) > threshold))
