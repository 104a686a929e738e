"""A 1-d GAN you can check with a pencil: Gaussian data, an affine generator, exact densities.

Data are ``x ~ N(DATA_MEAN, DATA_STD^2)``; the generator maps noise ``z ~ N(0, 1)`` to
``G(z) = scale * z + shift``, so its samples follow ``N(shift, scale^2)``. Both densities are
known in closed form, which lets the min-max chapter compare a trained discriminator with the optimal one,

    D*(x) = p_data(x) / (p_data(x) + p_g(x)),

and check ``V(D*, G) = -log 4 + 2 JSD(p_data || p_g)`` by quadrature on a grid. Everything here
is NumPy; the networks that play the game live in ``companion.tensorflow.gan`` and
``companion.torch.gan``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from companion.training.guards import TrainingFailed

DATA_MEAN, DATA_STD = 2.0, 0.5
LOG4 = float(np.log(4.0))


def normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Density of ``N(mean, std^2)`` at ``x`` (any shape), float64."""
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    x = np.asarray(x, np.float64)
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2.0 * np.pi))


def data_density(x: np.ndarray, mean: float = DATA_MEAN, std: float = DATA_STD) -> np.ndarray:
    """p_data(x): the Gaussian the real samples come from."""
    return normal_pdf(x, mean, std)


def generator_density(x: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """p_g(x) for ``G(z) = scale * z + shift`` with ``z ~ N(0, 1)``: the density of ``N(shift, scale^2)``.

    A zero ``scale`` squeezes every sample onto one point (no density): that is refused.
    """
    if scale == 0 or not np.isfinite(scale) or not np.isfinite(shift):
        raise ValueError(
            f"the affine generator needs a finite, non-zero scale; got scale={scale!r}, shift={shift!r}"
        )
    return normal_pdf(x, shift, abs(scale))


def sample_data(
    n: int, seed: int | np.random.Generator | None = None, mean: float = DATA_MEAN, std: float = DATA_STD
) -> np.ndarray:
    """``n`` real samples as float32 (n, 1)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return (mean + std * rng.standard_normal((int(n), 1))).astype(np.float32)


def sample_noise(n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """``n`` noise values ``z ~ N(0, 1)`` as float32 (n, 1), the generator's input."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.standard_normal((int(n), 1)).astype(np.float32)


def grid(lo: float = -10.0, hi: float = 10.0, n: int = 8001) -> np.ndarray:
    """Evenly spaced points for quadrature and plots (the default spans the toy's densities with room to spare)."""
    if not hi > lo or n < 3:
        raise ValueError(f"need hi > lo and n >= 3, got lo={lo}, hi={hi}, n={n}")
    return np.linspace(lo, hi, int(n))


def covering_grid(
    scale: float, shift: float, mean: float = DATA_MEAN, std: float = DATA_STD, n: int = 8001
) -> np.ndarray:
    """A grid reaching 10 standard deviations past both Gaussians, so quadrature misses no mass."""
    spread = 10.0 * max(std, abs(scale))
    return grid(min(mean, shift) - spread, max(mean, shift) + spread, n)


def optimal_discriminator(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """D*(x) = p_data / (p_data + p_g), pointwise; 0.5 where both densities vanish (any value is optimal there)."""
    p_data, p_g = np.asarray(p_data, np.float64), np.asarray(p_g, np.float64)
    total = p_data + p_g
    return np.divide(p_data, total, out=np.full_like(total, 0.5), where=total > 0)


def _integrate(values: np.ndarray, x: np.ndarray) -> float:
    from scipy.integrate import trapezoid

    return float(trapezoid(values, x))


def kl_divergence(p: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    """KL(p || q) in nats by the trapezoid rule; ``p`` and ``q`` are densities sampled on the grid ``x``."""
    from scipy.special import rel_entr

    return _integrate(rel_entr(np.asarray(p, np.float64), np.asarray(q, np.float64)), x)


def jsd(p: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats: ``KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``.

    Lies in [0, log 2]: 0 for identical densities, log 2 for densities that never overlap.
    """
    m = 0.5 * (np.asarray(p, np.float64) + np.asarray(q, np.float64))
    return 0.5 * kl_divergence(p, m, x) + 0.5 * kl_divergence(q, m, x)


def value_function(d: np.ndarray, p_data: np.ndarray, p_g: np.ndarray, x: np.ndarray) -> float:
    """V(D, G) = E_data[log D(x)] + E_g[log(1 - D(x))] by quadrature, for D given on the grid ``x``.

    ``d`` holds D(x) in (0, 1) at each grid point; values are clipped 1e-12 away from 0 and 1
    so a discriminator that is exactly 0 or 1 where a density is negligible gives a finite value.
    """
    d = np.clip(np.asarray(d, np.float64), 1e-12, 1.0 - 1e-12)
    return _integrate(p_data * np.log(d) + p_g * np.log1p(-d), x)


def value_estimate(d_real: np.ndarray, d_fake: np.ndarray) -> float:
    """Monte Carlo V(D, G): ``mean log D(x_real) + mean log(1 - D(G(z)))`` from two batches of D outputs."""
    d_real = np.clip(np.asarray(d_real, np.float64), 1e-12, 1.0 - 1e-12)
    d_fake = np.clip(np.asarray(d_fake, np.float64), 1e-12, 1.0 - 1e-12)
    return float(np.mean(np.log(d_real)) + np.mean(np.log1p(-d_fake)))


def toy_jsd(scale: float, shift: float, mean: float = DATA_MEAN, std: float = DATA_STD) -> float:
    """JSD between the data Gaussian and the affine generator's Gaussian (nats), on a grid covering both."""
    x = covering_grid(scale, shift, mean, std)
    return jsd(data_density(x, mean, std), generator_density(x, scale, shift), x)


def generator_logit_gradients(d_fake: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of each generator loss with respect to the discriminator's logit on a fake sample.

    With ``D = sigmoid(l)``:

    * saturating loss ``log(1 - D)`` (minimised by G): ``d/dl = -D``, which vanishes as D -> 0;
    * non-saturating loss ``-log D`` (minimised by G): ``d/dl = -(1 - D)``, close to -1 as D -> 0.

    ``d_fake`` is D(G(z)) in (0, 1); returns both gradients with its shape.
    """
    d = np.asarray(d_fake, np.float64)
    if np.any((d <= 0) | (d >= 1)):
        raise ValueError("d_fake must lie strictly between 0 and 1 (it is a sigmoid output)")
    return {"saturating": -d, "non_saturating": -(1.0 - d)}


# --------------------------------------------------------------------------- the game, played

Step = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]


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
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    rng = np.random.default_rng(seed)
    probe_real, probe_noise = sample_data(2000, seed + 1), sample_noise(2000, seed + 2)
    snapshot_noise = sample_noise(n_snapshot, seed + 3)
    history: dict[str, list] = {
        k: [] for k in ("step", "scale", "shift", "jsd", "d_real", "d_fake", "snapshots")
    }

    def record(i: int) -> None:
        scale, shift = generator_params()
        history["step"].append(i)
        history["scale"].append(scale)
        history["shift"].append(shift)
        history["jsd"].append(toy_jsd(scale, shift) if scale != 0 else float(np.log(2)))
        history["d_real"].append(float(discriminate(probe_real).mean()))
        history["d_fake"].append(float(discriminate(generate(probe_noise)).mean()))

    for i in range(steps + 1):
        if i in snapshot_steps:
            history["snapshots"].append((i, generate(snapshot_noise).reshape(-1)))
        if i % record_every == 0 or i == steps:
            record(i)
        if i == steps:
            break
        real = sample_data(batch_size, rng)
        d_noise = sample_noise(batch_size, rng)
        g_noise = sample_noise(batch_size, rng)
        metrics = step(real, d_noise, g_noise)
        if not all(np.isfinite(v) for v in metrics.values()):
            raise TrainingFailed(f"the toy game diverged at step {i}: {metrics}; lower the learning rate")
    return history
