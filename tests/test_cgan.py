"""The conditional GAN chapter: the label-conditioned DCGAN on both sides -- weight transfer both ways,
the same train step, the same batches and noise through the one loop, conditioning that matters, the
unconditional twin, learning, resume, the label helpers and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # first: Keras on TensorFlow

# isort: split
import keras
import torch

import companion
from companion import bridge
from companion.tensorflow import cgan as tf_cgan
from companion.torch import cgan as pt_cgan
from companion.training import cgan_task
from companion.training.run_folder import RunFolderError
from companion.validation import InputError

TOL = 1e-4
SIDES = pytest.mark.parametrize("module", [pt_cgan, tf_cgan], ids=["torch", "tensorflow"])
CLASSES = pytest.mark.parametrize("n_classes", [10, 0], ids=["conditional", "twin"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """256 real digits (N, 28, 28) in [0, 1] and their labels."""
    return companion.load_mnist("train", source="subset", layout="hw", limit=256, verbose=False)


def _random_batch_norm_keras(model: keras.Model, rng: np.random.Generator) -> None:
    """Non-trivial BN statistics, so that inference really depends on them."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape).astype(np.float32),
                    rng.normal(0, 0.1, shape).astype(np.float32),
                    rng.normal(0, 0.1, shape).astype(np.float32),
                    rng.uniform(0.5, 2.0, shape).astype(np.float32),
                ]
            )


def _random_batch_norm_torch(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, tf_cgan.NOISE_DIM), dtype=np.float32)


def _labels(n_classes: int, n: int = 6) -> np.ndarray | None:
    return np.arange(n) % n_classes if n_classes else None


def _twins(n_classes: int = 10) -> tuple[tf_cgan.CGAN, pt_cgan.CGAN]:
    """A Keras and a PyTorch CGAN without dropout, with the same weights and fresh optimisers."""
    k = tf_cgan.CGAN(n_classes=n_classes, dropout=0.0, seed=0)
    t = pt_cgan.CGAN(n_classes=n_classes, dropout=0.0, seed=0, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    return k, t


def _weights(gan) -> list[np.ndarray]:
    if isinstance(gan, tf_cgan.CGAN):
        return [w for model in (gan.generator, gan.discriminator) for w in model.get_weights()]
    return [
        v.detach().cpu().numpy() for m in (gan.generator, gan.discriminator) for v in m.state_dict().values()
    ]


# ---------------------------------------------------------------------- the networks


@CLASSES
def test_same_layers_and_parameter_counts(n_classes):
    kg, kd = tf_cgan.build_cgan_generator(n_classes), tf_cgan.build_cgan_discriminator(n_classes)
    tg, td = pt_cgan.build_cgan_generator(n_classes), pt_cgan.build_cgan_discriminator(n_classes)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    g_params = sum(w.numpy().size for w in kg.trainable_weights)
    d_params = sum(w.numpy().size for w in kd.trainable_weights)
    assert g_params == count(tg) and d_params == count(td)
    # The label adds one input row per class to G's dense layer and one input channel per class to D's conv1.
    c1 = tf_cgan.G_FILTERS[0]
    twin_g, twin_d = 100 * 7 * 7 * c1 + 2 * 7 * 7 * c1 + 16 * c1 * 32 + 2 * 32 + 16 * 32 + 1, None
    if n_classes == 0:
        assert g_params == twin_g
    else:
        assert g_params == twin_g + 10 * 7 * 7 * c1
    twin_d = sum(w.numpy().size for w in tf_cgan.build_cgan_discriminator(0).trainable_weights)
    assert d_params - twin_d == n_classes * 16 * tf_cgan.D_FILTERS[0]
    k_names = [layer.name for layer in kg.layers if layer.weights]
    assert k_names == [n for n, m in tg.named_children() if list(m.parameters())]
    assert kg.output_shape == (None, 28, 28, 1) and kd.output_shape == (None, 1)
    onehot = None if n_classes == 0 else torch.zeros(2, n_classes)
    assert tuple(tg(torch.zeros(2, 100), onehot).shape) == (2, 1, 28, 28)
    assert tuple(td(torch.zeros(2, 1, 28, 28), onehot).shape) == (2, 1)


@CLASSES
def test_keras_to_torch_gives_same_images_and_logits(n_classes):
    rng = np.random.default_rng(0)
    kg, kd = tf_cgan.build_cgan_generator(n_classes), tf_cgan.build_cgan_discriminator(n_classes)
    _random_batch_norm_keras(kg, rng)
    tg = bridge.keras_to_torch(kg, pt_cgan.build_cgan_generator(n_classes))
    td = bridge.keras_to_torch(kd, pt_cgan.build_cgan_discriminator(n_classes))
    z, y = _noise(6), _labels(n_classes)
    images = tf_cgan.generate(kg, z, y)
    assert images.shape == (6, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
    assert np.abs(images - pt_cgan.generate(tg, z, y)).max() <= TOL
    assert images.std() > 1e-2  # not a trivial comparison
    x = rng.uniform(0, 1, (6, 28, 28)).astype(np.float32)
    logits = tf_cgan.discriminate(kd, x, y)
    assert logits.shape == (6,) and np.abs(logits).max() > 1e-3
    assert np.abs(logits - pt_cgan.discriminate(td, x, y)).max() <= TOL


@CLASSES
def test_torch_to_keras_gives_same_images_and_logits(n_classes):
    rng = np.random.default_rng(1)
    tg, td = pt_cgan.build_cgan_generator(n_classes), pt_cgan.build_cgan_discriminator(n_classes)
    _random_batch_norm_torch(tg)
    kg = bridge.torch_to_keras(tg, tf_cgan.build_cgan_generator(n_classes))
    kd = bridge.torch_to_keras(td, tf_cgan.build_cgan_discriminator(n_classes))
    z, y = _noise(6, seed=1), _labels(n_classes)
    assert np.abs(tf_cgan.generate(kg, z, y) - pt_cgan.generate(tg, z, y)).max() <= TOL
    x = rng.uniform(0, 1, (6, 28, 28)).astype(np.float32)
    logits = pt_cgan.discriminate(td, x, y)
    assert np.abs(logits).max() > 1e-3
    assert np.abs(tf_cgan.discriminate(kd, x, y) - logits).max() <= TOL


@SIDES
def test_the_label_conditions_both_networks(module):
    """Same noise, another digit: another image; same image, another label: another logit. Soft labels
    reach the generator: halfway between two digits lies strictly between their images."""
    rng = np.random.default_rng(2)
    g, d = module.build_cgan_generator(), module.build_cgan_discriminator()
    z = np.repeat(_noise(1, seed=3), 4, axis=0)
    three, eight = module.generate(g, z, 3), module.generate(g, z, 8)
    assert np.abs(three - eight).max() > 1e-3
    np.testing.assert_array_equal(three[0], three[3])  # the label is all that differs
    path = cgan_task.interpolate_labels(3, 8, 4)
    between = module.generate(g, z, path)
    np.testing.assert_allclose(between[0], three[0], atol=1e-6)
    np.testing.assert_allclose(between[-1], eight[0], atol=1e-6)
    assert 1e-4 < np.abs(between[1] - three[0]).max() < np.abs(eight[0] - three[0]).max()
    x = rng.uniform(0, 1, (5, 28, 28)).astype(np.float32)
    as_zero, as_seven = module.discriminate(d, x, np.zeros(5, int)), module.discriminate(d, x, np.full(5, 7))
    assert np.abs(as_zero - as_seven).min() > 1e-4
    # sample(): seeded noise, a digit for all or digits in turn.
    np.testing.assert_allclose(module.sample(g, 4, 3, seed=5), module.sample(g, 4, [3, 3, 3, 3], seed=5))
    assert module.sample(g, 12).shape == (12, 28, 28)
    assert np.abs(module.sample(g, 2, seed=5) - module.sample(g, 2, seed=6)).max() > 1e-4


def test_the_unconditional_twin_takes_no_labels():
    for module in (tf_cgan, pt_cgan):
        gan = module.CGAN(n_classes=0, seed=0, device="cpu")
        assert gan.n_classes == 0 and module.sample(gan, 3).shape == (3, 28, 28)
        with pytest.raises(InputError, match="unconditional"):
            module.sample(gan, 3, label=2)
        with pytest.raises(InputError, match="unconditional"):
            module.discriminate(gan.discriminator, np.zeros((2, 28, 28), np.float32), [1, 2])


# ---------------------------------------------------------------------- the train step


@CLASSES
def test_one_train_step_matches_across_frameworks(n_classes):
    """Same weights, batch, labels and noise (dropout off): the same losses; a second step agrees too."""
    k, t = _twins(n_classes)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (16, 28, 28)).astype(np.float32)
    z = _noise(16, seed=4)
    onehot = cgan_task.one_hot(np.arange(16) % 10) if n_classes else None
    t_onehot = None if onehot is None else torch.from_numpy(onehot)
    xt, zt = torch.from_numpy(x[:, None]), torch.from_numpy(z)
    first_k = {n: float(v) for n, v in k.train_step(x[..., None], z, onehot).items()}
    first_t = {n: float(v) for n, v in t.train_step(xt, zt, t_onehot).items()}
    second_k = {n: float(v) for n, v in k.train_step(x[..., None], z, onehot).items()}
    second_t = {n: float(v) for n, v in t.train_step(xt, zt, t_onehot).items()}
    for name in tf_cgan.METRICS:
        assert abs(first_k[name] - first_t[name]) <= TOL, name
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert abs(second_k[name] - second_t[name]) <= 5e-3, name
    for first, second in ((first_k, second_k), (first_t, second_t)):
        assert abs(second["d_fake"] - first["d_fake"]) > 1e-3  # both networks moved
        assert abs(second["g_loss"] - first["g_loss"]) > 1e-3


def test_the_loop_feeds_both_frameworks_the_same_batches_noise_and_labels(digits):
    x, y = digits
    k, t = _twins()
    settings = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "log_every": 0, "seed": 11}
    _, from_k = tf_cgan.train(x, y, gan=k, **settings)
    _, from_t = pt_cgan.train(x, y, gan=t, **settings)
    for name in tf_cgan.METRICS:
        assert abs(from_k[name][0] - from_t[name][0]) <= TOL, name
    # Another seed picks other images, labels and noise: the losses move (the check above is not vacuous).
    _, other = pt_cgan.train(x, y, gan=_twins()[1], **{**settings, "seed": 12})
    assert sum(abs(other[name][0] - from_t[name][0]) for name in tf_cgan.METRICS) > 10 * TOL


# ---------------------------------------------------------------------- training


@SIDES
def test_quick_training_learns(module, digits):
    """40 steps on real digits: D learns to tell real from fake (its loss falls from about the 2 ln 2 of a
    coin toss, by about 0.6 on both sides) and G's samples move from mid-grey towards MNIST's dark
    background (pixel mean 0.50 -> 0.45 and 0.51 -> 0.44; eval mode lags, as batch norm's running
    statistics are still mostly their starting values)."""
    x, y = digits
    gan = module.CGAN(seed=0, device="cpu")
    before = module.sample(gan, 100).mean()
    _, history = module.train(x, y, gan=gan, epochs=5, batch_size=32, log_every=0)
    assert set(history) == {*module.METRICS, "seconds", "train_seconds", "steps"}
    assert history["steps"] == [8] * 5  # 256 // 32
    assert history["d_loss"][-1] < history["d_loss"][0] - 0.4
    assert history["d_real"][-1] - history["d_fake"][-1] > history["d_real"][0] - history["d_fake"][0] + 0.2
    after = module.sample(gan, 100).mean()
    assert abs(after - x.mean()) < abs(before - x.mean()) - 0.03


@SIDES
def test_resume_equals_an_unbroken_run(module, digits, tmp_path):
    """Epoch 1, stop, resume for epoch 2 == two epochs in one go: same losses, weights, frames; dropout on."""
    x, y = digits
    settings = {"batch_size": 16, "steps_per_epoch": 2, "seed": 5, "log_every": 0}
    whole_gan, whole = module.train(x, y, epochs=2, **settings)
    module.train(x, y, epochs=1, out_dir=tmp_path, **settings)
    other = module.CGAN(
        seed=99, device="cpu"
    )  # other weights and random state: all must come from the folder
    gan, resumed = module.train(x, y, epochs=2, out_dir=tmp_path, gan=other, **settings)
    assert gan is other
    for name in module.METRICS:
        np.testing.assert_allclose(resumed[name], whole[name], atol=1e-6, err_msg=name)
    for got, want in zip(_weights(gan), _weights(whole_gan), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"] == "cgan" and run["n_classes"] == 10 and run["framework"] == module.FRAMEWORK
    frames = np.load(tmp_path / "frames.npy")
    assert frames.shape == (2, 10 * module.N_PER_CLASS, 28, 28) and frames.dtype == np.uint8
    assert (tmp_path / "training.gif").is_file()
    loaded = module.load(tmp_path)
    np.testing.assert_allclose(module.sample(loaded, 10), module.sample(gan, 10), atol=1e-6)
    other_side = pt_cgan if module is tf_cgan else tf_cgan
    with pytest.raises(RunFolderError, match="not a"):
        other_side.load(tmp_path)


def test_the_twin_trains_on_the_same_call_and_is_saved_as_such(digits, tmp_path: Path):
    x, y = digits
    gan, history = pt_cgan.train(
        x, y, n_classes=0, epochs=1, batch_size=16, steps_per_epoch=2, out_dir=tmp_path, log_every=0
    )
    assert gan.n_classes == 0 and np.isfinite(history["g_loss"]).all()
    assert json.loads((tmp_path / "run.json").read_text())["n_classes"] == 0
    assert pt_cgan.load(tmp_path).n_classes == 0
    # The twin's grid: 80 different noise vectors (the conditional grid repeats 8 across the digits).
    frames = np.load(tmp_path / "frames.npy")[0]
    assert len({f.tobytes() for f in frames}) == 80


# ---------------------------------------------------------------------- labels and scores


def test_label_helpers():
    np.testing.assert_array_equal(
        cgan_task.label_grid(2), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    )
    noise = cgan_task.grid_noise(3, 5)
    assert noise.shape == (30, 5)
    np.testing.assert_array_equal(noise[:3], noise[27:])  # one noise vector per column, in every row
    path = cgan_task.interpolate_labels(1, 7, 5)
    assert path.shape == (5, 10) and path.dtype == np.float32
    np.testing.assert_allclose(path.sum(axis=1), 1.0)
    np.testing.assert_allclose(path[2, [1, 7]], [0.5, 0.5])
    np.testing.assert_array_equal(path[0], cgan_task.one_hot([1])[0])
    # Training takes integers or one-hot rows, both as one-hot rows; sampling also takes soft rows.
    hard = cgan_task.check_labels(np.array([2, 0]), 2, soft=False)
    np.testing.assert_array_equal(cgan_task.check_labels(hard, 2, soft=False), hard)
    np.testing.assert_array_equal(cgan_task.check_labels(path, 5), path)


def test_label_agreement_overall_and_per_digit():
    requested = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 5, 1, 1, 0, 2])
    agreement = cgan_task.label_agreement(predicted, requested)
    assert agreement.overall == pytest.approx(4 / 6)
    np.testing.assert_allclose(agreement.per_class[:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(agreement.per_class[3:]).all() and agreement.counts.tolist()[:3] == [2, 3, 1]
    probabilities = np.eye(10)[predicted] * 0.8 + 0.02  # the classifier's predict_proba: argmax counts
    assert cgan_task.label_agreement(probabilities, requested).overall == agreement.overall
    assert str(agreement).startswith("0.667 (0: 0.50, 1: 0.67, 2: 1.00, 3: nan")


# ---------------------------------------------------------------------- bad input


@SIDES
def test_bad_inputs_are_reported(module, digits):
    x, y = digits[0][:64], digits[1][:64]
    gan = module.CGAN(seed=0, device="cpu")
    g, d = gan.generator, gan.discriminator
    z = _noise(4)
    soft = np.full((64, 10), 0.1, np.float32)
    cases = [
        (lambda: module.train(x, epochs=1), "needs labels"),
        (lambda: module.train(x, y + 1, epochs=1), r"must lie in \[0, 10\)"),
        (lambda: module.train(x, y[:10], epochs=1), "10 entries for 64 images"),
        (lambda: module.train(x, y.astype(float), epochs=1), r"must be integers.*astype\(int\)"),
        (lambda: module.train(x, soft, epochs=1), "one-hot rows for training"),
        (lambda: module.train(x, y[:, None], epochs=1), r"shape \(64, 1\)"),
        (lambda: module.train(x, y, epochs=1, n_classes=1), "n_classes must be 0"),
        (lambda: module.train(x * 255.0, y, epochs=1), "divide by 255"),
        (lambda: module.train(x.reshape(64, 784), y, epochs=1), "28x28 digits"),
        (lambda: module.train(x, y, epochs=1, batch_size=65), "exceeds the 64 training images"),
        (lambda: module.train(x, y, epochs=1, gan=module.CGAN(n_classes=0)), "built with n_classes=0"),
        (lambda: module.generate(g, z, np.full(4, 12)), r"must lie in \[0, 10\)"),
        (lambda: module.generate(g, z, np.ones((4, 9), np.float32) / 9), r"shape \(4, 9\)"),
        (lambda: module.generate(g, z, np.ones((4, 10), np.float32)), "probability vectors"),
        (lambda: module.generate(g, z[:, :50], 3), r"noise has shape \(4, 50\)"),
        (lambda: module.generate(g, z, [1, 2]), "2 entries for 4 images"),
        (lambda: module.discriminate(d, x[:4]), "needs labels"),
        (lambda: module.sample(gan, 0), "n must be a positive integer"),
        (lambda: cgan_task.label_agreement([1, 2], [1, 2, 3]), "one prediction per requested label"),
        (lambda: cgan_task.interpolate_labels(1, 10, 3), r"must lie in \[0, 10\)"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
    with pytest.raises(TypeError, match="unexpected settings"):
        module.train(x, y, epochs=1, learning_rate=1e-3)
