"""The toy game of "The GAN min-max game": the optimal discriminator, V(D*, G) = -log 4 + 2 JSD, and a trained D matching D*."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid

from companion.theory import toy
from companion.training.guards import TrainingFailed

SCALE, SHIFT = 1.0, 0.0  # the fixed generator of the D* check: N(0, 1) against data N(2, 0.5^2)
TOLERANCE = 0.03  # mass-weighted mean |D - D*|; the trained D reaches ~0.005, wrong formulas >= 0.15


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny 1-d networks: one thread is fastest, and avoids oversubscribing a small shared CPU."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _densities(scale: float = SCALE, shift: float = SHIFT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = toy.covering_grid(scale, shift)
    return x, toy.data_density(x), toy.generator_density(x, scale, shift)


def weighted_error(
    d: np.ndarray, d_star: np.ndarray, p_data: np.ndarray, p_g: np.ndarray, x: np.ndarray
) -> float:
    """Mean |D - D*| where the samples live: weighted by the mixture (p_data + p_g) / 2."""
    return float(trapezoid(np.abs(d - d_star) * (p_data + p_g) / 2, x))


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (1.5, 0.0), (0.3, 2.5), (-0.7, 1.0), (0.45, 2.1)])
def test_value_at_optimal_discriminator_is_minus_log4_plus_two_jsd(scale: float, shift: float) -> None:
    x, p_data, p_g = _densities(scale, shift)
    d_star = toy.optimal_discriminator(p_data, p_g)
    value = toy.value_function(d_star, p_data, p_g, x)
    assert value == pytest.approx(-toy.LOG4 + 2 * toy.jsd(p_data, p_g, x), abs=1e-6)
    # D* is the maximiser: nudging it anywhere lowers V
    for other in (np.clip(d_star + 0.05, 0, 1), d_star * 0.9, np.full_like(x, 0.5), 1 - d_star):
        assert toy.value_function(other, p_data, p_g, x) < value


def test_jsd_limits() -> None:
    assert toy.toy_jsd(toy.DATA_STD, toy.DATA_MEAN) == pytest.approx(0.0, abs=1e-9)
    assert toy.toy_jsd(0.5, 40.0) == pytest.approx(np.log(2), abs=1e-6)
    x, p_data, p_g = _densities()
    assert 0 < toy.jsd(p_data, p_g, x) < np.log(2)
    assert toy.value_function(toy.optimal_discriminator(p_data, p_data), p_data, p_data, x) == pytest.approx(
        -toy.LOG4, abs=1e-6
    )


def test_densities_integrate_to_one_and_bad_generator_is_refused() -> None:
    x, p_data, p_g = _densities(0.3, -1.0)
    assert trapezoid(p_data, x) == pytest.approx(1.0, abs=1e-6)
    assert trapezoid(p_g, x) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="non-zero scale"):
        toy.generator_density(x, 0.0, 1.0)


def test_generator_logit_gradients() -> None:
    grads = toy.generator_logit_gradients(np.array([1e-3, 0.5]))
    np.testing.assert_allclose(grads["saturating"], [-1e-3, -0.5])
    np.testing.assert_allclose(grads["non_saturating"], [-0.999, -0.5])
    with pytest.raises(ValueError):
        toy.generator_logit_gradients(np.array([0.0]))


class FakeGame:
    """A NumPy stand-in for the networks: each step nudges the affine generator's shift by 0.1."""

    def __init__(self, nan_at: int | None = None) -> None:
        self.scale, self.shift, self.batches, self.nan_at = 1.0, 0.0, [], nan_at

    def step(self, real, d_noise, g_noise):
        self.batches.append((real, d_noise, g_noise))
        self.shift += 0.1
        loss = float("nan") if len(self.batches) - 1 == self.nan_at else 1.0
        return {"d_loss": loss, "g_loss": 1.0}

    def play(self, **overrides):
        settings = dict(steps=5, batch_size=8, record_every=2, snapshot_steps=(0, 5), n_snapshot=3, seed=4)
        return toy.play_toy_game(
            self.step,
            lambda z: self.scale * z + self.shift,
            lambda x: np.full(len(x), 0.25),
            lambda: (self.scale, self.shift),
            **{**settings, **overrides},
        )


def test_play_toy_game_records_the_game() -> None:
    game = FakeGame()
    history = game.play()
    assert history["step"] == [0, 2, 4, 5]  # every record_every steps, and the last
    np.testing.assert_allclose(history["shift"], [0.0, 0.2, 0.4, 0.5])
    assert history["jsd"][0] == pytest.approx(toy.toy_jsd(1.0, 0.0))
    assert history["d_real"] == history["d_fake"] == [0.25] * 4
    assert [s for s, _ in history["snapshots"]] == [0, 5]
    first, last = (samples for _, samples in history["snapshots"])
    assert first.shape == (3,) and np.allclose(last - first, 0.5)  # the same noise, shifted by 5 steps
    # the batches come from one stream seeded by ``seed``: data, then D's noise, then G's noise
    rng = np.random.default_rng(4)
    assert len(game.batches) == 5
    for real, d_noise, g_noise in game.batches:
        assert real.shape == d_noise.shape == g_noise.shape == (8, 1)
        np.testing.assert_array_equal(real, toy.sample_data(8, rng))
        np.testing.assert_array_equal(d_noise, toy.sample_noise(8, rng))
        np.testing.assert_array_equal(g_noise, toy.sample_noise(8, rng))


def test_play_toy_game_stops_on_a_nan_loss() -> None:
    with pytest.raises(TrainingFailed, match="diverged at step 2"):
        FakeGame(nan_at=2).play()
    with pytest.raises(ValueError, match="steps"):
        FakeGame().play(steps=0)


def test_wrong_formulas_fail_the_tolerance() -> None:
    """The tolerance used below is tight enough to reject plausible mistakes."""
    x, p_data, p_g = _densities()
    d_star = toy.optimal_discriminator(p_data, p_g)
    for wrong in (p_g / (p_data + p_g), np.clip(p_data, 0, 1), np.full_like(x, 0.5)):
        assert weighted_error(wrong, d_star, p_data, p_g, x) > 3 * TOLERANCE


@pytest.mark.parametrize("side", ["tensorflow", "torch"])
def test_trained_discriminator_matches_closed_form(side: str) -> None:
    if side == "tensorflow":
        import companion.tensorflow  # noqa: F401
        from companion.tensorflow import gan
    else:
        from companion.torch import gan
    from companion import seed_everything

    seed_everything(0)
    discriminator, generator = gan.build_toy_discriminator(), gan.build_toy_generator(SCALE, SHIFT)
    losses = gan.train_toy_discriminator(discriminator, generator, steps=800, seed=0, device="cpu")
    assert gan.toy_generator_params(generator) == pytest.approx((SCALE, SHIFT)), "G must stay fixed"
    x, p_data, p_g = _densities()
    d_star = toy.optimal_discriminator(p_data, p_g)
    d = gan.discriminate(discriminator, x[:, None].astype(np.float32))
    assert weighted_error(d, d_star, p_data, p_g, x) < TOLERANCE
    # its value is just below the maximum -log 4 + 2 JSD, and its final loss estimates -V
    best = -toy.LOG4 + 2 * toy.jsd(p_data, p_g, x)
    value = toy.value_function(d, p_data, p_g, x)
    assert best - 0.02 < value <= best + 1e-9
    assert -np.mean(losses[-100:]) == pytest.approx(best, abs=0.05)


@pytest.mark.parametrize("side", ["tensorflow", "torch"])
def test_toy_gan_moves_towards_the_data(side: str) -> None:
    if side == "tensorflow":
        import companion.tensorflow  # noqa: F401
        from companion.tensorflow import gan
    else:
        from companion.torch import gan
    from companion import seed_everything

    seed_everything(0)
    history = gan.train_toy_gan(
        gan.build_toy_discriminator(),
        gan.build_toy_generator(1.0, -2.0),
        steps=300,
        record_every=100,
        seed=0,
        device=None,
    )
    assert history["step"] == [0, 100, 200, 300]
    assert history["jsd"][-1] < history["jsd"][0] - 0.05
    assert history["shift"][-1] > -2.0 + 0.2  # the generator's mean moves towards the data mean 2
    assert np.isfinite(history["d_real"]).all() and np.isfinite(history["d_fake"]).all()
