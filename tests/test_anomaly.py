"""The anomaly detection chapter: ROC AUC against hand-computed cases, the held-out split and its
record, AnoGAN's latent search on both sides (its objective falls, and from the same start and
weights both frameworks find the same z), the baselines, and clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # first: Keras on TensorFlow

# isort: split
import companion
from companion import bridge
from companion.evaluation.roc import roc_auc, roc_curve
from companion.tensorflow import anomaly as tf_anomaly
from companion.tensorflow import cgan as tf_cgan
from companion.torch import anomaly as pt_anomaly
from companion.torch import cgan as pt_cgan
from companion.training import anomaly_task
from companion.validation import InputError

SIDES = pytest.mark.parametrize("module", [pt_anomaly, tf_anomaly], ids=["torch", "tensorflow"])
TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """128 real digits (N, 28, 28) in [0, 1] and their labels."""
    return companion.load_mnist("train", source="subset", layout="hw", limit=128, verbose=False)


@pytest.fixture(scope="module")
def twins() -> tuple[tf_cgan.CGAN, pt_cgan.CGAN]:
    """Unconditional GANs with the same weights on both sides (Keras' copied into PyTorch)."""
    k = tf_cgan.CGAN(n_classes=0, seed=0)
    t = pt_cgan.CGAN(n_classes=0, seed=0, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    return k, t


# ---------------------------------------------------------------------- ROC


def test_auc_of_a_hand_computed_case():
    # Anomalies score 0.9, 0.4, 0.35; normal 0.8, 0.3, 0.2, 0.1. Pairs ordered correctly: 0.9 beats all
    # 4, 0.4 beats 3, 0.35 beats 3: 10 of 12.
    scores = [0.9, 0.8, 0.4, 0.35, 0.3, 0.2, 0.1]
    flags = [1, 0, 1, 1, 0, 0, 0]
    assert roc_auc(scores, flags) == pytest.approx(10 / 12)
    fpr, tpr, thresholds = roc_curve(scores, np.array(flags, bool))
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1, 1])
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(10 / 12)


def test_auc_of_perfect_reversed_and_tied_scores():
    flags = np.array([False, False, True, True])
    assert roc_auc([0.1, 0.2, 0.8, 0.9], flags) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], flags) == 0.0
    assert roc_auc([5, 5, 5, 5], flags) == 0.5
    fpr, tpr, _ = roc_curve([5.0, 5.0, 5.0, 5.0], flags)
    np.testing.assert_array_equal(fpr, [0, 1]) and np.testing.assert_array_equal(tpr, [0, 1])
    # One tie between an anomaly and a normal image counts one half: 3.5 of 4 pairs.
    assert roc_auc([0.1, 0.5, 0.5, 0.9], flags) == pytest.approx(3.5 / 4)


def test_auc_equals_the_area_under_the_curve_and_the_pair_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    flags = rng.random(60) < 0.3
    pos, neg = scores[flags], scores[~flags]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    fpr, tpr, _ = roc_curve(scores, flags)
    assert roc_auc(scores, flags) == pytest.approx(pairs) == pytest.approx(np.trapezoid(tpr, fpr))


@pytest.mark.parametrize(
    "scores, flags, match",
    [
        ([0.1, 0.2], [0, 0], "at least one anomaly"),
        ([0.1, 0.2], [1, 0, 1], "one flag per score"),
        ([0.1, np.nan], [1, 0], "NaN"),
        ([[0.1, 0.2]], [[1, 0]], r"shape \(N,\)"),
        ([0.1, 0.2], [2, 0], "booleans"),
    ],
)
def test_roc_refuses_bad_input(scores, flags, match):
    with pytest.raises(InputError, match=match):
        roc_auc(scores, flags)


# ---------------------------------------------------------------------- the held-out split


def test_the_held_out_digit_never_reaches_the_gan(digits):
    x, y = digits
    seen = {}

    def fake_train(images, labels, **settings):
        seen.update(images=images, labels=labels, settings=settings)
        return "gan", {}

    anomaly_task.train_normal_gan(fake_train, x, y, 3, {"epochs": 1})
    assert seen["labels"] is None and seen["settings"] == {"n_classes": 0, "epochs": 1}
    assert len(seen["images"]) == int(np.sum(y != 3)) and len(seen["images"]) < len(x)
    threes = x[y == 3].reshape(-1, 784)
    kept = seen["images"].reshape(-1, 784)
    assert not (kept[:, None] == threes[None]).all(axis=2).any()  # no held-out image among them
    with pytest.raises(TypeError, match="n_classes"):
        anomaly_task.train_normal_gan(fake_train, x, y, 3, {"epochs": 1, "n_classes": 10})


@SIDES
def test_train_records_the_holdout_and_load_returns_it(module, digits, tmp_path):
    x, y = digits
    gan, history = module.train_normal_gan(
        x, y, 3, epochs=1, steps_per_epoch=2, out_dir=tmp_path, log_every=0
    )
    assert gan.n_classes == 0 and len(history["g_loss"]) == 1
    record = json.loads((tmp_path / "anomaly.json").read_text())
    assert record["holdout"] == 3 and 3 not in record["classes"] and record["n_train"] == int(np.sum(y != 3))
    assert json.loads((tmp_path / "run.json").read_text())["n_train"] == record["n_train"]
    loaded, holdout = module.load_normal_gan(tmp_path, device="cpu")
    assert holdout == 3 and loaded.n_classes == 0
    with pytest.raises(InputError, match="held out digit 3"):
        module.train_normal_gan(x, y, 5, epochs=1, steps_per_epoch=2, out_dir=tmp_path, log_every=0)
    with pytest.raises(InputError, match=r"anomaly\.json is missing"):
        module.load_normal_gan(tmp_path / "nothing")


@pytest.mark.parametrize("holdout", [-1, 10, 3.0, True, "3"])
def test_bad_holdout_names_the_fix(holdout, digits):
    x, y = digits
    with pytest.raises(
        InputError, match=r"holdout must be the digit the GAN never sees, an int in \[0, 10\)"
    ):
        tf_anomaly.train_normal_gan(x, y, holdout, epochs=1)


def test_bad_labels_and_an_all_held_out_set_are_refused(digits):
    x, y = digits
    with pytest.raises(InputError, match="one label per image"):
        anomaly_task.normal_split(x, y[:-1], 3)
    with pytest.raises(InputError, match="astype"):
        anomaly_task.normal_split(x, y.astype(float), 3)
    with pytest.raises(InputError, match="held-out digit"):
        anomaly_task.normal_split(x[y == 3], y[y == 3], 3)


# ---------------------------------------------------------------------- latent inversion


def test_discriminator_features_match(twins, digits):
    k, t = twins
    a = tf_anomaly.discriminator_features(k.discriminator, digits[0][:6])
    b = pt_anomaly.discriminator_features(t.discriminator, digits[0][:6])
    assert a.shape == (6, 7 * 7 * 64) and np.abs(a).max() > 1e-3
    assert np.abs(a - b).max() <= TOL


def test_the_search_lowers_its_objective_and_both_sides_find_the_same_z(twins, digits):
    k, t = twins
    x = digits[0][:12]
    settings = {"steps": 5, "lr": 0.05, "feature_weight": 0.1, "seed": 4}
    a, b = tf_anomaly.invert(k, x, **settings), pt_anomaly.invert(t, x, **settings)
    z0 = anomaly_task.start_latent(len(x), 100, seed=4)
    for result in (a, b):
        assert result.z.shape == (12, 100) and result.reconstructions.shape == (12, 28, 28)
        assert len(result.objective) == 6 and np.all(np.diff(result.objective) < 0)
        assert np.abs(result.z - z0).max() > 0.1  # z moved: about lr per step
        np.testing.assert_allclose(
            result.scores, 0.9 * result.residual + 0.1 * result.discrimination, rtol=1e-5
        )
        assert result.objective[-1] == pytest.approx(result.scores.mean(), rel=1e-5)
    assert np.abs(a.z - b.z).max() <= 1e-3
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4)
    np.testing.assert_allclose(a.reconstructions, b.reconstructions, atol=1e-3)


@SIDES
def test_batches_do_not_change_the_result(module, twins, digits):
    gan = twins[0] if module is tf_anomaly else twins[1]
    x = digits[0][:7]
    whole = module.invert(gan, x, steps=3, batch_size=7)
    split = module.invert(gan, x, steps=3, batch_size=3)
    np.testing.assert_allclose(whole.z, split.z, atol=1e-5)
    np.testing.assert_allclose(whole.scores, split.scores, rtol=1e-5)
    # Only the pixel term, or only the feature term: each is the score.
    pixels, features = (
        module.invert(gan, x, steps=1, feature_weight=0),
        module.invert(gan, x, steps=1, feature_weight=1),
    )
    np.testing.assert_allclose(pixels.scores, pixels.residual, rtol=1e-6)
    np.testing.assert_allclose(features.scores, features.discrimination, rtol=1e-6)


@SIDES
@pytest.mark.parametrize(
    "settings, match",
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": 2.5}, "steps must be a positive integer"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"feature_weight": -0.1}, r"feature_weight must be a number in \[0, 1\]"),
        ({"feature_weight": 1.5}, r"feature_weight must be a number in \[0, 1\]"),
        ({"seed": -1}, "seed must be a non-negative int"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_inversion_settings_name_the_fix(module, settings, match, twins, digits):
    gan = twins[0] if module is tf_anomaly else twins[1]
    with pytest.raises(InputError, match=match):
        module.invert(gan, digits[0][:2], **settings)


@SIDES
def test_bad_images_and_a_conditional_gan_are_refused(module, twins, digits):
    gan = twins[0] if module is tf_anomaly else twins[1]
    with pytest.raises(InputError, match=r"28x28 digits"):
        module.invert(gan, np.zeros((2, 784), np.float32))
    with pytest.raises(InputError, match=r"must lie in \[0.0, 1.0\]"):
        module.invert(gan, digits[0][:2] * 255)
    conditional = (tf_cgan if module is tf_anomaly else pt_cgan).CGAN(n_classes=10, seed=0, device="cpu")
    with pytest.raises(InputError, match="n_classes=0"):
        module.invert(conditional, digits[0][:2])


# ---------------------------------------------------------------------- baselines and the table


def test_nearest_neighbour_distance_is_the_brute_force_one(digits):
    x = digits[0]
    test, train = x[:10], x[10:60]
    brute = np.sqrt(((test.reshape(10, 1, 784) - train.reshape(1, 50, 784)) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(anomaly_task.nearest_neighbour_score(test, train, chunk=3), brute, rtol=1e-5)
    np.testing.assert_allclose(anomaly_task.nearest_neighbour_score(x[:4, None], x[:20]), 0.0, atol=1e-3)
    with pytest.raises(InputError, match="28x28 digits"):
        anomaly_task.nearest_neighbour_score(x[:3, :14], train)


@SIDES
def test_autoencoder_score_trains_on_normal_digits_and_reuses_a_model(module, digits):
    x, y = digits
    normal, _ = anomaly_task.normal_split(x, y, 3)
    scores, model = module.autoencoder_score(x[:20], normal, epochs=1, device="cpu")
    assert scores.shape == (20,) and np.isfinite(scores).all() and scores.min() > 0
    again, same = module.autoencoder_score(
        x[:20, None] if module is pt_anomaly else x[:20, ..., None], model=model
    )
    assert same is model
    np.testing.assert_allclose(again, scores, rtol=1e-5)
    with pytest.raises(InputError, match="needs normal_images"):
        module.autoencoder_score(x[:20])


def test_anomaly_table_gives_one_auc_per_score():
    labels = np.array([3, 1, 3, 2, 0])
    table = anomaly_task.anomaly_table(
        {"perfect": [9, 1, 8, 2, 3], "reversed": [0, 5, 1, 6, 7], "flat": np.ones(5)}, labels, holdout=3
    )
    assert table == {"perfect": 1.0, "reversed": 0.0, "flat": 0.5}
    with pytest.raises(InputError, match="different lengths"):
        anomaly_task.anomaly_table({"a": [1, 2], "b": [1, 2, 3]}, labels[:2], 3)
    with pytest.raises(InputError, match="holdout"):
        anomaly_task.anomaly_table({"a": np.ones(5)}, labels, 11)
