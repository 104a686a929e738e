"""The loops of chapter 4's GANs, shared by ``companion.tensorflow.gan`` and ``companion.torch.gan``.

Each framework passes in its train step (NumPy arrays in, float metrics out) and its sampler;
everything else (argument checks, the seeded draws of batches and noise, the history, logging and
the NaN guard) lives here once, so both sides draw the same numbers in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from companion import toy
from companion.divergence import check_finite
from companion.noise import sample_latent
from companion.progress import batches, epoch_line, should_log
from companion.validation import check_images, check_positive

VARIANTS = ("non_saturating", "saturating")  # the generator losses of section 5
IMAGE_DIM = 784
METRICS = ("d_loss", "g_loss", "d_real", "d_fake")

# step(real, d_noise, g_noise) -> {"d_loss": ..., "g_loss": ..., "d_real": ..., "d_fake": ...}
Step = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def check_gan_args(images: np.ndarray, epochs: int, batch_size: int, variant: str) -> np.ndarray:
    """Validate :func:`fit_mlp_gan`'s arguments; return the images as float32 (N, 784)."""
    x = check_images(images, name="images", shape=(IMAGE_DIM,))
    check_positive("epochs", epochs, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_variant(variant)
    if batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} images; pass a smaller batch_size")
    return x


def fit_mlp_gan(
    step: Step,
    generate: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    noise_dim: int,
    seed: int,
    fixed_noise: np.ndarray | None,
    sample_every: int,
    log_every: int,
) -> tuple[dict[str, list[float]], dict[int, np.ndarray], float]:
    """Train for ``epochs`` on ``x`` from :func:`check_gan_args`; the last incomplete batch is dropped.

    Returns ``(history, samples, seconds)``: per-epoch means of :data:`METRICS`, the generator's
    outputs for the fixed noise (epoch 0 = before training, then every ``sample_every`` epochs
    and the last), and the training time.
    """
    rng = np.random.default_rng(seed)
    fixed = sample_latent(16, noise_dim, seed=seed + 1) if fixed_noise is None else fixed_noise
    history: dict[str, list[float]] = {name: [] for name in METRICS}
    samples = {0: generate(fixed)}
    steps = len(x) // batch_size
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        tick, order, sums = time.perf_counter(), rng.permutation(len(x)), dict.fromkeys(METRICS, 0.0)
        for i in batches(range(steps), steps, f"epoch {epoch}/{epochs}"):
            real = x[order[i * batch_size : (i + 1) * batch_size]]
            d_noise = sample_latent(batch_size, noise_dim, seed=rng)
            g_noise = sample_latent(batch_size, noise_dim, seed=rng)
            values = step(real, d_noise, g_noise)
            check_finite(values, epoch, i)
            for name in sums:
                sums[name] += values[name] / steps
        for name, value in sums.items():
            history[name].append(value)
        if epoch % sample_every == 0 or epoch == epochs:
            samples[epoch] = generate(fixed)
        if should_log(epoch, epochs, log_every):
            print(epoch_line(epoch, epochs, sums, time.perf_counter() - tick))
    return history, samples, time.perf_counter() - start


def play_toy_game(
    step: Step,
    generate: Callable[[np.ndarray], np.ndarray],
    discriminate: Callable[[np.ndarray], np.ndarray],
    generator_params: Callable[[], tuple[float, float]],
    *,
    steps: int,
    batch_size: int,
    record_every: int,
    snapshot_steps: tuple[int, ...],
    n_snapshot: int,
    seed: int,
) -> dict[str, list]:
    """The 1-d game: ``steps`` rounds of one D step and one G step, recorded as ``train_toy_gan`` documents."""
    check_positive("steps", steps, integer=True)
    rng = np.random.default_rng(seed)
    probe_real, probe_noise = toy.sample_data(2000, seed + 1), toy.sample_noise(2000, seed + 2)
    snapshot_noise = toy.sample_noise(n_snapshot, seed + 3)
    history: dict[str, list] = {
        k: [] for k in ("step", "scale", "shift", "jsd", "d_real", "d_fake", "snapshots")
    }

    def record(i: int) -> None:
        scale, shift = generator_params()
        history["step"].append(i)
        history["scale"].append(scale)
        history["shift"].append(shift)
        history["jsd"].append(toy.toy_jsd(scale, shift) if scale != 0 else float(np.log(2)))
        history["d_real"].append(float(discriminate(probe_real).mean()))
        history["d_fake"].append(float(discriminate(generate(probe_noise)).mean()))

    for i in range(steps + 1):
        if i in snapshot_steps:
            history["snapshots"].append((i, generate(snapshot_noise).reshape(-1)))
        if i % record_every == 0 or i == steps:
            record(i)
        if i == steps:
            break
        real = toy.sample_data(batch_size, rng)
        d_noise = toy.sample_noise(batch_size, rng)
        g_noise = toy.sample_noise(batch_size, rng)
        check_finite(step(real, d_noise, g_noise), 1, i)
    return history
