"""Noise helpers and the MSE / PSNR metrics, including the chapter-3 claims about the
``x * sigma * n`` bug versus the correct ``x + sigma * n``."""

from __future__ import annotations

import numpy as np
import pytest

import companion
from companion.evaluation import metrics
from companion.noise import add_gaussian_noise

SIGMA = 0.55


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    x, _ = companion.load_mnist("test", source="subset", limit=200, verbose=False)
    return x


def test_gaussian_noise_is_seeded_and_clipped(digits: np.ndarray) -> None:
    a = add_gaussian_noise(digits, SIGMA, seed=0)
    assert a.dtype == np.float32 and a.shape == digits.shape
    assert np.array_equal(a, add_gaussian_noise(digits, SIGMA, seed=0))
    assert not np.array_equal(a, add_gaussian_noise(digits, SIGMA, seed=1))
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(add_gaussian_noise(digits, 0.0, seed=0), digits)


def test_unclipped_noise_has_the_requested_statistics() -> None:
    x = np.full((200, 784), 0.5, np.float32)
    noise = add_gaussian_noise(x, SIGMA, seed=0, clip=None) - x
    assert abs(noise.mean()) < 0.005
    assert noise.std() == pytest.approx(SIGMA, rel=0.01)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_noise_rejects_bad_sigma(bad: float, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sigma"):
        add_gaussian_noise(digits, bad)


def test_noise_rejects_integer_pixels() -> None:
    with pytest.raises(ValueError, match="scale images to"):
        add_gaussian_noise(np.zeros((2, 784), np.uint8), 0.1)


def multiplied(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The bug: noise multiplied into the image instead of added, then clipped as usual."""
    n = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return np.clip(x * sigma * n, 0.0, 1.0)


def test_multiplied_noise_leaves_the_background_untouched(digits: np.ndarray) -> None:
    background = digits == 0.0
    assert background.mean() > 0.7  # most MNIST pixels are exactly black
    buggy = multiplied(digits, SIGMA, seed=0)
    right = add_gaussian_noise(digits, SIGMA, seed=0)
    assert np.all(buggy[background] == 0.0)  # x * anything = 0: the background stays clean
    # Added noise lifts about half the black pixels (the other half is clipped back to 0).
    assert 0.45 < (right[background] > 0).mean() < 0.55
    # On black pixels the lifted values are sigma |n|, whose median is 0.6745 sigma.
    lifted = right[background][right[background] > 0]
    assert np.median(lifted) / 0.6745 == pytest.approx(SIGMA, rel=0.02)
    assert not (buggy[background] > 0).any()  # the same estimate finds no noise at all


def test_multiplied_noise_wipes_out_strokes_and_changes_the_reported_psnr(digits: np.ndarray) -> None:
    strokes = digits > 0.99
    buggy = multiplied(digits, SIGMA, seed=0)
    right = add_gaussian_noise(digits, SIGMA, seed=0)
    # Half the noise draws are negative, and x * sigma * n < 0 is clipped to black: strokes vanish.
    assert (buggy[strokes] == 0.0).mean() > 0.45
    assert (right[strokes] == 0.0).mean() < 0.08  # only where n < -1.8
    # The two "noisy test sets" score differently, so a PSNR computed on the buggy one
    # does not describe the sigma = 0.55 task the chapter claims to solve.
    assert abs(metrics.psnr(digits, buggy) - metrics.psnr(digits, right)) > 0.5
    assert not np.allclose(buggy, right)


def test_mse_basics() -> None:
    a = np.zeros((3, 784), np.float32)
    assert metrics.mse(a, a) == 0.0
    assert metrics.mse(a, a + 0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mse(a, a[:2])


def test_psnr_basics() -> None:
    a = np.full((4, 28, 28), 0.5, np.float32)
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB
    assert metrics.psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-3)
    assert metrics.psnr(a, a) == 100.0  # capped so that the mean stays finite
    assert metrics.psnr(a * 255, a * 255 + 25.5, data_range=255.0) == pytest.approx(20.0, abs=1e-4)
    # The mean of per-image PSNRs, not the PSNR of the mean MSE.
    b = a.copy()
    b[0] += 0.1  # image 0 at 20 dB, the rest perfect (100 dB)
    assert metrics.psnr(a, b) == pytest.approx((20.0 + 3 * 100.0) / 4, abs=1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(a, a[:, :10])


def test_grey_share_counts_inked_pixels_that_are_not_solid() -> None:
    from companion.evaluation.metrics import grey_share

    solid = np.zeros((2, 28, 28), np.float32)
    solid[:, 10:18, 12:16] = 1.0
    assert grey_share(solid) == 0.0
    blurred = solid * 0.5  # every inked pixel grey
    assert grey_share(blurred) == 1.0
    mixed = solid.copy()
    mixed[:, 10:12, 12:16] = 0.5  # a quarter of the stroke grey
    assert grey_share(mixed) == 0.25
    assert grey_share(np.zeros((1, 28, 28))) == 0.0  # no ink: nothing to be grey
