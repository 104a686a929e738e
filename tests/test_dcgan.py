"""Chapter 5: the DCGAN on both sides -- weight transfer, train step, checkpoints, resume, guard."""

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import keras  # noqa: E402
import torch  # noqa: E402

from companion import bridge  # noqa: E402
from companion.tensorflow import dcgan as tf_dcgan  # noqa: E402
from companion.torch import dcgan as pt_dcgan  # noqa: E402

TOL = 1e-4


def _random_batch_norm_keras(model: keras.Model, rng: np.random.Generator) -> None:
    """Non-trivial BN statistics, so that eval mode really depends on them."""
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


def test_same_layers_and_parameter_counts():
    kg, tg = tf_dcgan.make_generator(), pt_dcgan.make_generator()
    kd, td = tf_dcgan.make_discriminator(), pt_dcgan.make_discriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert sum(w.numpy().size for w in kg.trainable_weights) == count(tg) == 2_305_472
    assert sum(w.numpy().size for w in kd.trainable_weights) == count(td) == 212_865
    k_names = [layer.name for layer in kg.layers if layer.weights]
    assert k_names == [n for n, m in tg.named_children() if list(m.parameters())]
    assert kg.output_shape == (None, 28, 28, 1)
    assert tuple(tg(torch.zeros(2, 100)).shape) == (2, 1, 28, 28)


def test_hyperparameters_match():
    assert tf_dcgan.LEAKY_SLOPE == pt_dcgan.LEAKY_SLOPE == 0.3
    assert tf_dcgan.BN_EPSILON == pt_dcgan.BN_EPSILON == 1e-3
    assert tf_dcgan.BN_MOMENTUM == pytest.approx(1.0 - pt_dcgan.BN_MOMENTUM)
    assert tf_dcgan.DROPOUT == pt_dcgan.DROPOUT and tf_dcgan.ADAM_EPSILON == pt_dcgan.ADAM_EPSILON
    bn = tf_dcgan.make_generator().get_layer("bn1")
    assert bn.epsilon == 1e-3 and bn.momentum == 0.99


def test_keras_to_torch_gives_same_images_and_logits():
    rng = np.random.default_rng(0)
    kg, kd = tf_dcgan.make_generator(), tf_dcgan.make_discriminator()
    _random_batch_norm_keras(kg, rng)
    tg, td = bridge.keras_to_torch(kg, pt_dcgan.make_generator()), pt_dcgan.make_discriminator()
    bridge.keras_to_torch(kd, td)
    tg.eval()
    td.eval()
    z = rng.standard_normal((6, 100)).astype(np.float32)
    images_k = kg(z, training=False).numpy()[..., 0]
    images_t = tg(torch.from_numpy(z)).detach().numpy()[:, 0]
    assert np.abs(images_k - images_t).max() <= TOL
    x = rng.uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    logits_k = kd(x, training=False).numpy()
    logits_t = td(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    assert np.abs(logits_k - logits_t).max() <= TOL
    assert np.abs(logits_k).max() > 1e-3  # not a trivial all-zero comparison


def test_torch_to_keras_gives_same_images_and_logits():
    rng = np.random.default_rng(1)
    tg, td = pt_dcgan.make_generator(), pt_dcgan.make_discriminator()
    _random_batch_norm_torch(tg)
    kg, kd = bridge.torch_to_keras(tg, tf_dcgan.make_generator()), tf_dcgan.make_discriminator()
    bridge.torch_to_keras(td, kd)
    tg.eval()
    td.eval()
    z = rng.standard_normal((6, 100)).astype(np.float32)
    assert (
        np.abs(kg(z, training=False).numpy()[..., 0] - tg(torch.from_numpy(z)).detach().numpy()[:, 0]).max()
        <= TOL
    )
    x = rng.uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    diff = kd(x, training=False).numpy() - td(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    assert np.abs(diff).max() <= TOL


def test_symmetric_padding_would_not_match():
    """Guards the asymmetric 'same' padding: PyTorch's padding=2 shifts every window by a pixel."""
    rng = np.random.default_rng(2)
    conv = keras.layers.Conv2D(3, 5, strides=2, padding="same")
    x = rng.standard_normal((2, 28, 28, 1)).astype(np.float32)
    want = conv(x).numpy()
    ours = pt_dcgan.SameConv(1, 3)
    naive = torch.nn.Conv2d(1, 3, 5, stride=2, padding=2)
    for m in (ours, naive):
        bridge.keras_to_torch(keras.Sequential([keras.Input((28, 28, 1)), conv]), torch.nn.Sequential(m))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    assert np.abs(ours(xt).detach().permute(0, 2, 3, 1).numpy() - want).max() <= TOL
    assert np.abs(naive(xt).detach().permute(0, 2, 3, 1).numpy() - want).max() > 0.1


def test_one_train_step_matches_and_changes_losses():
    """Same weights, batch and noise (dropout off): the same losses, then both move, no NaN."""
    k = tf_dcgan.DCGAN(dropout=0.0, jit_compile=False, seed=0)
    t = pt_dcgan.DCGAN(dropout=0.0, seed=0)
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (16, 28, 28)).astype(np.float32)
    z = rng.standard_normal((16, 100)).astype(np.float32)
    first_k = {n: float(v) for n, v in k.train_step(x[..., None], z).items()}
    first_t = {n: float(v) for n, v in t.train_step(t.images_to_tensor(x), torch.from_numpy(z)).items()}
    second_k = {n: float(v) for n, v in k.train_step(x[..., None], z).items()}
    second_t = {n: float(v) for n, v in t.train_step(t.images_to_tensor(x), torch.from_numpy(z)).items()}
    for name in tf_dcgan.METRICS:
        assert abs(first_k[name] - first_t[name]) <= TOL, name
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert abs(second_k[name] - second_t[name]) <= 5e-3, name
        assert np.isfinite([first_k[name], second_k[name], first_t[name], second_t[name]]).all()
    for first, second in ((first_k, second_k), (first_t, second_t)):
        # Both networks moved: D's verdict on the same fakes and both losses changed.
        assert abs(second["d_fake"] - first["d_fake"]) > 1e-3
        assert abs(second["g_loss"] - first["g_loss"]) > 1e-3
        assert abs(second["d_loss"] - first["d_loss"]) > 1e-3


@pytest.fixture(scope="module")
def digits():
    """64 blurry blobs in [0, 1]: enough to exercise the loop without loading MNIST."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, (64, 2, 1, 1))
    return np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 30.0).astype(np.float32)


@pytest.fixture(scope="module")
def tf_gan():
    """One Keras DCGAN for every TensorFlow loop test: tracing and compiling the step is the slow
    part, and ``train`` restores a folder's checkpoint into whatever ``gan`` it is given."""
    return tf_dcgan.DCGAN(seed=5)


SMALL = {"batch_size": 8, "steps_per_epoch": 1, "checkpoint_every": 1, "log_every": 0, "seed": 5, "probes": 4}


def _run(module, digits, tf_gan, out_dir, epochs, **changes):
    """``train`` with the small settings; the TensorFlow side reuses the shared DCGAN."""
    extra = {"gan": tf_gan} if module is tf_dcgan else {}
    return module.train(digits, epochs=epochs, out_dir=out_dir, **{**SMALL, **changes}, **extra)


FRAMEWORKS = pytest.mark.parametrize("module", [pt_dcgan, tf_dcgan], ids=["torch", "tensorflow"])


@FRAMEWORKS
def test_resume_restores_everything(module, digits, tf_gan, tmp_path, capsys):
    """Two resumes of one checkpoint, from different in-memory states, give identical epochs:
    weights, optimiser moments, dropout random state and data order all come from the folder."""
    _run(module, digits, tf_gan, tmp_path / "a", epochs=1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    gan, first = _run(module, digits, tf_gan, tmp_path / "a", epochs=2)
    assert "from epoch 1" in capsys.readouterr().out
    _, second = _run(module, digits, tf_gan, tmp_path / "b", epochs=2)
    assert len(first["g_loss"]) == 2 and module.saved_epoch(tmp_path / "a") == 2
    for name in module.METRICS:
        np.testing.assert_allclose(first[name], second[name], atol=1e-5, err_msg=name)
    assert np.load(tmp_path / "a" / "frames.npy").shape == (2, module.N_FIXED, 28, 28)
    probes = module.probe_samples(tmp_path / "a")
    assert sorted(probes) == [1, 2] and probes[2].shape == (4, 28, 28)
    assert (tmp_path / "a" / "training.gif").stat().st_size > 1000
    z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    expected = gan.generate(z)
    np.testing.assert_allclose(module.load(tmp_path / "b").generate(z), expected, atol=1e-5)
    # Asking for no more epochs than saved trains nothing and keeps the history.
    _, again = _run(module, digits, tf_gan, tmp_path / "a", epochs=1)
    assert len(again["g_loss"]) == 2


def test_torch_resume_equals_an_unbroken_run(digits, tmp_path):
    _, whole = pt_dcgan.train(digits, epochs=2, **SMALL)  # no folder: nothing saved
    pt_dcgan.train(digits, epochs=1, out_dir=tmp_path / "broken", **SMALL)
    _, resumed = pt_dcgan.train(digits, epochs=2, out_dir=tmp_path / "broken", **SMALL)
    for name in pt_dcgan.METRICS:
        np.testing.assert_allclose(resumed[name], whole[name], atol=1e-6, err_msg=name)


def _break_torch_save(monkeypatch):
    def half_written(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the write

    monkeypatch.setattr(pt_dcgan.torch, "save", half_written)


def _break_tf_save(monkeypatch):
    def half_written(self, checkpoint_number=None, **kwargs):
        # What a killed save leaves: TensorFlow's staging folder and stray files of the new number.
        prefix = f"{self.directory}/ckpt-{checkpoint_number}"
        os.makedirs(prefix + "_temp")
        for suffix in (".index", ".data-00000-of-00001"):
            with open(prefix + suffix, "wb") as handle:
                handle.write(b"\x00garbage")
        raise KeyboardInterrupt

    monkeypatch.setattr(tf_dcgan.tf.train.CheckpointManager, "save", half_written)


@FRAMEWORKS
def test_interrupted_checkpoint_write_keeps_previous_checkpoint(
    module, digits, tf_gan, tmp_path, monkeypatch
):
    _run(module, digits, tf_gan, tmp_path, epochs=1)
    with monkeypatch.context() as patch:
        (_break_tf_save if module is tf_dcgan else _break_torch_save)(patch)
        with pytest.raises(KeyboardInterrupt):
            _run(module, digits, tf_gan, tmp_path, epochs=2)
    assert module.saved_epoch(tmp_path) == 1
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    assert np.isfinite(module.load(tmp_path).generate(np.zeros((2, 100), np.float32))).all()
    _, history = _run(module, digits, tf_gan, tmp_path, epochs=2)
    assert len(history["g_loss"]) == 2 and module.saved_epoch(tmp_path) == 2
    assert not list(tmp_path.glob("**/*_temp"))  # the resumed run cleared the stale staging folder


@FRAMEWORKS
def test_divergence_guard_stops_before_saving(module, digits, tf_gan, tmp_path, monkeypatch):
    ok = {"g_loss": [0.9], "d_loss": [1.2], "d_real": [0.6], "d_fake": [0.4]}
    assert module.check_divergence(ok) is None
    assert "finite" in module.check_divergence({**ok, "g_loss": [float("nan")]})
    won = {"g_loss": [9.0] * 3, "d_loss": [0.001] * 3, "d_real": [0.999] * 3, "d_fake": [1e-4] * 3}
    assert "discriminator has won" in module.check_divergence(won)
    assert module.check_divergence({**won, "d_fake": [1e-4, 0.2, 1e-4]}) is None

    gan, _ = _run(module, digits, tf_gan, tmp_path, epochs=1)
    nan = float("nan")
    monkeypatch.setattr(gan, "train_step", lambda images, noise: dict.fromkeys(module.METRICS, nan))
    with pytest.raises(module.TrainingDiverged, match="last checkpoint: epoch 1"):
        module.train(digits, epochs=3, out_dir=tmp_path, gan=gan, **SMALL)
    assert module.saved_epoch(tmp_path) == 1


@FRAMEWORKS
def test_bad_checkpoints_raise_checkpoint_error(module, digits, tf_gan, tmp_path):
    with pytest.raises(module.CheckpointError, match="run.json is missing"):
        module.load(tmp_path)
    other = pt_dcgan if module is tf_dcgan else tf_dcgan
    _run(other, digits, tf_gan, tmp_path / "other", epochs=1)
    with pytest.raises(module.CheckpointError, match="load it with that framework"):
        module.load(tmp_path / "other")
    with pytest.raises(other.CheckpointError, match="was trained with batch_size=8"):
        _run(other, digits, tf_gan, tmp_path / "other", epochs=2, batch_size=4)


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="batch_size"):
        pt_dcgan.train(np.zeros((8, 28, 28), np.float32), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="must lie in"):
        pt_dcgan.train(np.full((32, 28, 28), 255.0, np.float32), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="epochs"):
        tf_dcgan.train(np.zeros((32, 28, 28), np.float32), epochs=0)
