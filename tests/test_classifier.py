"""The digit classifier that measures which digits a generator draws: accuracy, layouts, cache."""

from __future__ import annotations

import numpy as np
import pytest

from companion import load_mnist
from companion.evaluation import classifier
from companion.evaluation.metrics import class_coverage

ACCURACY_FLOOR = 0.88  # an MLP on the 4,000-image subset scores about 0.93 on the 1,000 held-out images


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("classifier")


@pytest.fixture(scope="module")
def trained(cache) -> classifier.DigitClassifier:
    return classifier.load_classifier(cache, source="subset")


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    return load_mnist("test", source="subset", verbose=False)


def test_accuracy_on_held_out_digits(trained, test_split) -> None:
    x, y = test_split
    assert not trained.from_cache and trained.source == "subset" and trained.n_train == 4000
    assert trained.accuracy(x, y) == pytest.approx(trained.test_accuracy)
    assert trained.test_accuracy > ACCURACY_FLOOR
    # every digit is recognised, not just the easy ones
    per_digit = [np.mean(trained.predict(x[y == k]) == k) for k in range(10)]
    assert min(per_digit) > 0.7, per_digit
    coverage = class_coverage(trained.predict(x))
    assert coverage.max() < 0.15, "a balanced test set must not look collapsed"


def test_outputs_and_layouts(trained, test_split) -> None:
    x, _ = test_split
    x = x[:50]
    proba = trained.predict_proba(x)
    assert proba.shape == (50, 10) and np.allclose(proba.sum(axis=1), 1.0)
    assert trained.features(x).shape == (50, classifier.HIDDEN)
    for layout in (x.reshape(-1, 28, 28), x.reshape(-1, 28, 28, 1), x.reshape(-1, 1, 28, 28)):
        np.testing.assert_allclose(trained.predict_proba(layout), proba, atol=1e-12)
    with pytest.raises(ValueError, match="0-255"):
        trained.predict(x * 255)


def test_confident_share_counts_sure_predictions(trained, test_split) -> None:
    x, _ = test_split
    real = trained.confident_share(x[:200])
    assert 0.7 < real <= 1.0  # most real digits are read with confidence
    assert trained.confident_share(x[:200], confidence=1.01) == 0.0
    assert trained.confident_share(x[:200], confidence=0.0) == 1.0
    top = trained.predict_proba(x[:200]).max(axis=1)
    assert trained.confident_share(x[:200], confidence=0.99) == np.mean(top >= 0.99)


def test_cache_round_trip(trained, cache, test_split) -> None:
    x, _ = test_split
    again = classifier.load_classifier(cache, source="subset")
    assert again.from_cache
    assert again.test_accuracy == trained.test_accuracy
    np.testing.assert_array_equal(again.predict_proba(x), trained.predict_proba(x))
    path = classifier.cache_path(cache, "subset")
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickle needed
        assert {"w1", "b1", "w2", "b2", "sha256"} <= set(data.files)


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_damaged_cache_is_detected_and_retrained(tmp_path, trained, damage: str, capsys) -> None:
    path = classifier.cache_path(tmp_path, "subset")
    trained.save(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    else:  # a valid .npz whose weights no longer match the stored checksum
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["w2"] = arrays["w2"] + 0.01
        np.savez(path, **arrays)
    with pytest.raises(ValueError):
        classifier.DigitClassifier.load(path)
    fresh = classifier.load_classifier(tmp_path, source="subset")
    assert not fresh.from_cache and fresh.test_accuracy > ACCURACY_FLOOR
    assert "retraining" in capsys.readouterr().out
    assert path.with_name(path.name + ".corrupt").exists()
    assert classifier.load_classifier(tmp_path, source="subset").from_cache
