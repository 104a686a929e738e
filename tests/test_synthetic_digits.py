"""Typeset synthetic digits: determinism, MNIST-like placement, the checksummed cache and the input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from companion import synthetic_digits as sd
from companion.validation import InputError


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return sd.render_digits(200, seed=3)


def test_shape_range_and_balanced_labels(digits) -> None:
    images, labels = digits
    assert images.shape == (200, 28, 28) and images.dtype == np.float32
    assert labels.shape == (200,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() <= 1.0 and images.max() > 0.9
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 20))
    # White on black like MNIST: the border is background, and every image holds some ink.
    assert images[:, 0].max() == 0.0 and images[:, :, 0].max() == 0.0
    assert (images.reshape(200, -1).sum(axis=1) > 20).all()


def test_centre_of_mass_sits_near_the_middle_as_in_mnist(digits) -> None:
    images, _ = digits
    rows, cols = np.indices((28, 28))
    mass = images.sum(axis=(1, 2))
    centre_rows = (images * rows).sum(axis=(1, 2)) / mass
    centre_cols = (images * cols).sum(axis=(1, 2)) / mass
    # Centred at 13.5, then shifted by at most SHIFT pixels (plus a little clipping at antialiased edges).
    for centre in (centre_rows, centre_cols):
        assert np.abs(centre - 13.5).max() <= sd.SHIFT + 0.3
    # The larger side of the ink fits MNIST's 20x20 box (its outline may add a pixel).
    ink = images > 0.05
    heights = ink.any(axis=2).sum(axis=1)
    widths = ink.any(axis=1).sum(axis=1)
    assert np.maximum(heights, widths).max() <= sd.BOX + 2


def test_same_seed_same_digits_and_other_seeds_differ(digits) -> None:
    images, labels = digits
    np.random.seed(0)  # the global random state must not matter
    again, again_labels = sd.render_digits(200, seed=3)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_labels, labels)
    other, _ = sd.render_digits(200, seed=4)
    assert np.abs(other - images).mean() > 0.05
    # Given labels are drawn as asked; no jitter and one font give the same image for the same digit.
    plain = dict(rotation=0, shear=0, scale=0, shift=0, stroke=0, fonts=sd.FONTS[:1])
    twice, y = sd.render_digits(2, seed=0, labels=np.array([7, 7]), **plain)
    np.testing.assert_array_equal(y, [7, 7])
    np.testing.assert_array_equal(twice[0], twice[1])


def test_every_font_draws_ten_distinct_digits() -> None:
    plain = dict(rotation=0, shear=0, scale=0, shift=0, stroke=0)
    for font in sd.FONTS:
        images, _ = sd.render_digits(10, labels=np.arange(10), fonts=[font], **plain)
        flat = images.reshape(10, -1)
        distances = np.abs(flat[:, None] - flat[None]).sum(axis=2) + np.eye(10) * 1e9
        assert distances.min() > 10, font


def test_cache_writes_verifies_and_rerenders_a_tampered_file(tmp_path: Path) -> None:
    images, labels = sd.synthetic_digits(30, seed=2, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".npz") and files[1] == files[0] + ".sha256"
    rendered, _ = sd.render_digits(30, seed=2)
    np.testing.assert_array_equal(images, rendered)
    cached, cached_labels = sd.synthetic_digits(
        30, seed=2, cache_dir=tmp_path
    )  # read back, checksum verified
    np.testing.assert_array_equal(cached, images)
    np.testing.assert_array_equal(cached_labels, labels)
    npz = tmp_path / files[0]
    np.savez_compressed(npz, images=np.zeros_like(images), labels=labels)  # same name, other content
    with pytest.warns(RuntimeWarning, match="does not match its checksum"):
        repaired, _ = sd.synthetic_digits(30, seed=2, cache_dir=tmp_path)
    np.testing.assert_array_equal(repaired, images)
    again, _ = sd.synthetic_digits(30, seed=2, cache_dir=tmp_path)  # the rewritten file passes again
    np.testing.assert_array_equal(again, images)


def test_bad_arguments_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cases = [
        (lambda: sd.render_digits(0), "n must be a positive integer"),
        (lambda: sd.render_digits(5.5), "n must be a positive integer"),  # type: ignore[arg-type]
        (lambda: sd.render_digits(5, seed=-1), "seed must be a non-negative int"),
        (lambda: sd.render_digits(5, fonts=[]), "fonts must be a non-empty sequence"),
        (lambda: sd.render_digits(5, fonts="DejaVuSans.ttf"), "fonts must be a non-empty sequence"),
        (
            lambda: sd.render_digits(5, fonts=["NoSuchFont.ttf"]),
            "neither a file nor one of matplotlib's fonts",
        ),
        (lambda: sd.render_digits(5, rotation=-1), "rotation must be a finite number >= 0"),
        (lambda: sd.render_digits(5, scale=0.7), "scale must be a finite number >= 0 and < 0.5"),
        (lambda: sd.render_digits(3, labels=np.array([1, 2])), r"labels must be 3 integer digits"),
        (lambda: sd.render_digits(2, labels=np.array([1.0, 2.0])), "labels must be 2 integer digits"),
        (lambda: sd.render_digits(2, labels=np.array([1, 10])), "digits 0-9"),
        (lambda: sd.synthetic_digits(5, cache_dir=tmp_path / "file"), "is a file, not a folder"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
