"""Seeded noise: corruption for denoising autoencoders and latent samples for GANs."""

from __future__ import annotations

import numpy as np


def _as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def add_gaussian_noise(
    x: np.ndarray,
    sigma: float,
    *,
    seed: int | np.random.Generator | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> np.ndarray:
    """Return ``x + sigma * n`` with ``n ~ N(0, 1)``, clipped to ``clip`` (None: no clip).

    ``x`` is any float array, usually images in [0, 1]. The noise is *added*:
    multiplying (``x * sigma * n``) is a common bug that leaves the background
    clean and scales strokes instead (chapter 3 shows what it does).
    Returns float32 of the same shape.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"x must be a float array (got dtype {x.dtype}); scale images to [0, 1] first, "
            "e.g. load_mnist(scale='unit')"
        )
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    noisy = x + sigma * _as_rng(seed).standard_normal(x.shape, dtype=np.float32)
    if clip is not None:
        noisy = np.clip(noisy, clip[0], clip[1])
    return noisy.astype(np.float32)


def sample_latent(
    n: int,
    dim: int,
    *,
    seed: int | np.random.Generator | None = None,
    distribution: str = "normal",
) -> np.ndarray:
    """Draw ``n`` latent vectors of size ``dim`` as float32 ``(n, dim)``.

    ``distribution`` is ``"normal"`` (N(0, I), the GAN default) or ``"uniform"`` ([-1, 1]).
    """
    if int(n) != n or n <= 0 or int(dim) != dim or dim <= 0:
        raise ValueError(f"n and dim must be positive integers, got n={n!r}, dim={dim!r}")
    rng = _as_rng(seed)
    if distribution == "normal":
        z = rng.standard_normal((int(n), int(dim)), dtype=np.float32)
    elif distribution == "uniform":
        z = rng.uniform(-1.0, 1.0, (int(n), int(dim))).astype(np.float32)
    else:
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    return z
