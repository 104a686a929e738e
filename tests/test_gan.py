"""Chapter 4 GAN: loss parity, freezing, weight-transfer parity, quick training and the divergence guard."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import companion.tensorflow  # noqa: F401  (first: pins Keras to TensorFlow, silences its start-up log)

# isort: split
import keras
import tensorflow as tf
import torch

from companion import bridge, load_mnist, sample_latent
from companion.tensorflow import gan as tfg
from companion.torch import gan as ptg

TOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small MLPs: one thread is as fast, and avoids oversubscribing a small shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x, _ = load_mnist("train", source="subset", limit=200, verbose=False)
    return x


def _softplus(v: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, v)


def _logits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.normal(0.0, 3.0, (64, 1)).astype(np.float32)
    fake = rng.normal(-2.0, 3.0, (64, 1)).astype(np.float32)
    real[:2], fake[:2] = [[60.0], [-60.0]], [[-80.0], [80.0]]  # saturated logits: log(0) if done naively
    return real, fake


def _pair() -> tuple[keras.Model, keras.Model, torch.nn.Module, torch.nn.Module]:
    """TF and PyTorch G and D holding the same weights (copied Keras -> PyTorch)."""
    g_tf, d_tf = tfg.build_generator(), tfg.build_discriminator()
    g_pt = bridge.keras_to_torch(g_tf, ptg.build_generator())
    d_pt = bridge.keras_to_torch(d_tf, ptg.build_discriminator())
    return g_tf, d_tf, g_pt, d_pt


# ----------------------------------------------------------------- losses


def test_loss_parity_and_reference_values() -> None:
    real, fake = _logits()
    reference = {
        "d": _softplus(-real).mean() + _softplus(fake).mean(),
        "non_saturating": _softplus(-fake).mean(),
        "saturating": -_softplus(fake).mean(),
    }
    d_tf = float(tfg.discriminator_loss(tf.constant(real), tf.constant(fake)))
    d_pt = float(ptg.discriminator_loss(torch.from_numpy(real), torch.from_numpy(fake)))
    assert np.isfinite([d_tf, d_pt]).all()
    assert abs(d_tf - d_pt) <= 1e-5 and abs(d_tf - reference["d"]) <= 1e-4
    for variant in ("non_saturating", "saturating"):
        g_tf = float(tfg.generator_loss(tf.constant(fake), variant))
        g_pt = float(ptg.generator_loss(torch.from_numpy(fake), variant))
        assert np.isfinite([g_tf, g_pt]).all()
        assert abs(g_tf - g_pt) <= 1e-5, variant
        assert abs(g_tf - reference[variant]) <= 1e-4, variant


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        tfg.generator_loss(tf.zeros((2, 1)), "minimax")
    with pytest.raises(ValueError, match="variant"):
        ptg.generator_loss(torch.zeros(2, 1), "minimax")


def test_saturating_gradient_vanishes_where_non_saturating_does_not() -> None:
    """d loss / d logit at D(G(z)) = 0.001: about -0.001 (saturating) versus about -1 (non-saturating)."""
    logit = float(np.log(0.001 / 0.999))
    for variant, expected in (("saturating", -0.001), ("non_saturating", -0.999)):
        t = torch.tensor([[logit]], requires_grad=True)
        ptg.generator_loss(t, variant).backward()
        v = tf.Variable([[logit]])
        with tf.GradientTape() as tape:
            loss = tfg.generator_loss(v, variant)
        g_tf = float(tape.gradient(loss, v)[0, 0])
        assert abs(float(t.grad[0, 0]) - expected) < 1e-5 and abs(g_tf - expected) < 1e-5, variant


# ----------------------------------------------------------------- weight transfer and step parity


def test_weight_transfer_parity_both_directions() -> None:
    g_tf, d_tf, g_pt, d_pt = _pair()
    noise = sample_latent(32, tfg.NOISE_DIM, seed=3)
    fake_tf = tfg.generate(g_tf, noise)
    assert fake_tf.shape == (32, 784) and fake_tf.min() >= 0.0 and fake_tf.max() <= 1.0
    assert np.abs(fake_tf - ptg.generate(g_pt, noise)).max() <= TOL
    assert np.abs(tfg.discriminate(d_tf, fake_tf) - ptg.discriminate(d_pt, fake_tf)).max() <= TOL
    # and back: fresh PyTorch weights into fresh Keras models
    g_pt2, d_pt2 = ptg.build_generator(), ptg.build_discriminator()
    g_tf2 = bridge.torch_to_keras(g_pt2, tfg.build_generator())
    d_tf2 = bridge.torch_to_keras(d_pt2, tfg.build_discriminator())
    assert np.abs(tfg.generate(g_tf2, noise) - ptg.generate(g_pt2, noise)).max() <= TOL
    assert np.abs(tfg.discriminate(d_tf2, fake_tf) - ptg.discriminate(d_pt2, fake_tf)).max() <= TOL


def test_train_step_parity(images: np.ndarray) -> None:
    """Same weights, batch and noise: one round of the game gives the same losses and the same new weights.

    Plain SGD on both sides, so the check covers the step itself (losses, gradients, what is frozen);
    Adam differs slightly by design -- Keras adds epsilon before the bias correction, PyTorch after.
    """
    g_tf, d_tf, g_pt, d_pt = _pair()
    real = images[:100]
    d_noise, g_noise = sample_latent(100, 128, seed=1), sample_latent(100, 128, seed=2)
    tf_opts = keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05)
    pt_opts = torch.optim.SGD(g_pt.parameters(), lr=0.05), torch.optim.SGD(d_pt.parameters(), lr=0.05)
    m_tf = tfg.train_step(g_tf, d_tf, *tf_opts, real, d_noise, g_noise)
    m_pt = ptg.train_step(g_pt, d_pt, *pt_opts, *map(torch.from_numpy, (real, d_noise, g_noise)))
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert abs(float(m_tf[name]) - float(m_pt[name])) <= TOL, name
    noise = sample_latent(16, 128, seed=4)
    assert np.abs(tfg.generate(g_tf, noise) - ptg.generate(g_pt, noise)).max() <= TOL
    assert np.abs(tfg.discriminate(d_tf, real) - ptg.discriminate(d_pt, real)).max() <= TOL


# ----------------------------------------------------------------- freezing


def _moved(before: list[np.ndarray], after: list[np.ndarray]) -> list[bool]:
    return [bool(np.any(a != b)) for a, b in zip(before, after)]


def test_freezing_gradient_tape(images: np.ndarray) -> None:
    g, d = tfg.build_generator(), tfg.build_discriminator()
    g_opt, d_opt = tfg.make_optimizers(g, d)
    real, noise = images[:100], sample_latent(100, 128, seed=0)
    g0, d0 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
    tfg.discriminator_step(g, d, d_opt, tf.constant(real), tf.constant(noise))
    g1, d1 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
    assert not any(_moved(g0, g1)), "a D step changed the generator"
    assert all(_moved(d0, d1)), "a D step left some discriminator weight unchanged"
    for variant in ("non_saturating", "saturating"):
        g1, d1 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
        tfg.generator_step(g, d, g_opt, tf.constant(noise), variant)
        assert not any(_moved(d1, tfg.weight_snapshot(d))), f"a G step ({variant}) changed the discriminator"
        assert all(_moved(g1, tfg.weight_snapshot(g))), variant


def test_freezing_pytorch_detach_and_separate_optimisers(images: np.ndarray) -> None:
    g, d = ptg.build_generator(), ptg.build_discriminator()
    g_opt, d_opt = ptg.make_optimizers(g, d)
    real, noise = torch.from_numpy(images[:100]), torch.from_numpy(sample_latent(100, 128, seed=0))
    g0, d0 = ptg.weight_snapshot(g), ptg.weight_snapshot(d)
    ptg.discriminator_step(g, d, d_opt, real, noise)
    assert not any(_moved(g0, ptg.weight_snapshot(g))), "a D step changed the generator"
    assert all(p.grad is None for p in g.parameters()), "detach() should keep D's loss away from G"
    assert all(_moved(d0, ptg.weight_snapshot(d)))
    for variant in ("non_saturating", "saturating"):
        g1, d1 = ptg.weight_snapshot(g), ptg.weight_snapshot(d)
        ptg.generator_step(g, d, g_opt, noise, variant)
        assert not any(_moved(d1, ptg.weight_snapshot(d))), f"a G step ({variant}) changed the discriminator"
        assert all(_moved(g1, ptg.weight_snapshot(g))), variant
        # D received gradients during the G step; it stays put because only g_opt stepped
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_keras_combined_model_freezes_d_and_keras3_reads_trainable_at_first_call(images: np.ndarray) -> None:
    n = 100
    real, ones, zeros = images[:n], np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)
    noise = sample_latent(n, 128, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras warns that D has no trainable weights
        # the blog recipe as written
        g, d = tfg.build_generator(), tfg.build_discriminator()
        combined = tfg.keras_combined_model(g, d)
        g0, d0 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
        combined.train_on_batch(noise, ones)
        assert not any(_moved(d0, tfg.weight_snapshot(d))), "the combined model changed D"
        assert all(_moved(g0, tfg.weight_snapshot(g))), "the combined model did not train G"
        d1 = tfg.weight_snapshot(d)
        d.train_on_batch(real, ones)
        d.train_on_batch(tfg.generate(g, noise), zeros)
        # Keras 3: D's own train function was first traced while trainable=False, so D never learns.
        assert not any(_moved(d1, tfg.weight_snapshot(d))), (
            "Keras changed when it reads `trainable`: update chapter 4"
        )
        # with the toggle patch each train function is traced in the intended state
        g, d = tfg.build_generator(), tfg.build_discriminator()
        combined = tfg.keras_combined_model(g, d)
        d0 = tfg.weight_snapshot(d)
        tfg.keras_idiom_step(g, d, combined, real, noise, noise, toggle=True)
        assert all(_moved(d0, tfg.weight_snapshot(d))), "with toggle=True D's own step must train D"
        d1, g1 = tfg.weight_snapshot(d), tfg.weight_snapshot(g)
        combined.train_on_batch(noise, ones)
        assert not any(_moved(d1, tfg.weight_snapshot(d))) and all(_moved(g1, tfg.weight_snapshot(g)))


def test_separate_learning_rates() -> None:
    g_opt, d_opt = tfg.make_optimizers(
        tfg.build_generator(), tfg.build_discriminator(), 1e-3, d_learning_rate=1e-4
    )
    assert np.isclose(float(g_opt.learning_rate), 1e-3) and np.isclose(float(d_opt.learning_rate), 1e-4)
    g_opt, d_opt = ptg.make_optimizers(
        ptg.build_generator(), ptg.build_discriminator(), 1e-3, d_learning_rate=1e-4
    )
    assert g_opt.param_groups[0]["lr"] == 1e-3 and d_opt.param_groups[0]["lr"] == 1e-4
    with pytest.raises(ValueError, match="d_learning_rate"):
        ptg.make_optimizers(ptg.build_generator(), ptg.build_discriminator(), d_learning_rate=0.0)


# ----------------------------------------------------------------- training and divergence


@pytest.mark.parametrize("side", ["tensorflow", "torch"])
def test_quick_training_runs_without_nan(side: str, images: np.ndarray) -> None:
    gan = tfg if side == "tensorflow" else ptg
    run = gan.train_gan(images, epochs=2, seed=0, log_every=0)
    assert set(run.history) == {"d_loss", "g_loss", "d_real", "d_fake"}
    values = np.array(list(run.history.values()))
    assert values.shape == (4, 2) and np.isfinite(values).all()
    assert sorted(run.samples) == [0, 1, 2]
    final = run.samples[2]
    assert final.shape == (16, 784) and final.min() >= 0.0 and final.max() <= 1.0
    assert np.abs(final - run.samples[0]).max() > 0.0, "training did not change the generator"


def test_keras_idiom_loop_runs(images: np.ndarray) -> None:
    toggled = tfg.train_gan_keras_idiom(images, epochs=1, toggle=True, log_every=0)
    assert toggled.history["d_change"][0] > 0 and toggled.history["g_change"][0] > 0
    assert np.isfinite([v[0] for v in toggled.history.values()]).all()
    assert toggled.samples[1].shape == (16, 784)


@pytest.mark.parametrize("side", ["tensorflow", "torch"])
def test_divergence_stops_training_with_a_clear_error(side: str, images: np.ndarray) -> None:
    gan = tfg if side == "tensorflow" else ptg
    discriminator = gan.build_discriminator()
    if side == "tensorflow":
        kernel = discriminator.get_layer("logit").kernel
        kernel.assign(tf.fill(kernel.shape, float("nan")))
    else:
        with torch.no_grad():
            discriminator.logit.weight.fill_(float("nan"))
    with pytest.raises(gan.GanDivergedError, match=r"diverged at epoch 1, step 0: .*d_loss=nan"):
        gan.train_gan(images, epochs=3, discriminator=discriminator, log_every=0)


@pytest.mark.parametrize("side", ["tensorflow", "torch"])
def test_bad_inputs_are_refused(side: str, images: np.ndarray) -> None:
    gan = tfg if side == "tensorflow" else ptg
    with pytest.raises(ValueError, match="0-255"):
        gan.train_gan(images * 255.0, epochs=1)
    with pytest.raises(ValueError, match="expected"):
        gan.train_gan(images.reshape(-1, 28, 28), epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        gan.train_gan(images[:50], epochs=1)
