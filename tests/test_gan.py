"""The MLP GAN of "Training GANs on MNIST": loss parity, freezing, weight-transfer parity, quick training through the one loop,
resume, run-folder settings checks and the NaN guard."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import companion.tensorflow  # noqa: F401  (first: pins Keras to TensorFlow, silences its start-up log)

# isort: split
import keras
import tensorflow as tf
import torch

from companion import bridge, load_mnist, sample_latent
from companion.tensorflow import gan as tfg
from companion.tensorflow import training as tf_train
from companion.torch import gan as ptg
from companion.torch import training as pt_train
from companion.training import loop, tasks
from companion.training.guards import TrainingFailed
from companion.training.run_folder import RunFolderError, SettingsMismatch, latest_epoch
from companion.validation import InputError

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


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
    return [bool(np.any(a != b)) for a, b in zip(before, after, strict=True)]


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
            "Keras changed when it reads `trainable`: update the chapter Training GANs on MNIST"
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

METRICS = {"d_loss", "g_loss", "d_real", "d_fake"}
SIDES = {"tensorflow": tfg, "torch": ptg}


def _copies(side: str, generator, discriminator):
    """Fresh G and D of ``side`` holding the weights of ``generator`` and ``discriminator`` (same side)."""
    gan = SIDES[side]
    g, d = gan.build_generator(), gan.build_discriminator()
    for target, source in ((g, generator), (d, discriminator)):
        if side == "torch":
            target.load_state_dict(source.state_dict())
        else:
            target.set_weights(source.get_weights())
    return g, d


@pytest.mark.parametrize("side", SIDES)
def test_quick_training_runs_without_nan(side: str, images: np.ndarray) -> None:
    gan = SIDES[side]
    run = gan.train_gan(images, epochs=2, seed=0, log_every=0, device="cpu")
    assert isinstance(run, gan.GanRun)
    assert set(run.history) == METRICS | {"seconds", "train_seconds", "steps"}
    values = np.array([run.history[name] for name in sorted(METRICS)])
    assert values.shape == (4, 2) and np.isfinite(values).all()
    assert run.history["steps"] == [2, 2]  # 200 images, batches of 100
    assert run.seconds == pytest.approx(sum(run.history["seconds"]))
    assert sorted(run.samples) == [0, 1, 2]
    final = run.samples[2]
    assert final.shape == (16, 784) and final.min() >= 0.0 and final.max() <= 1.0
    assert np.abs(final - run.samples[0]).max() > 0.0, "training did not change the generator"


def test_both_frameworks_draw_the_same_batches_and_noise(images: np.ndarray, monkeypatch) -> None:
    """Both sides get the batches of ``epoch_rng(seed, e, 0)`` and two noise draws per step from
    ``epoch_rng(seed, e, 1)`` (one stream per epoch, not one for the whole run)."""
    seen: dict[str, list] = {"tensorflow": [], "torch": []}
    for side, train in (("tensorflow", tf_train), ("torch", pt_train)):
        real = train.Trainer.step

        def step(trainer, index, inputs, side=side, real=real):
            seen[side].append((np.array(index), {k: np.array(v) for k, v in inputs.items()}))
            return real(trainer, index, inputs)

        monkeypatch.setattr(train.Trainer, "step", step)
    for gan in (tfg, ptg):
        gan.train_gan(images[:150], epochs=2, batch_size=50, seed=4, log_every=0, device="cpu")
    assert len(seen["tensorflow"]) == len(seen["torch"]) == 2 * 3
    for (i_tf, in_tf), (i_pt, in_pt) in zip(seen["tensorflow"], seen["torch"], strict=True):
        np.testing.assert_array_equal(i_tf, i_pt)
        assert set(in_tf) == set(in_pt) == {"d_noise", "g_noise"}
        for name in in_tf:
            np.testing.assert_array_equal(in_tf[name], in_pt[name])
    calls = iter(seen["torch"])
    for epoch in (1, 2):
        order, rng = loop.epoch_rng(4, epoch, 0).permutation(150), loop.epoch_rng(4, epoch, 1)
        for start in (0, 50, 100):
            index, inputs = next(calls)
            np.testing.assert_array_equal(index, order[start : start + 50])
            np.testing.assert_array_equal(inputs["d_noise"], sample_latent(50, 128, seed=rng))
            np.testing.assert_array_equal(inputs["g_noise"], sample_latent(50, 128, seed=rng))


def test_same_weights_give_the_same_losses_in_both_frameworks(images: np.ndarray) -> None:
    """Copied weights, the same batches and noise: the two loops report the same per-epoch means
    (Adam differs slightly by design, so the tolerance allows for a little drift)."""
    g_tf, d_tf, g_pt, d_pt = _pair()
    settings = {"epochs": 2, "seed": 2, "log_every": 0, "device": "cpu"}
    run_tf = tfg.train_gan(images, generator=g_tf, discriminator=d_tf, **settings)
    run_pt = ptg.train_gan(images, generator=g_pt, discriminator=d_pt, **settings)
    for name in METRICS:
        np.testing.assert_allclose(
            run_tf.history[name], run_pt.history[name], rtol=2e-3, atol=2e-4, err_msg=name
        )
    np.testing.assert_allclose(run_tf.samples[0], run_pt.samples[0], atol=TOL)
    np.testing.assert_allclose(run_tf.samples[2], run_pt.samples[2], atol=2e-3)


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, images: np.ndarray, tmp_path: Path, capsys) -> None:
    gan = SIDES[side]
    start_g, start_d = gan.build_generator(), gan.build_discriminator()
    settings = {"seed": 5, "sample_every": 1, "log_every": 1, "device": "cpu"}
    g, d = _copies(side, start_g, start_d)
    unbroken = gan.train_gan(images, epochs=3, generator=g, discriminator=d, **settings)
    g, d = _copies(side, start_g, start_d)
    gan.train_gan(images, epochs=1, generator=g, discriminator=d, out_dir=tmp_path, **settings)
    assert latest_epoch(tmp_path) == 1 and not (tmp_path / ".lock").exists()
    capsys.readouterr()
    resumed = gan.train_gan(images, epochs=3, out_dir=tmp_path, **settings)  # fresh networks
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path} after epoch 1" in printed and "epoch 1/3" not in printed
    for name in METRICS:
        assert len(resumed.history[name]) == 3, name
        np.testing.assert_allclose(
            resumed.history[name], unbroken.history[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert sorted(resumed.samples) == [0, 1, 2, 3]  # the grids of the first call came back too
    for epoch in range(4):
        np.testing.assert_allclose(resumed.samples[epoch], unbroken.samples[epoch], atol=1e-5)
    # load_gan rebuilds both networks from the folder, with the saved history and grids
    loaded = gan.load_gan(tmp_path, device="cpu")
    noise = sample_latent(8, 128, seed=9)
    np.testing.assert_allclose(
        gan.generate(loaded.generator, noise), gan.generate(unbroken.generator, noise), atol=1e-5
    )
    real = images[:20]
    np.testing.assert_allclose(
        gan.discriminate(loaded.discriminator, real),
        gan.discriminate(unbroken.discriminator, real),
        atol=1e-5,
    )
    assert loaded.history["d_loss"] == resumed.history["d_loss"] and sorted(loaded.samples) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def tf_gan_folder(images: np.ndarray, tmp_path_factory) -> Path:
    """A TensorFlow MLP GAN trained 2 epochs into a folder with the default settings."""
    folder = tmp_path_factory.mktemp("gan")
    tfg.train_gan(images, epochs=2, out_dir=folder, log_every=0, device="cpu")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("side", "change", "error", "message"),
    [
        ("tensorflow", {"learning_rate": 1e-3}, SettingsMismatch, "learning_rate= 0.0002"),
        ("tensorflow", {"d_learning_rate": 1e-4}, SettingsMismatch, "d_learning_rate= None"),
        ("tensorflow", {"variant": "saturating"}, SettingsMismatch, "variant= 'non_saturating'"),
        ("tensorflow", {"noise_dim": 64}, SettingsMismatch, "noise_dim= 128"),
        ("tensorflow", {"batch_size": 50}, SettingsMismatch, "batch_size= 100"),
        ("torch", {}, RunFolderError, "holds a tensorflow run"),
    ],
)
def test_other_settings_are_refused_and_nothing_is_deleted(
    side: str, change: dict, error, message: str, images: np.ndarray, tf_gan_folder: Path
) -> None:
    before = _files(tf_gan_folder)
    with pytest.raises(error, match=message):
        SIDES[side].train_gan(images, epochs=4, out_dir=tf_gan_folder, log_every=0, device="cpu", **change)
    assert _files(tf_gan_folder) == before
    with pytest.raises(RunFolderError, match="not a torch MLP GAN"):
        ptg.load_gan(tf_gan_folder)


def test_a_shorter_run_keeps_the_checkpoint_and_overwrite_restarts(
    images: np.ndarray, tmp_path: Path
) -> None:
    ptg.train_gan(images, epochs=3, out_dir=tmp_path, log_every=0, device="cpu")
    before = _files(tmp_path)
    again = ptg.train_gan(images, epochs=1, out_dir=tmp_path, log_every=0, device="cpu")
    assert _files(tmp_path) == before and latest_epoch(tmp_path) == 3
    assert len(again.history["d_loss"]) == 3 and sorted(again.samples) == [0, 1, 2, 3]
    fresh = ptg.train_gan(images, epochs=1, out_dir=tmp_path, learning_rate=1e-3, overwrite=True, log_every=0)
    assert len(fresh.history["d_loss"]) == 1 and latest_epoch(tmp_path) == 1
    assert not (tmp_path / "epoch_0003").exists()
    assert json.loads((tmp_path / "run.json").read_text())["learning_rate"] == 1e-3


def test_keras_idiom_loop_runs(images: np.ndarray) -> None:
    toggled = tfg.train_gan_keras_idiom(images, epochs=1, toggle=True, log_every=0)
    assert toggled.history["d_change"][0] > 0 and toggled.history["g_change"][0] > 0
    assert np.isfinite([toggled.history[name][0] for name in METRICS | {"d_change", "g_change"}]).all()
    assert toggled.samples[1].shape == (16, 784)


@pytest.mark.parametrize("side", SIDES)
def test_a_nan_loss_stops_training_with_a_clear_error(side: str, images: np.ndarray, tmp_path: Path) -> None:
    gan = SIDES[side]
    assert gan.TrainingFailed is TrainingFailed
    discriminator = gan.build_discriminator()
    if side == "tensorflow":
        kernel = discriminator.get_layer("logit").kernel
        kernel.assign(tf.fill(kernel.shape, float("nan")))
    else:
        with torch.no_grad():
            discriminator.logit.weight.fill_(float("nan"))
    with pytest.raises(
        TrainingFailed, match=r"training failed at epoch 1: d_loss=nan.*last checkpoint: none"
    ):
        gan.train_gan(
            images, epochs=3, discriminator=discriminator, out_dir=tmp_path, log_every=0, device="cpu"
        )
    assert latest_epoch(tmp_path) == 0 and not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("side", SIDES)
def test_bad_inputs_are_refused(side: str, images: np.ndarray) -> None:
    gan = SIDES[side]
    with pytest.raises(InputError, match="0-255"):
        gan.train_gan(images * 255.0, epochs=1)
    with pytest.raises(InputError, match="expected"):
        gan.train_gan(images[:, :100], epochs=1)
    with pytest.raises(InputError, match="batch_size"):
        gan.train_gan(images[:50], epochs=1)
    with pytest.raises(InputError, match="variant"):
        gan.train_gan(images, epochs=1, variant="minimax")
    with pytest.raises(InputError, match="fixed_noise"):
        gan.train_gan(images, epochs=1, fixed_noise=np.zeros((4, 7), np.float32), log_every=0)
    with pytest.raises(InputError, match="needs out_dir"):
        gan.train_gan(images, epochs=1, overwrite=True, log_every=0)
    with pytest.raises(TypeError, match="unexpected settings"):
        gan.train_gan(images, epochs=1, checkpoint_dir="old")
    with pytest.raises(TypeError, match="needs epochs"):
        gan.train_gan(images)


# ----------------------------------------------------------------- the blog posts' recipe: ReLU, N(0, 0.01^2), beta_1


def test_relu_variant_weight_transfer_parity() -> None:
    """ReLU models hold the same weights and give the same outputs in both frameworks, and differ from
    the LeakyReLU models with those weights (so the option is not ignored)."""
    g_tf = tfg.build_generator(activation="relu")
    d_tf = tfg.build_discriminator(activation="relu")
    g_pt = bridge.keras_to_torch(g_tf, ptg.build_generator(activation="relu"))
    d_pt = bridge.keras_to_torch(d_tf, ptg.build_discriminator(activation="relu"))
    noise = sample_latent(32, tfg.NOISE_DIM, seed=5)
    fake = tfg.generate(g_tf, noise)
    assert np.abs(fake - ptg.generate(g_pt, noise)).max() <= TOL
    assert np.abs(tfg.discriminate(d_tf, fake) - ptg.discriminate(d_pt, fake)).max() <= TOL
    g_leaky = bridge.keras_to_torch(g_tf, ptg.build_generator())
    d_leaky = bridge.keras_to_torch(d_tf, ptg.build_discriminator())
    assert np.abs(fake - ptg.generate(g_leaky, noise)).max() > 1e-3
    assert np.abs(tfg.discriminate(d_tf, fake) - ptg.discriminate(d_leaky, fake)).max() > 1e-4
    # one trained round with the same weights, batch and noise stays in step too (plain SGD, as above)
    real, d_noise, g_noise = fake[:16], sample_latent(16, 128, seed=6), sample_latent(16, 128, seed=7)
    tf_opts = keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05)
    pt_opts = torch.optim.SGD(g_pt.parameters(), lr=0.05), torch.optim.SGD(d_pt.parameters(), lr=0.05)
    m_tf = tfg.train_step(g_tf, d_tf, *tf_opts, real, d_noise, g_noise)
    m_pt = ptg.train_step(g_pt, d_pt, *pt_opts, *map(torch.from_numpy, (real, d_noise, g_noise)))
    for name in ("d_loss", "g_loss"):
        assert abs(float(m_tf[name]) - float(m_pt[name])) <= TOL, name
    assert np.abs(tfg.generate(g_tf, noise) - ptg.generate(g_pt, noise)).max() <= TOL


def _kernels_and_biases(side: str, model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if side == "torch":
        return (
            [m.weight.detach().numpy() for m in model.modules() if isinstance(m, torch.nn.Linear)],
            [m.bias.detach().numpy() for m in model.modules() if isinstance(m, torch.nn.Linear)],
        )
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return [np.asarray(layer.kernel) for layer in dense], [np.asarray(layer.bias) for layer in dense]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("init_std", [0.01, 0.03])
def test_init_std_draws_kernels_from_that_normal_with_zero_biases(side: str, init_std: float) -> None:
    gan = SIDES[side]
    for model in (gan.build_generator(init_std=init_std), gan.build_discriminator(init_std=init_std)):
        kernels, biases = _kernels_and_biases(side, model)
        assert len(kernels) == 2
        for kernel in kernels:  # the smallest kernel has 256 weights: its std is within ~15% of the truth
            assert abs(kernel.std() / init_std - 1) < 0.15, (kernel.shape, kernel.std())
            assert abs(kernel.mean()) < 0.3 * init_std
        assert all(np.all(b == 0) for b in biases)
    # the default start is still Glorot-uniform: std sqrt(2 / (fan_in + fan_out)), 0.044 for 784 -> 256
    kernels, _ = _kernels_and_biases(side, gan.build_discriminator())
    assert abs(kernels[0].std() / np.sqrt(2 / (784 + 256)) - 1) < 0.05


@pytest.mark.parametrize("side", SIDES)
def test_beta1_reaches_the_optimisers(side: str, images: np.ndarray) -> None:
    gan = SIDES[side]
    g_opt, d_opt = gan.make_optimizers(gan.build_generator(), gan.build_discriminator(), beta1=0.9)
    defaults = gan.make_optimizers(gan.build_generator(), gan.build_discriminator())
    if side == "torch":
        assert [o.param_groups[0]["betas"][0] for o in (g_opt, d_opt)] == [0.9, 0.9]
        assert [o.param_groups[0]["betas"][0] for o in defaults] == [0.5, 0.5]
    else:
        assert [float(o.beta_1) for o in (g_opt, d_opt)] == [0.9, 0.9]
        assert [float(o.beta_1) for o in defaults] == [0.5, 0.5]
    # through train_gan: two Adam steps from the same weights (the first Adam step does not depend on
    # beta_1); beta1=0.5 is the default, 0.9 gives other weights
    g0, d0 = gan.build_generator(), gan.build_discriminator()
    finals = {}
    for name, extra in (("default", {}), ("0.5", {"beta1": 0.5}), ("0.9", {"beta1": 0.9})):
        g, d = _copies(side, g0, d0)
        gan.train_gan(images, generator=g, discriminator=d, epochs=1, log_every=0, **extra)
        finals[name] = gan.weight_snapshot(g)
    assert gan.max_abs_change(finals["default"], finals["0.5"]) == 0.0
    assert gan.max_abs_change(finals["default"], finals["0.9"]) > 1e-6
    # run.json records beta1 only when it is not the default (older run folders stay valid)
    assert "beta1" not in tasks.GanConfig(epochs=1).config
    assert tasks.GanConfig(epochs=1, beta1=0.9).config["beta1"] == 0.9


@pytest.mark.parametrize("side", SIDES)
def test_bad_architecture_and_beta1_are_refused(side: str, images: np.ndarray) -> None:
    gan = SIDES[side]
    with pytest.raises(InputError, match=r"activation must be one of \('leaky_relu', 'relu'\), got 'tanh'"):
        gan.build_generator(activation="tanh")
    with pytest.raises(InputError, match="activation must be one of"):
        gan.build_discriminator(activation="ReLU")
    with pytest.raises(InputError, match=r"init_std must be a positive number, got -0\.01"):
        gan.build_generator(init_std=-0.01)
    with pytest.raises(InputError, match="init_std must be a positive number"):
        gan.build_discriminator(init_std=0.0)
    with pytest.raises(InputError, match=r"beta1 must be a number in \[0, 1\)"):
        gan.make_optimizers(gan.build_generator(), gan.build_discriminator(), beta1=1.0)
    with pytest.raises(InputError, match="beta1"):
        gan.train_gan(images, epochs=1, beta1=-0.1, log_every=0)
