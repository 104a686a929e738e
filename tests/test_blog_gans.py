"""The blog posts' other two GANs ("Training GANs on MNIST"): the convolutional GAN trained the Keras
way (``train_on_batch``, toggled ``trainable``) and its PyTorch loop, and the fully connected GAN with a
sigmoid discriminator and binary cross-entropy on probabilities."""

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
from companion.tensorflow import blog_gans as tfb
from companion.tensorflow import gan as tfg
from companion.torch import blog_gans as ptb
from companion.torch import gan as ptg
from companion.training import tasks
from companion.validation import InputError

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x, _ = load_mnist("train", source="subset", limit=64, verbose=False)
    return x


def _nchw(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 1, 28, 28)


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 28, 28, 1)


def _moved(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return tasks.max_abs_change(before, after) > 0


# ----------------------------------------------------------------- weight transfer


def test_conv_gan_weight_transfer_parity_both_ways(images: np.ndarray) -> None:
    noise = sample_latent(16, tfb.CONV_NOISE_DIM, seed=1, distribution="uniform")
    g_tf, d_tf = tfb.build_conv_generator(), tfb.build_conv_discriminator()
    g_pt = bridge.keras_to_torch(g_tf, ptb.build_conv_generator())
    d_pt = bridge.keras_to_torch(d_tf, ptb.build_conv_discriminator())
    # inference mode (batch norm on moving statistics), then training mode (batch statistics)
    fake = tfg.generate(g_tf, noise)
    assert fake.shape == (16, 784) and 0.0 <= fake.min() and fake.max() <= 1.0
    assert np.abs(fake - ptg.generate(g_pt, noise)).max() <= TOL
    trained = g_tf(noise, training=True).numpy()
    assert (
        np.abs(_nchw(trained.transpose(0, 3, 1, 2)) - g_pt(torch.from_numpy(noise)).detach().numpy()).max()
        <= TOL
    )
    x = np.concatenate([images[:8], fake[:8]])
    d_of_x = tfg.discriminate(d_tf, _nhwc(x), from_logits=False)
    assert 0.0 < d_of_x.min() and d_of_x.max() < 1.0
    assert np.abs(d_of_x - ptg.discriminate(d_pt, _nchw(x), from_logits=False)).max() <= TOL
    # and back: fresh PyTorch weights into fresh Keras models
    g_pt2, d_pt2 = ptb.build_conv_generator(), ptb.build_conv_discriminator()
    g_tf2 = bridge.torch_to_keras(g_pt2, tfb.build_conv_generator())
    d_tf2 = bridge.torch_to_keras(d_pt2, tfb.build_conv_discriminator())
    assert np.abs(tfg.generate(g_tf2, noise) - ptg.generate(g_pt2, noise)).max() <= TOL
    d_back = tfg.discriminate(d_tf2, _nhwc(x), from_logits=False)
    assert np.abs(d_back - ptg.discriminate(d_pt2, _nchw(x), from_logits=False)).max() <= TOL


def test_probability_discriminator_weight_transfer_parity_both_ways(images: np.ndarray) -> None:
    d_tf = tfb.build_probability_discriminator()
    d_pt = bridge.keras_to_torch(d_tf, ptb.build_probability_discriminator())
    probabilities = tfg.discriminate(d_tf, images, from_logits=False)
    assert np.abs(probabilities - ptg.discriminate(d_pt, images, from_logits=False)).max() <= TOL
    # the same weights as a logit discriminator: its sigmoid is the probability discriminator's output
    logits_d = ptg.build_discriminator()
    logits_d.load_state_dict(d_pt[0].state_dict())
    assert np.abs(ptg.discriminate(logits_d, images) - probabilities).max() <= TOL
    d_pt2 = ptb.build_probability_discriminator()
    d_tf2 = bridge.torch_to_keras(d_pt2, tfb.build_probability_discriminator())
    back = tfg.discriminate(d_tf2, images, from_logits=False)
    assert np.abs(back - ptg.discriminate(d_pt2, images, from_logits=False)).max() <= TOL


# ----------------------------------------------------------------- BCE on probabilities


def test_probability_losses_match_across_frameworks_and_the_logit_form() -> None:
    rng = np.random.default_rng(0)
    logits = [rng.normal(m, 2.0, (64, 1)).astype(np.float32) for m in (1.0, -1.0)]
    probs = [1.0 / (1.0 + np.exp(-v)) for v in logits]
    d_tf = float(tfg.discriminator_loss(*map(tf.constant, probs), from_logits=False))
    d_pt = float(ptg.discriminator_loss(*map(torch.from_numpy, probs), from_logits=False))
    d_logits = float(ptg.discriminator_loss(*map(torch.from_numpy, logits)))
    assert abs(d_tf - d_pt) <= TOL and abs(d_pt - d_logits) <= TOL
    for variant in tfg.VARIANTS:
        g_tf = float(tfg.generator_loss(tf.constant(probs[1]), variant, from_logits=False))
        g_pt = float(ptg.generator_loss(torch.from_numpy(probs[1]), variant, from_logits=False))
        g_logits = float(tfg.generator_loss(tf.constant(logits[1]), variant))
        assert abs(g_tf - g_pt) <= TOL and abs(g_tf - g_logits) <= TOL, variant
    # where the forms part: a probability of exactly 0 (Keras clips to 1e-7, PyTorch clamps log at -100)
    zero = np.zeros((1, 1), np.float32)
    assert float(tfg.generator_loss(tf.constant(zero), from_logits=False)) == pytest.approx(
        -np.log(1e-7), rel=1e-3
    )
    assert float(ptg.generator_loss(torch.from_numpy(zero), from_logits=False)) == pytest.approx(100.0)


def test_generator_feedback_where_the_probability_form_loses_the_gradient() -> None:
    logits = np.array([-100.0, -30.0, -20.0, -3.0, 0.0], np.float32)
    for side in (tfb, ptb):
        loss, grad = side.generator_feedback(logits)
        np.testing.assert_allclose(loss[:3], -logits[:3], rtol=1e-5)  # softplus(-logit): finite and exact
        np.testing.assert_allclose(grad[:3], -1.0, atol=1e-6)
    logit_grad = tfb.generator_feedback(logits)[1]
    np.testing.assert_allclose(logit_grad, ptb.generator_feedback(logits)[1], atol=1e-6)
    # Keras finds the logit behind its own sigmoid activation: the logit form, even when saturated
    np.testing.assert_allclose(tfb.generator_feedback(logits, "sigmoid")[1], logit_grad, atol=1e-6)
    # a probability without that link is clipped at 1e-7: the loss stops at 16.1, no gradient below -16.1
    keras_loss, keras_grad = tfb.generator_feedback(logits, "probability")
    np.testing.assert_allclose(keras_loss[:3], -np.log(1e-7), rtol=1e-3)
    assert np.all(keras_grad[:3] == 0.0)
    # PyTorch: sigmoid(-100) is 0 in float32, so BCELoss's log clamp gives 100 and no gradient; at -30
    # its backward divides by max(p (1 - p), 1e-12), which shrinks the gradient; at -20 it is whole
    torch_loss, torch_grad = ptb.generator_feedback(logits, "sigmoid")
    assert torch_loss[0] == pytest.approx(100.0) and torch_grad[0] == 0.0
    assert -0.2 < torch_grad[1] < -0.05 and torch_grad[2] == pytest.approx(-1.0, abs=1e-5)
    np.testing.assert_array_equal(ptb.generator_feedback(logits, "probability")[1], torch_grad)
    # in the ordinary range all forms agree
    for grad in (keras_grad, torch_grad):
        np.testing.assert_allclose(grad[3:], logit_grad[3:], atol=1e-5)


def test_keras_compiled_loss_finds_the_logit_behind_a_sigmoid_layer(images: np.ndarray) -> None:
    """What the chapter says about the Keras twin: with D's output pushed to a logit of -40 (far past
    Keras' 1e-7 clip), the compiled binary cross-entropy for label 1 is 40, the logit form, not 16.1."""
    d = tfb.build_probability_discriminator()
    bias = d.layers[0].get_layer("logit").bias
    bias.assign(bias - 40.0 - float(tf.reduce_max(d.layers[0](images[:8]))))
    logits = d.layers[0](images[:8]).numpy().ravel()
    assert logits.max() <= -40.0
    d.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.BinaryCrossentropy())
    loss = float(d.train_on_batch(images[:8], np.ones((8, 1), np.float32)))
    assert loss == pytest.approx(float(np.mean(-logits)), rel=1e-4)
    plain = float(keras.losses.BinaryCrossentropy()(np.ones((8, 1)), d(images[:8]).numpy()))
    assert plain == pytest.approx(-np.log(1e-7), rel=1e-3), "a plain probability is clipped"


# ----------------------------------------------------------------- the posts' round, both ways


def test_keras_round_trains_d_in_its_calls_and_freezes_it_in_the_combined_call(images: np.ndarray) -> None:
    n = 8
    real, ones = _nhwc(images[:n]), np.ones((n, 1), np.float32)
    noise = sample_latent(n, tfb.CONV_NOISE_DIM, seed=0, distribution="uniform")
    g, d = tfb.build_conv_generator(), tfb.build_conv_discriminator()
    combined = tfg.keras_combined_model(g, d, tfb.CONV_LEARNING_RATE, tfb.CONV_BETA_1, from_logits=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        g0, d0 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
        losses = tfb.conv_gan_round(g, d, combined, real, noise, noise)
        assert np.isfinite(list(losses.values())).all() and set(losses) == {"d_loss", "g_loss"}
        assert _moved(d0, tfg.weight_snapshot(d)) and _moved(g0, tfg.weight_snapshot(g))
        # D's own call (trainable toggled on) moves D only
        d.trainable = True
        g1, d1 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
        d.train_on_batch(real, ones)
        assert _moved(d1, tfg.weight_snapshot(d)) and not _moved(g1, tfg.weight_snapshot(g))
        # the combined call (trainable toggled off) moves G only
        d.trainable = False
        g2, d2 = tfg.weight_snapshot(g), tfg.weight_snapshot(d)
        combined.train_on_batch(noise, ones)
        assert _moved(g2, tfg.weight_snapshot(g)) and not _moved(d2, tfg.weight_snapshot(d))
    # two D updates and one G update per round, counted by the optimisers
    assert int(d.optimizer.iterations) == 3 and int(combined.optimizer.iterations) == 2


def test_pytorch_round_updates_d_twice_then_g_with_d_untouched(images: np.ndarray) -> None:
    n = 8
    g, d = ptb.build_conv_generator(), ptb.build_conv_discriminator()
    g_opt, d_opt = ptg.make_optimizers(g, d, tfb.CONV_LEARNING_RATE, None, tfb.CONV_BETA_1)
    seen = []  # (G, D) weights right after each D update
    d_opt.register_step_post_hook(lambda *_: seen.append((ptg.weight_snapshot(g), ptg.weight_snapshot(d))))
    g0, d0 = ptg.weight_snapshot(g), ptg.weight_snapshot(d)
    noise = sample_latent(n, ptb.CONV_NOISE_DIM, seed=0, distribution="uniform")
    losses = ptb.conv_gan_round(g, d, (g_opt, d_opt), _nchw(images[:n]), noise, noise)
    assert np.isfinite([float(v) for v in losses.values()]).all() and set(losses) == {"d_loss", "g_loss"}
    assert len(seen) == 2, "one D update on real images, one on fakes"
    assert not _moved(g0, seen[1][0]), "D's updates (and the fakes made in eval mode) changed G"
    assert _moved(d0, seen[0][1]) and _moved(seen[0][1], seen[1][1])
    assert not _moved(seen[1][1], ptg.weight_snapshot(d)), "G's update changed D"
    assert _moved(seen[1][0], ptg.weight_snapshot(g))
    assert g.training and d.training, "the round must leave both networks in training mode"


def test_one_round_gives_the_same_losses_and_weights_in_both_frameworks(images: np.ndarray) -> None:
    """Same weights, batch and noise, no dropout: one round gives the same losses and the same new
    networks. Plain SGD on both sides (compiled by hand as :func:`gan.keras_combined_model` does), so the
    check covers the round itself; Adam differs slightly by design (where each adds its epsilon)."""
    n = 16
    g_tf, d_tf = tfb.build_conv_generator(), tfb.build_conv_discriminator(dropout=0.0)
    g_pt = bridge.keras_to_torch(g_tf, ptb.build_conv_generator())
    d_pt = bridge.keras_to_torch(d_tf, ptb.build_conv_discriminator(dropout=0.0))
    d_tf.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.BinaryCrossentropy())
    d_tf.trainable = False
    noise_in = keras.Input(shape=(tfb.CONV_NOISE_DIM,))
    combined = keras.Model(noise_in, d_tf(g_tf(noise_in)))
    combined.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.BinaryCrossentropy())
    optimizers = torch.optim.SGD(g_pt.parameters(), lr=0.05), torch.optim.SGD(d_pt.parameters(), lr=0.05)
    d_noise = sample_latent(n, tfb.CONV_NOISE_DIM, seed=1, distribution="uniform")
    g_noise = sample_latent(n, tfb.CONV_NOISE_DIM, seed=2, distribution="uniform")
    real = images[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m_tf = tfb.conv_gan_round(g_tf, d_tf, combined, _nhwc(real), d_noise, g_noise)
    m_pt = ptb.conv_gan_round(g_pt, d_pt, optimizers, _nchw(real), d_noise, g_noise)
    for name in ("d_loss", "g_loss"):
        assert abs(float(m_tf[name]) - float(m_pt[name])) <= TOL, name
    d_after = tfg.discriminate(d_tf, _nhwc(real), from_logits=False)
    assert np.abs(d_after - ptg.discriminate(d_pt, _nchw(real), from_logits=False)).max() <= TOL
    # G in training mode (batch statistics): its moving averages differ by design (PyTorch keeps the
    # unbiased batch variance), its weights must not
    g_after = g_tf(g_noise, training=True).numpy().transpose(0, 3, 1, 2)
    # After one Adam step the two sides differ by float32 rounding amplified by the update (seen: 1.2e-4).
    assert np.abs(g_after - g_pt(torch.from_numpy(g_noise)).detach().numpy()).max() <= 5 * TOL
    assert tasks.max_abs_change(g_tf.get_weights()[:1], [g_pt.project.weight.detach().numpy().T]) <= TOL


# ----------------------------------------------------------------- training through the loop


@pytest.mark.parametrize("side", [tfb, ptb], ids=["tensorflow", "torch"])
def test_quick_conv_training_moves_both_networks_and_teaches_d(side, images: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run = side.train_conv_gan(
            images, epochs=2, steps_per_epoch=2, batch_size=16, log_every=0, device="cpu"
        )
    h = run.history
    assert h["steps"] == [2, 2] and all(c > 0 for c in h["d_change"] + h["g_change"])
    assert np.isfinite(h["d_loss"] + h["g_loss"]).all()
    assert h["d_real"][-1] > h["d_fake"][-1], "after four rounds D should score real digits above fakes"
    assert run.samples[2].shape == (16, 784) and run.samples[2].min() >= 0.0 and run.samples[2].max() <= 1.0


def test_probability_gans_train_like_the_logit_gan_from_the_same_weights(images: np.ndarray) -> None:
    """Keras trains its twin exactly as the logit GAN (it finds the logit behind the sigmoid layer);
    PyTorch's BCELoss computes the same losses while the logits are moderate, up to rounding."""
    g_tf, d_tf = tfg.build_generator(), tfg.build_discriminator()
    start_g, start_d = g_tf.get_weights(), d_tf.get_weights()
    settings = dict(epochs=1, batch_size=16, learning_rate=1e-4, log_every=0, device="cpu")
    g_pt = bridge.keras_to_torch(g_tf, ptg.build_generator())
    d_pt = bridge.keras_to_torch(d_tf, ptb.build_probability_discriminator())
    logit_run = tfg.train_gan(images, generator=g_tf, discriminator=d_tf, **settings)
    g2, d2 = tfg.build_generator(), tfb.build_probability_discriminator()
    g2.set_weights(start_g)
    d2.set_weights(start_d)
    keras_twin = tfb.train_probability_gan(images, generator=g2, discriminator=d2, **settings)
    torch_run = ptb.train_probability_gan(images, generator=g_pt, discriminator=d_pt, **settings)
    assert isinstance(torch_run.discriminator[-1], torch.nn.Sigmoid)
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert abs(logit_run.history[name][0] - keras_twin.history[name][0]) <= 1e-6, name
        assert abs(logit_run.history[name][0] - torch_run.history[name][0]) <= 1e-3, name
    assert _moved(start_d, d2.get_weights())


def test_uniform_noise_and_steps_per_epoch_reach_the_plan() -> None:
    x = np.zeros((100, 784), np.float32)
    plan = tasks.gan_plan(x, 10, 32, steps_per_epoch=3, noise_distribution="uniform")
    assert plan.steps == 3
    noise = plan.inputs(np.arange(10), np.random.default_rng(0))["d_noise"]
    assert noise.min() >= -1.0 and noise.max() <= 1.0 and noise.std() > 0.4
    config = tasks.GanConfig(epochs=1, noise_distribution="uniform", steps_per_epoch=3).config
    assert config["noise_distribution"] == "uniform" and config["steps_per_epoch"] == 3
    assert "noise_distribution" not in tasks.GanConfig(epochs=1).config


# ----------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors(images: np.ndarray) -> None:
    for side in (tfb, ptb):
        with pytest.raises(InputError, match="dropout"):
            side.build_conv_discriminator(dropout=1.5)
        with pytest.raises(InputError, match="noise_dim"):
            side.build_conv_generator(noise_dim=0)
        with pytest.raises(InputError, match=r"must lie in \[0.0, 1.0\]"):
            side.train_conv_gan(images * 255, epochs=1, log_every=0)
        with pytest.raises(InputError, match="batch_size"):
            side.train_conv_gan(images, epochs=1, batch_size=1000, log_every=0)
        with pytest.raises(InputError, match="steps_per_epoch"):
            side.train_conv_gan(images, epochs=1, steps_per_epoch=0, log_every=0)
        with pytest.raises(InputError, match="finite"):
            side.generator_feedback(np.array([np.nan]))
        with pytest.raises(InputError, match="form must be one of"):
            side.generator_feedback(np.zeros(2), "softmax")
        with pytest.raises(InputError, match=r"use gan\.train_gan"):
            side.train_probability_gan(images, epochs=1, from_logits=True)
    with pytest.raises(InputError, match="needs a discriminator that outputs probabilities"):
        ptg.train_gan(images, epochs=1, from_logits=False)
    with pytest.raises(InputError, match="noise_distribution"):
        tasks.GanConfig(epochs=1, noise_distribution="cauchy")
    with pytest.raises(InputError, match="from_logits must be True or False"):
        tasks.GanConfig(epochs=1, from_logits="no")  # type: ignore[arg-type]
