"""Framework-neutral parts of the autoencoder training loops in ``companion.{tensorflow,torch}.training``.

Both loops take their Adam settings, checkpoint file names, input corruption, per-epoch random
streams and argument checks from here, so the two sides cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from companion.noise import add_gaussian_noise
from companion.validation import check_images, check_positive

# Adam as in the original recipe. Keras defaults to epsilon=1e-7 and PyTorch to 1e-8;
# both sides set it explicitly. (Keras adds epsilon before Adam's bias correction and
# PyTorch after it, so weights with near-zero gradients still step slightly differently.)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7
POINTER = "checkpoint.json"
HISTORY = "history.json"

Noise = float | Callable[[np.ndarray, np.random.Generator], np.ndarray] | None


def corrupt(x: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """The network input for clean images ``x``: ``x`` itself, ``x + sigma * n`` clipped to
    [0, 1] when ``noise`` is a number, or ``noise(x, rng)`` when it is a function."""
    if noise is None:
        return x
    if callable(noise):
        noisy = np.asarray(noise(x, rng), np.float32)
        if noisy.shape != x.shape or not np.isfinite(noisy).all():
            raise ValueError(
                f"the noise function must return finite values of shape {x.shape}, got {noisy.shape}"
            )
        return noisy
    return add_gaussian_noise(x, float(noise), seed=rng)


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """Generator for one epoch: shuffling (stream 0) and noise (stream 1) are repeatable
    epoch by epoch, so a resumed run sees exactly the batches an unbroken run would."""
    return np.random.default_rng([seed, epoch, stream])


def check_fit_arguments(
    model, x_train, x_val, epochs, batch_size, learning_rate, noise, seed, every, log_every
):  # noqa: ANN001
    """Validate ``fit_autoencoder``'s arguments; return the checked ``(x_train, x_val)`` as float32."""
    shape = model.example_shape
    x_train = check_images(x_train, name="x_train", shape=shape)
    if x_val is not None:
        x_val = check_images(x_val, name="x_val", shape=shape)
    check_positive("epochs", epochs, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("learning_rate", learning_rate)
    check_positive("checkpoint_every", every, integer=True)
    if not isinstance(log_every, (int, np.integer)) or log_every < 0:
        raise ValueError(f"log_every must be an integer >= 0 (0: silent), got {log_every!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if noise is not None and not callable(noise):
        ok = isinstance(noise, (int, float, np.number)) and not isinstance(noise, bool)
        if not ok or not np.isfinite(noise) or noise < 0:
            raise ValueError(
                f"noise must be None, a noise level sigma >= 0 or a function (x, rng) -> noisy x, got {noise!r}"
            )
    return x_train, x_val
