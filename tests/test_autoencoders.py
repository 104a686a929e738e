"""Parity of the chapter 2-3 autoencoders: Keras and PyTorch compute the same function.

Weights are copied with ``companion.bridge`` in both directions; the same images (channels-last
for Keras, channels-first for PyTorch) must give outputs within 1e-4 and the same loss.
"""

from __future__ import annotations

import numpy as np
import pytest

import companion
from companion import bridge
from companion.evaluation import metrics
from companion.tensorflow import autoencoders as tf_ae
from companion.tensorflow import training as tf_train
from companion.torch import autoencoders as pt_ae
from companion.torch import training as pt_train
from companion.training import tasks
from companion.validation import InputError

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

KINDS = ["dense", "deep", "conv"]
TOL = 1e-4


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Real digits, channels-last (N, 28, 28, 1) in [0, 1]."""
    x, _ = companion.load_mnist("train", layout="nhwc", source="subset", limit=64, verbose=False)
    return x


def keras_layout(model, x_nhwc: np.ndarray) -> np.ndarray:
    return x_nhwc.reshape(len(x_nhwc), *model.example_shape)


def torch_layout(model, x_nhwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).reshape(len(x_nhwc), *model.example_shape)


def flat(x: np.ndarray) -> np.ndarray:
    """Any layout of single-channel 28x28 images -> (N, 784) in the same pixel order."""
    return np.asarray(x).reshape(len(x), -1)


def test_same_names_on_both_sides() -> None:
    for name in [
        "Autoencoder",
        "KINDS",
        "build_autoencoder",
        "dense_autoencoder",
        "deep_autoencoder",
        "conv_autoencoder",
        "encode",
        "decode",
        "reconstruct",
        "reconstruction_loss",
        "count_parameters",
        "autoencoder_step",
        "evaluate_loss",
        "fit_autoencoder",
        "load_autoencoder",
    ]:
        assert hasattr(tf_ae, name) and hasattr(pt_ae, name), name
    for name in ["Trainer", "make_adam", "FRAMEWORK"]:
        assert hasattr(tf_train, name) and hasattr(pt_train, name), name
    assert tf_ae.KINDS == pt_ae.KINDS == tuple(KINDS)
    assert {tf_train.FRAMEWORK, pt_train.FRAMEWORK} == {"tensorflow", "torch"}


@pytest.mark.parametrize("kind", KINDS)
def test_builders_record_their_kind(kind: str) -> None:
    for module in (tf_ae, pt_ae):
        model = module.build_autoencoder(kind, 6)
        assert model.kind == kind and model.code_size == 6
        assert getattr(module, f"{kind}_autoencoder")(3).kind == kind


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code_size", [2, 32])
def test_shapes_and_parameter_counts(kind: str, code_size: int, digits: np.ndarray) -> None:
    k, t = tf_ae.build_autoencoder(kind, code_size), pt_ae.build_autoencoder(kind, code_size)
    assert k.code_size == t.code_size == code_size
    assert tf_ae.count_parameters(k) == pt_ae.count_parameters(t)
    xk, xt = keras_layout(k, digits[:5]), torch_layout(t, digits[:5])
    assert tf_ae.encode(k, xk).shape == pt_ae.encode(t, xt).shape == (5, code_size)
    out_k, out_t = tf_ae.reconstruct(k, xk), pt_ae.reconstruct(t, xt)
    assert out_k.shape == xk.shape and out_t.shape == xt.shape
    assert 0.0 <= out_k.min() and out_k.max() <= 1.0  # sigmoid output


@pytest.mark.parametrize("kind", KINDS)
def test_keras_weights_in_torch_give_the_same_outputs(kind: str, digits: np.ndarray) -> None:
    companion.seed_everything(1)
    k, t = tf_ae.build_autoencoder(kind, 16), pt_ae.build_autoencoder(kind, 16)
    xk, xt = keras_layout(k, digits), torch_layout(t, digits)
    before = np.abs(flat(tf_ae.reconstruct(k, xk)) - flat(pt_ae.reconstruct(t, xt))).max()
    assert before > 1e-3  # independent initialisations really differ, so the check below means something
    bridge.keras_to_torch(k, t)
    assert np.abs(tf_ae.encode(k, xk) - pt_ae.encode(t, xt)).max() <= TOL
    assert np.abs(flat(tf_ae.reconstruct(k, xk)) - flat(pt_ae.reconstruct(t, xt))).max() <= TOL
    z = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    assert np.abs(flat(tf_ae.decode(k, z)) - flat(pt_ae.decode(t, z))).max() <= TOL


@pytest.mark.parametrize("kind", KINDS)
def test_torch_weights_in_keras_give_the_same_outputs(kind: str, digits: np.ndarray) -> None:
    companion.seed_everything(2)
    k, t = tf_ae.build_autoencoder(kind, 16), pt_ae.build_autoencoder(kind, 16)
    bridge.torch_to_keras(t, k)
    xk, xt = keras_layout(k, digits), torch_layout(t, digits)
    assert np.abs(flat(tf_ae.reconstruct(k, xk)) - flat(pt_ae.reconstruct(t, xt))).max() <= TOL


@pytest.mark.parametrize("kind", KINDS)
def test_losses_agree_on_the_same_batch(kind: str, digits: np.ndarray) -> None:
    companion.seed_everything(3)
    k, t = tf_ae.build_autoencoder(kind, 8), pt_ae.build_autoencoder(kind, 8)
    bridge.keras_to_torch(k, t)
    xk, xt = keras_layout(k, digits), torch_layout(t, digits)
    loss_k = float(tf_ae.reconstruction_loss(tf.constant(xk), k(tf.constant(xk))))
    with torch.no_grad():
        loss_t = float(pt_ae.reconstruction_loss(torch.from_numpy(xt), t(torch.from_numpy(xt))))
    reference = metrics.mse(flat(xk), flat(tf_ae.reconstruct(k, xk)))  # the plain NumPy definition
    assert abs(loss_k - loss_t) <= 1e-6
    assert abs(loss_k - reference) <= 1e-6
    assert abs(tf_ae.evaluate_loss(k, xk) - pt_ae.evaluate_loss(t, xt)) <= 1e-6
    assert abs(tf_ae.evaluate_loss(k, xk) - reference) <= 1e-6


def _train_from_the_same_start(kind: str, digits: np.ndarray) -> tuple[dict, dict, float]:
    companion.seed_everything(4)
    k, t = tf_ae.build_autoencoder(kind, 8), pt_ae.build_autoencoder(kind, 8)
    bridge.keras_to_torch(k, t)
    xk, xt = keras_layout(k, digits), torch_layout(t, digits)
    settings = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "noise": 0.3, "seed": 5, "log_every": 0}
    h_k = tf_ae.fit_autoencoder(k, xk, **settings)
    h_t = pt_ae.fit_autoencoder(t, xt, **settings)
    return h_k, h_t, float(np.abs(flat(tf_ae.reconstruct(k, xk)) - flat(pt_ae.reconstruct(t, xt))).max())


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_same_start_same_batches_train_to_the_same_model(kind: str, digits: np.ndarray, monkeypatch) -> None:
    """The loops agree too: equal weights, the same seeded batches and noise, the same Adam.

    Keras adds Adam's epsilon before the bias correction and PyTorch after it, so with the
    shared epsilon=1e-7 weights whose gradients are close to zero step a little differently
    in the first iterations. With a negligible epsilon that difference vanishes and the two
    loops must train the same model (up to float32 round-off, which Adam's normalised steps
    amplify a little over the 8 steps).
    """
    monkeypatch.setitem(tasks.AE_ADAM, "epsilon", 1e-12)  # both sides read it when they build Adam
    h_k, h_t, max_diff = _train_from_the_same_start(kind, digits)
    assert h_k["steps"] == h_t["steps"] == [4, 4]
    np.testing.assert_allclose(h_k["train"], h_t["train"], rtol=1e-4)
    assert max_diff <= 1e-3


def test_the_shared_adam_settings_reach_both_optimisers() -> None:
    k, t = tf_ae.dense_autoencoder(4), pt_ae.dense_autoencoder(4)
    k_opt = tf_train.make_adam(k, 1e-3, **tasks.AE_ADAM)
    t_opt = pt_train.make_adam(t, 1e-3, **tasks.AE_ADAM)
    group = t_opt.param_groups[0]
    assert group["eps"] == pytest.approx(float(k_opt.epsilon)) == pytest.approx(tasks.AE_ADAM["epsilon"])
    assert group["betas"] == pytest.approx((float(k_opt.beta_1), float(k_opt.beta_2)))
    assert group["lr"] == pytest.approx(float(k_opt.learning_rate))


def test_torch_conv_flattens_channels_last() -> None:
    """The permute is what lets the Keras Dense kernel after Flatten be copied unchanged."""
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # N, C, H, W
    flat_t = pt_ae.ChannelsLastFlatten()(x)
    flat_k = x.permute(0, 2, 3, 1).numpy().reshape(2, -1)  # what keras.layers.Flatten does on NHWC
    np.testing.assert_array_equal(flat_t.numpy(), flat_k)
    np.testing.assert_array_equal(pt_ae.ChannelsLastUnflatten(2, 2, 3)(flat_t).numpy(), x.numpy())


@pytest.mark.parametrize("bad", [0, -3, 2.5, "32"])
def test_bad_code_size_is_rejected(bad) -> None:
    for module in (tf_ae, pt_ae):
        with pytest.raises(ValueError, match="code_size"):
            module.dense_autoencoder(bad)
    with pytest.raises(ValueError, match="kind must be one of"):
        pt_ae.build_autoencoder("vae", 8)
    with pytest.raises(ValueError, match="kind must be one of"):
        tf_ae.build_autoencoder("vae", 8)


def _bad_images(module, model, digits: np.ndarray) -> list[tuple[np.ndarray, str]]:
    layout = keras_layout if module is tf_ae else torch_layout
    x = layout(model, digits[:4])
    nan = x.copy()
    nan.reshape(-1)[5] = np.nan
    wrong = x.reshape(4, -1) if len(model.example_shape) > 1 else x.reshape(4, 28, 28)
    return [(x * 255.0, "divide by 255"), (nan, "NaN"), (wrong, "shape"), (x[:0], "empty")]


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("module", [tf_ae, pt_ae], ids=["tensorflow", "torch"])
def test_encode_and_reconstruct_validate_their_input(module, kind: str, digits: np.ndarray) -> None:
    model = module.build_autoencoder(kind, 4)
    for bad, message in _bad_images(module, model, digits):
        for function in (module.encode, module.reconstruct):
            with pytest.raises(InputError, match=message):
                function(model, bad)
    with pytest.raises(InputError, match="shape"):
        module.decode(model, np.zeros((3, 5), np.float32))  # code_size is 4
    with pytest.raises(InputError, match="NaN"):
        module.decode(model, np.full((3, 4), np.nan, np.float32))
    assert module.decode(model, np.full((2, 4), 50.0, np.float32)).shape == (2, *model.example_shape)
