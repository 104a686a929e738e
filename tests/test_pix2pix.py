"""Pix2pix: the pairs, the PatchGAN's receptive field, weight transfer and loss parity between the two
frameworks, one train step on both sides, the one loop (training lowers L1, resume equals an unbroken
run, run folders) and the input checks."""

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
from companion import bridge, image_pairs
from companion.tensorflow import pix2pix as tf_p2p
from companion.torch import pix2pix as pt_p2p
from companion.training import pix2pix_task
from companion.training.run_folder import RunFolderError
from companion.validation import InputError

SIDES = {"tensorflow": tf_p2p, "torch": pt_p2p}
TOL = 1e-4
TIMINGS = {"seconds", "train_seconds", "steps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """256 (masked digit, digit) pairs from the MNIST subset, (N, 28, 28) in [0, 1]."""
    x, _ = companion.load_mnist("train", layout="hw", source="subset", limit=256, verbose=False)
    return image_pairs.make_pairs(x, "lower_half")


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def batch(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random (inputs, targets) in [-1, 1], channels last."""
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32) for _ in range(2))  # type: ignore[return-value]


def _random_batch_norm(keras_model: keras.Model, rng: np.random.Generator) -> None:
    """Non-trivial BN statistics, so that inference really depends on them."""
    for layer in keras_model.layers:
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


# --------------------------------------------------------------------------- pairs


def test_outline_of_a_square_is_its_cross_dilation_minus_its_erosion() -> None:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 10:13, 10:13] = 0.8  # a 3x3 square of ink
    image[0, 20, 5] = 0.4  # below the 0.5 threshold: not a stroke
    expected = np.zeros((28, 28), np.float32)
    expected[9:14, 10:13] = 1  # the square grown by the cross: up and down ...
    expected[10:13, 9:14] = 1  # ... left and right, corners untouched
    expected[11, 11] = 0  # the erosion keeps only the centre (its four neighbours are ink)
    out = image_pairs.outline(image)
    np.testing.assert_array_equal(out[0], expected)
    assert out.dtype == np.float32 and out.sum() == 20
    # A lone pixel: its outline is the pixel and its four neighbours (its erosion is empty).
    dot = np.zeros((1, 28, 28), np.float32)
    dot[0, 0, 0] = 1.0  # at the corner: outside the image counts as background
    assert image_pairs.outline(dot)[0].sum() == 3


def test_hide_lower_half_zeroes_rows_14_to_27_and_keeps_the_rest() -> None:
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    hidden = image_pairs.hide_lower_half(x[:, None])  # one channel, channels first
    assert hidden.shape == (3, 28, 28)
    assert not hidden[:, 14:].any()
    np.testing.assert_array_equal(hidden[:, :14], x[:, :14])
    inputs, targets = image_pairs.make_pairs(x[..., None], "lower_half")
    np.testing.assert_array_equal(inputs, hidden)
    np.testing.assert_array_equal(targets, x)
    inputs, targets = image_pairs.make_pairs(x, "outline")
    np.testing.assert_array_equal(inputs, image_pairs.outline(x))
    assert set(np.unique(inputs)) <= {0.0, 1.0}
    assert image_pairs.TASKS == ("outline", "lower_half")


# --------------------------------------------------------------------------- the PatchGAN's receptive field


def test_receptive_field_matches_a_hand_computation() -> None:
    # Each layer adds (kernel - 1) x (product of earlier strides): 1 + 3*1 + 3*2 + 2*4 = 18.
    assert pix2pix_task.receptive_field((4, 4, 3), (2, 2, 1)) == 18 == pix2pix_task.PATCH_RECEPTIVE_FIELD
    # The paper's 70x70 PatchGAN: 4x4 convolutions, strides 2, 2, 2, 1, 1.
    assert pix2pix_task.receptive_field((4, 4, 4, 4, 4), (2, 2, 2, 1, 1)) == 70
    assert pix2pix_task.receptive_field((3,), (1,)) == 3
    assert tf_p2p.PATCH_RECEPTIVE_FIELD == pt_p2p.PATCH_RECEPTIVE_FIELD == 18


def test_one_patch_logit_depends_on_an_18x18_patch_exactly() -> None:
    """The gradient of one interior logit is non-zero exactly on a PATCH_RECEPTIVE_FIELD-wide square."""
    d = pt_p2p.build_patch_discriminator(seed=0).eval()
    x, y = (torch.zeros(1, 1, 28, 28, requires_grad=True) for _ in range(2))
    d(x, y)[0, 0, 3, 3].backward()
    for grad in (x.grad, y.grad):
        rows, cols = np.nonzero(grad[0, 0].numpy())
        assert (
            rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 == pix2pix_task.PATCH_RECEPTIVE_FIELD
        )
    assert d(x, y).shape == (1, 1, pix2pix_task.PATCH_GRID, pix2pix_task.PATCH_GRID)


# --------------------------------------------------------------------------- the networks on both sides


def test_same_layers_and_parameter_counts() -> None:
    kg, tg = tf_p2p.build_unet(), pt_p2p.build_unet()
    kd, td = tf_p2p.build_patch_discriminator(), pt_p2p.build_patch_discriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert sum(w.numpy().size for w in kg.trainable_weights) == count(tg) == 969_249
    assert sum(w.numpy().size for w in kd.trainable_weights) == count(td) == 34_529
    assert [layer.name for layer in kg.layers if layer.weights] == [n for n, _ in tg.named_children()]
    assert kg.output_shape == (None, 28, 28, 1) and kd.output_shape == (None, 7, 7, 1)


@pytest.mark.parametrize("direction", ["keras_to_torch", "torch_to_keras"])
def test_weight_transfer_gives_the_same_outputs(direction: str) -> None:
    """Inference (random BN statistics) and training mode (batch statistics, no dropout), both networks."""
    kg, tg = tf_p2p.build_unet(dropout=0.0, seed=1), pt_p2p.build_unet(dropout=0.0, seed=2)
    kd, td = tf_p2p.build_patch_discriminator(seed=3), pt_p2p.build_patch_discriminator(seed=4)
    rng = np.random.default_rng(5)
    for k, t in ((kg, tg), (kd, td)):
        _random_batch_norm(k, rng)
        if direction == "keras_to_torch":
            bridge.keras_to_torch(k, t)
        else:
            with torch.no_grad():
                for m in t.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.normal_(0, 0.1)
                        m.running_var.uniform_(0.5, 2.0)
            bridge.torch_to_keras(t, k)
    x, y = batch()
    for training in (False, True):
        tg.train(training)
        td.train(training)
        with torch.no_grad():
            g_torch, d_torch = nhwc(tg(nchw(x))), nhwc(td(nchw(x), nchw(y)))
        g_keras = kg(x, training=training).numpy()
        d_keras = kd([x, y], training=training).numpy()
        np.testing.assert_allclose(g_keras, g_torch, atol=TOL, err_msg=f"U-Net, training={training}")
        np.testing.assert_allclose(d_keras, d_torch, atol=TOL, err_msg=f"PatchGAN, training={training}")


def test_losses_agree_on_the_same_batch() -> None:
    """Same weights, same batch, eval mode: the same L1 + GAN generator loss and D loss."""
    kg, tg = tf_p2p.build_unet(seed=1), pt_p2p.build_unet()
    kd, td = tf_p2p.build_patch_discriminator(seed=2), pt_p2p.build_patch_discriminator()
    bridge.keras_to_torch(kg, tg)
    bridge.keras_to_torch(kd, td)
    tg.eval()
    td.eval()
    x, y = batch(seed=3)
    x_k, y_k = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    out_k = kg(x_k, training=False)
    real_k, fake_k = kd([x_k, y_k], training=False), kd([x_k, out_k], training=False)
    keras_losses = [
        *tf_p2p.generator_loss(fake_k, out_k, y_k, 100.0),
        tf_p2p.discriminator_loss(real_k, fake_k),
    ]
    with torch.no_grad():
        xt, yt = nchw(x), nchw(y)
        out_t = tg(xt)
        real_t, fake_t = td(xt, yt), td(xt, out_t)
        torch_losses = [
            *pt_p2p.generator_loss(fake_t, out_t, yt, 100.0),
            pt_p2p.discriminator_loss(real_t, fake_t),
        ]
    keras_values = [float(v) for v in keras_losses]
    torch_values = [float(v) for v in torch_losses]
    np.testing.assert_allclose(keras_values, torch_values, rtol=TOL, atol=TOL)
    total, adversarial, l1 = torch_values[:3]
    assert total == pytest.approx(adversarial + 100.0 * l1, rel=1e-6)
    assert l1 == pytest.approx(np.mean(np.abs(y - out_k.numpy())), rel=1e-5)
    # D's loss at logits 0 is 2 ln 2; G's adversarial loss is ln 2.
    zero = torch.zeros(2, 1, 7, 7)
    assert float(pt_p2p.discriminator_loss(zero, zero)) == pytest.approx(2 * np.log(2), rel=1e-6)
    assert float(tf_p2p.generator_loss(zero.numpy(), zero.numpy(), zero.numpy())[1]) == pytest.approx(
        np.log(2)
    )


def test_one_train_step_matches_across_frameworks() -> None:
    """Same weights and batch (dropout off): the same step metrics, then both move, no NaN."""
    k = tf_p2p.Pix2Pix(dropout=0.0, device="cpu", seed=0)
    t = pt_p2p.Pix2Pix(dropout=0.0, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    x, y = batch(16, seed=4)
    steps_k = [{n: float(v) for n, v in k.train_step(x, y).items()} for _ in range(2)]
    steps_t = [{n: float(v) for n, v in t.train_step(nchw(x), nchw(y)).items()} for _ in range(2)]
    for name in pix2pix_task.METRICS:
        assert abs(steps_k[0][name] - steps_t[0][name]) <= TOL, name
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert abs(steps_k[1][name] - steps_t[1][name]) <= 5e-3, name
    for first, second in (steps_k, steps_t):
        assert np.isfinite(list(first.values()) + list(second.values())).all()
        assert abs(second["d_loss"] - first["d_loss"]) > 1e-4 and abs(second["g_l1"] - first["g_l1"]) > 1e-4


# --------------------------------------------------------------------------- the one loop


@pytest.mark.parametrize("side", SIDES)
def test_quick_training_lowers_l1(side: str, pairs) -> None:
    module = SIDES[side]
    inputs, targets = pairs
    model, history = module.train(
        inputs, targets, epochs=3, batch_size=32, steps_per_epoch=6, log_every=0, seed=1, device="cpu"
    )
    assert set(history) == {"g_l1", "g_adv", "d_loss", *TIMINGS} and history["steps"] == [6, 6, 6]
    assert history["g_l1"][-1] < 0.8 * history["g_l1"][0]
    outputs = model.translate(inputs[:5])
    assert outputs.shape == (5, 28, 28) and 0.0 <= outputs.min() and outputs.max() <= 1.0
    assert model.patch_logits(inputs[:5], targets[:5]).shape == (5, 7, 7)
    _, baseline = module.train(
        inputs, targets, epochs=2, batch_size=32, steps_per_epoch=6, adversarial=False, log_every=0
    )
    assert set(baseline) == {"g_l1", *TIMINGS} and baseline["g_l1"][-1] < baseline["g_l1"][0]


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, pairs, tmp_path: Path, capsys) -> None:
    module = SIDES[side]
    inputs, targets = pairs[0][:128], pairs[1][:128]
    settings = {"batch_size": 32, "steps_per_epoch": 3, "seed": 3, "device": "cpu", "log_every": 1}
    unbroken_model, unbroken = module.train(inputs, targets, epochs=3, out_dir=tmp_path / "a", **settings)
    module.train(inputs, targets, epochs=2, out_dir=tmp_path / "b", **settings)
    capsys.readouterr()
    resumed_model, resumed = module.train(inputs, targets, epochs=3, out_dir=tmp_path / "b", **settings)
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path / 'b'} after epoch 2" in printed and "epoch 1/3" not in printed
    for name in pix2pix_task.METRICS:
        np.testing.assert_allclose(resumed[name], unbroken[name], rtol=1e-5, err_msg=name)
    expected = unbroken_model.translate(inputs[:8])
    np.testing.assert_allclose(resumed_model.translate(inputs[:8]), expected, atol=1e-5)
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["model"] == "pix2pix" and run["l1_weight"] == 100.0 and run["adversarial"] is True
    assert "task" not in run and run["filters"] == pix2pix_task.FILTERS
    loaded = module.load(tmp_path / "b", device="cpu")
    np.testing.assert_allclose(loaded.translate(inputs[:8]), expected, atol=1e-5)
    other = SIDES["torch" if side == "tensorflow" else "tensorflow"]
    with pytest.raises(RunFolderError, match="not a"):
        other.load(tmp_path / "b")


# --------------------------------------------------------------------------- scores and bad input


class _StubClassifier:
    """Features: the mean ink of each row; prediction: the row with the most ink, modulo 10."""

    def features(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, np.float64).reshape(len(images), 28, 28).mean(axis=2)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.features(images).argmax(axis=1) % 10


def test_translation_scores(pairs) -> None:
    _, targets = pairs
    targets = targets[:64]
    labels = _StubClassifier().predict(targets)
    perfect = pix2pix_task.translation_scores(targets, targets, labels, _StubClassifier())
    assert perfect["l1"] == 0.0 and perfect["fd"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["label_match"] == 1.0 and perfect["grey_share"] == perfect["target_grey_share"]
    grey = np.full_like(targets, 0.5)
    blurred = pix2pix_task.translation_scores(grey, targets, labels, _StubClassifier())
    assert blurred["l1"] == pytest.approx(np.mean(np.abs(targets - 0.5)), rel=1e-6)
    assert blurred["fd"] > 0.01 and blurred["grey_share"] == 1.0


@pytest.mark.parametrize("side", SIDES)
def test_bad_inputs_get_clear_errors(side: str, pairs) -> None:
    module = SIDES[side]
    inputs, targets = pairs[0][:64], pairs[1][:64]
    cases = [
        (lambda: module.train(inputs, targets[:32]), "inputs has 64 images but targets has 32"),
        (lambda: module.train(inputs[:, :27, :27], targets), r"shape \(64, 27, 27\).*28x28"),
        (lambda: module.train(inputs, targets.reshape(64, 784)), r"targets has shape \(64, 784\)"),
        (lambda: module.train(inputs * 255, targets), "divide by 255"),
        (lambda: module.train(inputs, targets, l1_weight=-1.0), "l1_weight must be a finite number >= 0"),
        (lambda: module.train(inputs, targets, l1_weight=0, adversarial=False), "l1_weight must be > 0"),
        (lambda: module.train(inputs, targets, adversarial="yes"), "adversarial must be True"),
        (lambda: module.train(inputs, targets, batch_size=128), "batch_size 128 exceeds the 64"),
        (lambda: module.Pix2Pix(dropout=1.0), r"dropout must be a rate in \[0, 1\)"),
        (lambda: module.build_unet(0), "filters must be a positive integer"),
        (lambda: module.translate(module.build_unet(), inputs.reshape(64, 1, 784)), "28x28"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
    with pytest.raises(TypeError, match="unexpected settings"):
        module.train(inputs, targets, epoch=3)


def test_bad_neutral_inputs_get_clear_errors(pairs) -> None:
    inputs, targets = pairs[0][:8], pairs[1][:8]
    stub = _StubClassifier()
    cases = [
        (lambda: image_pairs.make_pairs(targets, "edges"), "task must be one of"),
        (lambda: image_pairs.outline(targets.reshape(8, 784)), "28x28"),
        (lambda: image_pairs.hide_lower_half(targets - 0.5), r"must lie in \[0.0, 1.0\]"),
        (lambda: pix2pix_task.receptive_field((4, 4), (2,)), "one stride per kernel size"),
        (lambda: pix2pix_task.receptive_field((4, 0), (2, 1)), "kernel_sizes must be a positive integer"),
        (lambda: pix2pix_task.translation_scores(inputs, targets[:4], np.zeros(8, int), stub), "one output"),
        (lambda: pix2pix_task.translation_scores(inputs, targets, np.zeros(8), stub), "integer digits"),
        (lambda: pix2pix_task.translation_scores(inputs, targets, np.zeros(5, int), stub), r"shape \(8,\)"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()


@pytest.mark.parametrize("side", SIDES)
def test_a_given_model_is_trained_and_must_match_the_settings(side: str, pairs) -> None:
    module = SIDES[side]
    inputs, targets = pairs[0][:64], pairs[1][:64]
    given = module.Pix2Pix(adversarial=False, seed=5, device="cpu")
    start = given.translate(inputs[:4])
    settings = {"epochs": 1, "batch_size": 32, "log_every": 0}
    trained, _ = module.train(inputs, targets, adversarial=False, gan=given, **settings)
    assert trained is given and np.abs(given.translate(inputs[:4]) - start).max() > 0
    with pytest.raises(InputError, match="gan= was built with adversarial=False"):
        module.train(inputs, targets, gan=given, **settings)
