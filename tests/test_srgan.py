"""Super-resolution (SRGAN at MNIST scale): resampling, both frameworks' networks and losses, the loop.

Resampling: area downsampling averages blocks; bicubic upsampling keeps constants, reproduces a
linear ramp away from the borders, and equals PyTorch's bicubic (Keys a = -0.75, edge replication)
and TensorFlow's (a = -0.5, interior) resize. Parity: weights copied with ``companion.bridge`` both
ways give the same generator and discriminator outputs (<= 1e-4) and the same losses and first
step. Training: it lowers the MSE, a resumed run equals an unbroken one, and bad input is refused
with a message naming the fix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # first: Keras on TensorFlow

# isort: split
import tensorflow as tf
import torch

import companion
from companion import bridge
from companion.evaluation.classifier import DigitClassifier
from companion.resampling import bicubic_matrix, bicubic_upsample, downsample, keys_kernel
from companion.tensorflow import srgan as tf_sr
from companion.torch import srgan as pt_sr
from companion.training import srgan_task
from companion.training.run_folder import RunFolderError
from companion.validation import InputError

TOL = 1e-4
SIDES = {"tensorflow": tf_sr, "torch": pt_sr}
FRAMEWORKS = pytest.mark.parametrize("module", [tf_sr, pt_sr], ids=["tensorflow", "torch"])
GAN_METRICS = ("g_loss", "mse", "adversarial", "d_loss", "d_real", "d_fake")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """128 real digits (N, 28, 28) in [0, 1] and their labels."""
    return companion.load_mnist("train", layout="hw", source="subset", limit=128, verbose=False)


def _tensor(module, x: np.ndarray):
    """(N, s, s) NumPy -> the framework's one-channel layout."""
    return tf.constant(x[..., None]) if module is tf_sr else torch.from_numpy(x[:, None])


def _twins(adversarial_weight: float = 0.1, factor: int = 4):
    """A Keras and a PyTorch model with the same weights (torch's copied from Keras)."""
    k = tf_sr.SuperResolution(factor=factor, adversarial_weight=adversarial_weight, seed=1, device="cpu")
    t = pt_sr.SuperResolution(factor=factor, adversarial_weight=adversarial_weight, seed=2, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    if adversarial_weight:
        bridge.keras_to_torch(k.discriminator, t.discriminator)
    return k, t


# --------------------------------------------------------------------------- resampling


def test_downsample_averages_blocks_and_refuses_sizes_it_cannot_divide() -> None:
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28) / (2 * 28 * 28)
    for factor in (2, 4):
        low = downsample(x, factor)
        assert low.shape == (2, 28 // factor, 28 // factor) and low.dtype == np.float32
        np.testing.assert_allclose(
            low[1, 1, 2], x[1, factor : 2 * factor, 2 * factor : 3 * factor].mean(), rtol=1e-6
        )
        assert low.mean() == pytest.approx(x.mean(), rel=1e-6)  # area averaging keeps the total ink
    with pytest.raises(InputError, match="divides both sides"):
        downsample(x, 3)
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        downsample(x.reshape(2, 784), 4)
    with pytest.raises(InputError, match="positive integer"):
        downsample(x, 0)


def test_keys_kernel_interpolates_and_its_weights_sum_to_one() -> None:
    np.testing.assert_allclose(keys_kernel(np.array([0.0, 1.0, 2.0, -1.0, 2.5])), [1, 0, 0, 0, 0], atol=1e-12)
    for size, factor in ((7, 4), (14, 2), (3, 4)):
        matrix = bicubic_matrix(size, factor)
        assert matrix.shape == (size * factor, size)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


def test_bicubic_keeps_constants_and_reproduces_a_ramp_inside() -> None:
    constant = np.full((3, 7, 7), 0.37, np.float32)
    for factor in (2, 4):
        np.testing.assert_allclose(bicubic_upsample(constant, factor), 0.37, atol=1e-6)
    # A linear ramp in [0.2, 0.8] along the columns: the cubic kernel reproduces linear functions
    # wherever all four taps lie inside the image (output pixels 6..21 for 7 -> 28).
    columns = np.arange(7)
    ramp = np.broadcast_to(0.2 + 0.1 * columns, (1, 7, 7)).astype(np.float32)
    up = bicubic_upsample(ramp, 4)
    position = (np.arange(28) + 0.5) / 4 - 0.5
    inside = slice(6, 22)
    np.testing.assert_allclose(
        up[0, :, inside], np.broadcast_to(0.2 + 0.1 * position[inside], (28, 16)), atol=1e-6
    )
    # At the borders the edge pixel is repeated, so the ramp flattens instead of continuing.
    assert up[0, 0, 0] == pytest.approx(0.2, abs=0.02) and up[0, 0, 0] > 0.2 + 0.1 * position[0]


def test_bicubic_matches_pytorch_and_tensorflow_resizing() -> None:
    x = np.random.default_rng(0).uniform(0.3, 0.7, (4, 7, 7)).astype(np.float32)
    for factor in (2, 4):
        # PyTorch's bicubic is Keys' kernel with a = -0.75 and edge replication: equal everywhere.
        torch_up = torch.nn.functional.interpolate(
            torch.from_numpy(x[:, None]), scale_factor=factor, mode="bicubic", align_corners=False
        )[:, 0].numpy()
        np.testing.assert_allclose(bicubic_upsample(x, factor, a=-0.75), torch_up, atol=1e-6)
        # TensorFlow's uses a = -0.5 but renormalises the weights at the border: equal inside.
        tf_up = tf.image.resize(x[..., None], (7 * factor, 7 * factor), method="bicubic").numpy()[..., 0]
        inside = slice(2 * factor, 5 * factor)
        np.testing.assert_allclose(
            bicubic_upsample(x, factor)[:, inside, inside], tf_up[:, inside, inside], atol=1e-6
        )
    step = np.zeros((1, 7, 7), np.float32)
    step[0, :, 4:] = 1.0  # a sharp edge: the cubic kernel overshoots on both sides, the output is clipped
    raw = bicubic_matrix(7, 4) @ step[0] @ bicubic_matrix(7, 4).T
    assert raw.min() < -0.01 and raw.max() > 1.01
    np.testing.assert_allclose(bicubic_upsample(step, 4)[0], np.clip(raw, 0, 1), atol=1e-6)


# --------------------------------------------------------------------------- the networks


def test_same_names_layers_and_parameter_counts() -> None:
    for name in ("FACTORS", "ADVERSARIAL_WEIGHT", "FEATURES", "RESIDUAL_BLOCKS", "UP_FILTERS", "D_FILTERS"):
        assert getattr(tf_sr, name) == getattr(pt_sr, name), name
    for factor in (2, 4):
        k, t = tf_sr.build_sr_generator(factor), pt_sr.build_sr_generator(factor)
        assert k.count_params() == sum(p.numel() for p in t.parameters())
        pairs = bridge.paired_layers(k, t)
        assert [layer.name for layer, _ in pairs][-1] == "to_image"
        assert len(pairs) == 1 + 2 * tf_sr.RESIDUAL_BLOCKS + {2: 1, 4: 2}[factor] + 1
    k_d, t_d = tf_sr.build_sr_discriminator(), pt_sr.build_sr_discriminator()
    assert (
        k_d.count_params()
        == sum(p.numel() for p in t_d.parameters())
        == (16 * 32 + 32) + (16 * 32 * 64 + 64) + (7 * 7 * 64 + 1)
    )


@pytest.mark.parametrize("factor", [4, 2])
@pytest.mark.parametrize("direction", ["keras_to_torch", "torch_to_keras"])
def test_copied_weights_give_the_same_outputs(factor: int, direction: str, digits) -> None:
    x = digits[0][:32]
    low = downsample(x, factor)
    companion.seed_everything(factor)
    k_g, t_g = tf_sr.build_sr_generator(factor), pt_sr.build_sr_generator(factor)
    k_d, t_d = tf_sr.build_sr_discriminator(), pt_sr.build_sr_discriminator()
    assert np.abs(tf_sr.upscale(k_g, low) - pt_sr.upscale(t_g, low)).max() > 1e-3  # they really differ first
    if direction == "keras_to_torch":
        bridge.keras_to_torch(k_g, t_g)
        bridge.keras_to_torch(k_d, t_d)
    else:
        bridge.torch_to_keras(t_g, k_g)
        bridge.torch_to_keras(t_d, k_d)
    up_k, up_t = tf_sr.upscale(k_g, low), pt_sr.upscale(t_g, low[:, None])  # torch also takes (N, 1, s, s)
    assert up_k.shape == up_t.shape == (32, 28, 28) and 0.0 <= up_k.min() and up_k.max() <= 1.0
    assert np.abs(up_k - up_t).max() <= TOL
    logits_k = k_d(x[..., None], training=False).numpy()
    logits_t = t_d(torch.from_numpy(x[:, None])).detach().numpy()
    assert logits_k.shape == logits_t.shape == (32, 1)
    assert np.abs(logits_k - logits_t).max() <= TOL


def test_the_same_batch_gives_the_same_losses(digits) -> None:
    k, t = _twins()
    high = digits[0][:32]
    low = downsample(high, 4)
    values = {}
    for name, module, model in (("tensorflow", tf_sr, k), ("torch", pt_sr, t)):
        lo, hi = _tensor(module, low), _tensor(module, high)
        outputs = model.generator(lo)
        real_logits, fake_logits = model.discriminator(hi), model.discriminator(outputs)
        loss, mse, adversarial = module.generator_loss(outputs, hi, fake_logits, 0.25)
        d_loss = module.discriminator_loss(real_logits, fake_logits)
        plain = module.generator_loss(outputs, hi, None, 0.0)
        values[name] = [
            float(v.detach() if module is pt_sr else v) for v in (loss, mse, adversarial, d_loss, *plain)
        ]
        fake = np.asarray(fake_logits.detach() if module is pt_sr else fake_logits, np.float64)
        real = np.asarray(real_logits.detach() if module is pt_sr else real_logits, np.float64)
        images = np.asarray(outputs.detach() if module is pt_sr else outputs, np.float64).reshape(32, 28, 28)
        softplus = np.logaddexp(0.0, -fake).mean()  # -log sigmoid(logit), averaged
        d_expected = np.logaddexp(0.0, -real).mean() + np.logaddexp(0.0, fake).mean()
        np.testing.assert_allclose(
            values[name][:4],
            [
                ((images - high) ** 2).mean() + 0.25 * softplus,
                ((images - high) ** 2).mean(),
                softplus,
                d_expected,
            ],
            rtol=1e-5,
        )
        assert values[name][4:] == [values[name][1], values[name][1], 0.0]  # no D: the loss is the MSE
    np.testing.assert_allclose(values["tensorflow"], values["torch"], atol=TOL)


def test_one_train_step_matches_and_moves_both_networks(digits) -> None:
    k, t = _twins()
    high = digits[0][:16]
    low = downsample(high, 4)
    steps = {}
    for name, module, model in (("tensorflow", tf_sr, k), ("torch", pt_sr, t)):
        lo, hi = _tensor(module, low), _tensor(module, high)
        first = {n: float(v) for n, v in model.train_step(lo, hi).items()}
        second = {n: float(v) for n, v in model.train_step(lo, hi).items()}
        assert set(first) == set(GAN_METRICS)
        assert abs(second["d_fake"] - first["d_fake"]) > 1e-4 and abs(second["mse"] - first["mse"]) > 1e-5
        steps[name] = first, second
    for metric in GAN_METRICS:
        assert steps["tensorflow"][0][metric] == pytest.approx(steps["torch"][0][metric], abs=TOL), metric
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert steps["tensorflow"][1][metric] == pytest.approx(steps["torch"][1][metric], abs=5e-3), metric


@FRAMEWORKS
def test_mse_only_builds_no_discriminator(module, digits) -> None:
    model = module.SuperResolution(adversarial_weight=0.0, seed=0, device="cpu")
    assert model.discriminator is None and model.d_optimizer is None
    assert set(model.trainer().models) == {"generator"}
    high = digits[0][:8]
    metrics = model.train_step(_tensor(module, downsample(high, 4)), _tensor(module, high))
    assert set(metrics) == {"g_loss", "mse"} and float(metrics["g_loss"]) == float(metrics["mse"])


# --------------------------------------------------------------------------- the loop


@FRAMEWORKS
def test_training_lowers_the_mse(module, digits) -> None:
    high = digits[0]
    low = downsample(high, 4)
    settings = {"batch_size": 32, "lr": 2e-3, "seed": 3, "log_every": 0, "device": "cpu"}
    model, history = module.train(low, high, epochs=3, adversarial_weight=0.0, **settings)
    assert history["steps"] == [4, 4, 4] and set(history) >= {"g_loss", "mse", "seconds"}
    before = module.SuperResolution(adversarial_weight=0.0, seed=3, device="cpu")  # the same start, untrained
    mse_before = float(np.mean((module.upscale(before.generator, low) - high) ** 2))
    mse_after = float(np.mean((module.upscale(model.generator, low) - high) ** 2))
    assert mse_after < 0.6 * mse_before, (mse_before, mse_after)
    assert history["mse"][-1] < history["mse"][0]
    _, gan_history = module.train(low, high, epochs=1, adversarial_weight=0.1, **settings)
    assert set(gan_history) >= set(GAN_METRICS) and all(np.isfinite(gan_history[m][0]) for m in GAN_METRICS)


def test_the_loop_feeds_both_frameworks_the_same_batches(digits) -> None:
    """From equal weights, one epoch through the one loop gives the same losses on both sides."""
    high = digits[0][:64]
    low = downsample(high, 4)
    k, t = _twins()
    s = srgan_task.SrganConfig(epochs=1, batch_size=16, steps_per_epoch=2, seed=4, log_every=0)
    h_k = srgan_task.fit_srgan(k.trainer(), low[..., None], high[..., None], s)
    h_t = srgan_task.fit_srgan(t.trainer(), low[:, None], high[:, None], s)
    for metric in GAN_METRICS:
        # The second step follows one Adam update, where the two sides differ by ~1e-3 (epsilon).
        assert h_k[metric][0] == pytest.approx(h_t[metric][0], abs=2e-3), metric
    assert h_k["steps"] == h_t["steps"] == [2]


@FRAMEWORKS
def test_resume_equals_an_unbroken_run(module, digits, tmp_path) -> None:
    high = digits[0][:64]
    low = downsample(high, 4)
    settings = {"batch_size": 16, "steps_per_epoch": 2, "seed": 5, "log_every": 0, "device": "cpu"}
    whole_model, whole = module.train(low, high, epochs=2, **settings)
    module.train(low, high, epochs=1, out_dir=tmp_path, **settings)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"] == "srgan" and run["framework"] == module.__name__.split(".")[1]
    assert run["factor"] == 4 and run["adversarial_weight"] == srgan_task.ADVERSARIAL_WEIGHT
    model, resumed = module.train(low, high, epochs=2, out_dir=tmp_path, **settings)
    for metric in GAN_METRICS:
        np.testing.assert_allclose(resumed[metric], whole[metric], atol=1e-6, err_msg=metric)
    np.testing.assert_allclose(
        module.upscale(model.generator, low), module.upscale(whole_model.generator, low), atol=1e-6
    )
    loaded = module.load(tmp_path)
    np.testing.assert_allclose(
        module.upscale(loaded.generator, low), module.upscale(model.generator, low), atol=1e-6
    )
    assert loaded.discriminator is not None
    with pytest.raises(RunFolderError, match="not a"):
        SIDES["torch" if module is tf_sr else "tensorflow"].load(tmp_path)


# --------------------------------------------------------------------------- scores and bad input


def test_resolution_scores(digits) -> None:
    rng = np.random.default_rng(0)
    classifier = DigitClassifier(
        rng.normal(0, 0.05, (784, 128)),
        np.zeros(128),
        rng.normal(0, 0.1, (128, 10)),
        np.zeros(10),
        0.0,
        "test",
        0,
    )
    high, labels = digits
    perfect = srgan_task.resolution_scores(high, high, labels, classifier)
    assert perfect["psnr"] == 100.0 and abs(perfect["fd"]) < 1e-6
    assert perfect["accuracy"] == pytest.approx(np.mean(classifier.predict(high) == labels))
    blurred = srgan_task.resolution_scores(
        bicubic_upsample(downsample(high, 4), 4), high[..., None], labels, classifier
    )
    assert 10 < blurred["psnr"] < 30 and blurred["fd"] > 0.01
    assert blurred["grey_share"] > perfect["grey_share"]  # blur turns solid strokes grey
    with pytest.raises(InputError, match="one per image"):
        srgan_task.resolution_scores(high, high, labels[:-1], classifier)
    with pytest.raises(InputError, match="28x28"):
        srgan_task.resolution_scores(downsample(high, 2), high, labels, classifier)


@FRAMEWORKS
def test_bad_inputs_are_reported(module, digits) -> None:
    high = digits[0][:32]
    low4, low2 = downsample(high, 4), downsample(high, 2)
    quick = {"epochs": 1, "log_every": 0, "device": "cpu"}
    with pytest.raises(InputError, match=r"factor=4 upscales 7x7.*downsample\(high_res, 4\).*factor=2"):
        module.train(low2, high, **quick)
    with pytest.raises(InputError, match="factor=2 upscales 14x14"):
        module.train(low4, high, factor=2, **quick)
    with pytest.raises(InputError, match="targets are 28x28"):
        module.train(low4, low2, **quick)
    with pytest.raises(InputError, match="square one-channel images"):
        module.train(low4.reshape(32, 49), high, **quick)
    with pytest.raises(InputError, match="one low-resolution image per target"):
        module.train(low4[:-1], high, **quick)
    with pytest.raises(InputError, match="adversarial_weight must be a finite number >= 0"):
        module.train(low4, high, adversarial_weight=-0.1, **quick)
    with pytest.raises(InputError, match="factor must be 2"):
        module.train(low4, high, factor=3, **quick)
    with pytest.raises(InputError, match="factor must be 2"):
        module.SuperResolution(factor=8)
    with pytest.raises(InputError, match="must lie in"):
        module.train(low4 * 255, high, **quick)
    with pytest.raises(InputError, match="exceeds the 32 training pairs"):
        module.train(low4, high, batch_size=64, **quick)
    with pytest.raises(TypeError, match="unexpected settings"):
        module.train(low4, high, learning_rate=1e-3, **quick)
    generator = module.build_sr_generator(2)
    with pytest.raises(InputError, match="factor=2 upscales 14x14"):
        module.upscale(generator, low4)


@FRAMEWORKS
def test_a_given_model_is_trained_and_must_match_the_settings(module, digits) -> None:
    high = digits[0][:64]
    low = downsample(high, 4)
    given = module.SuperResolution(adversarial_weight=0.0, seed=5, device="cpu")
    start = module.upscale(given.generator, low[:4])
    trained, _ = module.train(
        low, high, epochs=1, batch_size=32, adversarial_weight=0.0, gan=given, log_every=0
    )
    assert trained is given and np.abs(module.upscale(given.generator, low[:4]) - start).max() > 0
    with pytest.raises(InputError, match=r"gan= was built with adversarial_weight=0\.0"):
        module.train(low, high, epochs=1, batch_size=32, gan=given, log_every=0)
