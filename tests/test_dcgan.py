"""The DCGAN chapter: the DCGAN on both sides -- weight transfer, starting weights, train step, the one loop's
history, run folders (resume, settings checks, overwrite, interrupted writes) and the guards."""

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # noqa: F401  # first: Keras on TensorFlow

# isort: split
import keras
import torch

from companion import bridge
from companion.tensorflow import dcgan as tf_dcgan
from companion.torch import dcgan as pt_dcgan
from companion.torch.init import glorot_limit
from companion.training.guards import TrainingFailed, discriminator_won, finite_losses
from companion.training.loop import seconds_per_step
from companion.training.run_folder import RunFolderError, SettingsMismatch, latest_epoch
from companion.validation import InputError

TOL = 1e-4
HISTORY_KEYS = {"g_loss", "d_loss", "d_real", "d_fake", "seconds", "train_seconds", "steps"}


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


def _weights(gan) -> list[np.ndarray]:
    """Every weight and batch-norm statistic of both networks, as arrays."""
    if isinstance(gan, tf_dcgan.DCGAN):
        return [w for model in (gan.generator, gan.discriminator) for w in model.get_weights()]
    return [
        v.detach().cpu().numpy() for m in (gan.generator, gan.discriminator) for v in m.state_dict().values()
    ]


# ---------------------------------------------------------------------- the networks


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
    assert tuple(td(torch.zeros(2, 1, 28, 28)).shape) == (2, 1)


def test_hyperparameters_match():
    assert tf_dcgan.LEAKY_SLOPE == pt_dcgan.LEAKY_SLOPE == 0.3
    assert tf_dcgan.BN_EPSILON == pt_dcgan.BN_EPSILON == 1e-3
    assert tf_dcgan.BN_MOMENTUM == pytest.approx(1.0 - pt_dcgan.BN_MOMENTUM)
    assert tf_dcgan.DROPOUT == pt_dcgan.DROPOUT and tf_dcgan.ADAM_EPSILON == pt_dcgan.ADAM_EPSILON
    bn = tf_dcgan.make_generator().get_layer("bn1")
    assert bn.epsilon == 1e-3 and bn.momentum == 0.99


def test_torch_starts_from_keras_initialisation():
    """Glorot-uniform kernels with Keras' bound, zero biases -- not PyTorch's Kaiming defaults."""
    tg, td = pt_dcgan.make_generator(seed=0), pt_dcgan.make_discriminator(seed=0)
    kg, kd = tf_dcgan.make_generator(seed=0), tf_dcgan.make_discriminator(seed=0)
    checked = 0
    for torch_model, keras_model in ((tg, kg), (td, kd)):
        for name, m in torch_model.named_children():
            if not isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                continue
            limit = glorot_limit(m.weight)
            w = m.weight.detach().numpy()
            assert np.abs(w).max() <= limit, name
            assert np.abs(w).max() > 0.95 * limit, name  # uniform over the whole range
            assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.05), name
            if m.bias is not None:
                assert not m.bias.detach().numpy().any(), name
            kernel = keras_model.get_layer(name).kernel.numpy()
            assert kernel.size == w.size
            assert np.abs(kernel).max() == pytest.approx(np.abs(w).max(), rel=0.05), name  # the same bound
            checked += 1
    assert checked == 7  # project, deconv1-3; conv1, conv2, logit
    # Seeded: the same seed gives the same weights, another seed others.
    again, other = pt_dcgan.make_generator(seed=0), pt_dcgan.make_generator(seed=1)
    assert torch.equal(again.project.weight, tg.project.weight)
    assert not torch.equal(other.project.weight, tg.project.weight)


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
    assert images_k.std() > 1e-2  # not a trivial comparison
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
    logits_k = kd(x, training=False).numpy()
    diff = logits_k - td(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    assert np.abs(diff).max() <= TOL
    assert np.abs(logits_k).max() > 1e-3


def test_generate_and_discriminate_agree_across_frameworks():
    """The public helpers take and give (N, 28, 28) in [0, 1] on both sides."""
    k = tf_dcgan.DCGAN(seed=0)
    t = pt_dcgan.DCGAN(seed=0, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    z = np.random.default_rng(5).standard_normal((5, 100)).astype(np.float32)
    images = k.generate(z)
    assert images.shape == (5, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_allclose(t.generate(z), images, atol=TOL)
    np.testing.assert_allclose(t.discriminate(images), k.discriminate(images), atol=TOL)
    assert k.discriminate(images).shape == (5,)


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


def _twins():
    """A Keras and a PyTorch DCGAN without dropout, with the same weights and fresh optimisers."""
    k = tf_dcgan.DCGAN(dropout=0.0, seed=0)
    t = pt_dcgan.DCGAN(dropout=0.0, seed=0, device="cpu")
    bridge.keras_to_torch(k.generator, t.generator)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    return k, t


def test_one_train_step_matches_and_changes_losses():
    """Same weights, batch and noise (dropout off): the same losses, then both move, no NaN."""
    k, t = _twins()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (16, 28, 28)).astype(np.float32)
    z = rng.standard_normal((16, 100)).astype(np.float32)
    xt, zt = torch.from_numpy(x[:, None]), torch.from_numpy(z)
    first_k = {n: float(v) for n, v in k.train_step(x[..., None], z).items()}
    first_t = {n: float(v) for n, v in t.train_step(xt, zt).items()}
    second_k = {n: float(v) for n, v in k.train_step(x[..., None], z).items()}
    second_t = {n: float(v) for n, v in t.train_step(xt, zt).items()}
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


# ---------------------------------------------------------------------- the one loop


@pytest.fixture(scope="module")
def digits():
    """64 blurry blobs in [0, 1]: enough to exercise the loop without loading MNIST."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, (64, 2, 1, 1))
    return np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 30.0).astype(np.float32)


def test_the_loop_feeds_both_frameworks_the_same_batches_and_noise(digits):
    """One step through ``train`` from the same weights: the same losses, so the same images and noise."""
    k, t = _twins()
    t2 = pt_dcgan.DCGAN(dropout=0.0, seed=0, device="cpu")
    bridge.keras_to_torch(k.generator, t2.generator)
    bridge.keras_to_torch(k.discriminator, t2.discriminator)
    settings = {"epochs": 1, "batch_size": 8, "steps_per_epoch": 1, "log_every": 0, "probes": 0, "seed": 11}
    _, from_k = tf_dcgan.train(digits, gan=k, **settings)
    _, from_t = pt_dcgan.train(digits, gan=t, **settings)
    for name in tf_dcgan.METRICS:
        assert abs(from_k[name][0] - from_t[name][0]) <= TOL, name
    # Another seed picks other images and noise: the losses move (so the check above is not vacuous).
    _, other = pt_dcgan.train(digits, gan=t2, **{**settings, "seed": 12})
    assert abs(other["d_loss"][0] - from_t["d_loss"][0]) > 10 * TOL


@pytest.fixture(scope="module")
def tf_gan():
    """One Keras DCGAN for the TensorFlow loop tests that need no particular start: ``train``
    restores a folder's checkpoint into whatever ``gan`` it is given."""
    return tf_dcgan.DCGAN(seed=5)


SMALL = {"batch_size": 8, "steps_per_epoch": 1, "checkpoint_every": 1, "log_every": 0, "seed": 5, "probes": 4}


def _run(module, digits, tf_gan, out_dir, epochs, **changes):
    """``train`` with the small settings; the TensorFlow side reuses the shared DCGAN."""
    extra = {"gan": tf_gan} if module is tf_dcgan else {}
    return module.train(digits, epochs=epochs, out_dir=out_dir, **{**SMALL, **changes}, **extra)


FRAMEWORKS = pytest.mark.parametrize("module", [pt_dcgan, tf_dcgan], ids=["torch", "tensorflow"])


@FRAMEWORKS
def test_history_has_losses_and_timings(module, digits, tf_gan):
    _, history = _run(module, digits, tf_gan, None, epochs=2, steps_per_epoch=3, probes=0)
    assert set(history) == HISTORY_KEYS
    assert all(len(values) == 2 for values in history.values())
    assert history["steps"] == [3, 3]
    for name in module.METRICS:
        assert np.isfinite(history[name]).all(), name
    assert all(0 < d < 1 for d in history["d_real"] + history["d_fake"])
    assert all(0 < t <= s for t, s in zip(history["train_seconds"], history["seconds"], strict=True))
    per_step = seconds_per_step(history)
    assert per_step == pytest.approx(history["train_seconds"][1] / 3)  # the first epoch (tracing) left out
    if module is pt_dcgan:  # (the loop is shared; one framework suffices)
        # Uncapped, an epoch is 64 // 8 = 8 steps; 60 images give 7 (the last short batch is dropped).
        _, full = _run(module, digits, tf_gan, None, epochs=1, steps_per_epoch=None, probes=0)
        assert full["steps"] == [8]
        _, short = _run(module, digits[:60], tf_gan, None, epochs=1, steps_per_epoch=None, probes=0)
        assert short["steps"] == [7]


@FRAMEWORKS
def test_resume_restores_everything(module, digits, tf_gan, tmp_path, capsys):
    """Two resumes of one checkpoint, from different in-memory states, give identical epochs:
    weights, optimiser moments, dropout random state and data order all come from the folder."""
    a, b = tmp_path / "a", tmp_path / "b"
    _run(module, digits, tf_gan, a, epochs=1)
    assert sorted(p.name for p in a.iterdir()) == [
        "checkpoint.json",
        "epoch_0001",
        "fixed_noise.npy",
        "frames.npy",
        "history.json",
        "probes",
        "run.json",
        "training.gif",
    ]  # and no .lock once training is over
    run = json.loads((a / "run.json").read_text())
    assert run["model"] == "dcgan" and run["framework"] == module.__name__.split(".")[1]
    assert run["batch_size"] == 8 and run["seed"] == 5 and run["n_train"] == 64
    shutil.copytree(a, b)
    log_every = {"log_every": 1}
    gan, first = _run(module, digits, tf_gan, a, epochs=2, **log_every)
    assert f"resuming {a} after epoch 1" in capsys.readouterr().out
    _, second = _run(module, digits, tf_gan, b, epochs=2)
    assert len(first["g_loss"]) == 2 and module.saved_epoch(a) == 2 == latest_epoch(a)
    assert json.loads((a / "checkpoint.json").read_text())["epoch"] == 2
    assert (a / "epoch_0001").is_dir() and (a / "epoch_0002").is_dir()  # the one before is kept
    for name in module.METRICS:
        np.testing.assert_allclose(first[name], second[name], atol=1e-5, err_msg=name)
        assert first[name][0] == second[name][0]  # epoch 1 is read back, not recomputed
    assert json.loads((a / "history.json").read_text())["g_loss"] == first["g_loss"]
    assert np.load(a / "frames.npy").shape == (2, module.N_FIXED, 28, 28)
    probes = module.probe_samples(a)
    assert sorted(probes) == [1, 2] and probes[2].shape == (4, 28, 28)
    assert 0.0 <= probes[2].min() and probes[2].max() <= 1.0
    assert (a / "training.gif").stat().st_size > 1000
    z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    np.testing.assert_allclose(module.load(b).generate(z), gan.generate(z), atol=1e-5)
    # Asking for no more epochs than saved trains nothing and keeps the history.
    _, again = _run(module, digits, tf_gan, a, epochs=1, **log_every)
    assert "already trained for 2 epochs" in capsys.readouterr().out
    assert again["g_loss"] == first["g_loss"] and module.saved_epoch(a) == 2


@FRAMEWORKS
def test_resume_equals_an_unbroken_run(module, digits, tmp_path):
    """Epoch 1, stop, resume for epoch 2 == two epochs in one go: same losses, same final weights."""
    settings = {**SMALL, "steps_per_epoch": 2}
    whole_gan, whole = module.train(digits, epochs=2, **settings)  # no folder: nothing saved
    module.train(digits, epochs=1, out_dir=tmp_path, **settings)
    # The resumed call starts from other weights and random state (another seed): all must come from the folder.
    other = module.DCGAN(seed=99)
    gan, resumed = module.train(digits, epochs=2, out_dir=tmp_path, gan=other, **settings)
    for name in module.METRICS:
        np.testing.assert_allclose(resumed[name], whole[name], atol=1e-6, err_msg=name)
    assert gan is other
    for got, want in zip(_weights(gan), _weights(whole_gan), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


@FRAMEWORKS
def test_interrupted_checkpoint_write_keeps_previous_checkpoint(
    module, digits, tf_gan, tmp_path, monkeypatch
):
    _run(module, digits, tf_gan, tmp_path, epochs=1)
    with monkeypatch.context() as patch:
        if module is pt_dcgan:

            def half_written(obj, path, *args, **kwargs):
                with open(path, "wb") as handle:
                    handle.write(b"PK\x03\x04 half a zip file")
                raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the write

            patch.setattr(torch, "save", half_written)
        else:

            def half_written(self, prefix, *args, **kwargs):
                with open(f"{prefix}.index", "wb") as handle:
                    handle.write(b"\x00garbage")
                raise KeyboardInterrupt

            patch.setattr(tf_dcgan.tf.train.Checkpoint, "write", half_written)
        with pytest.raises(KeyboardInterrupt):
            _run(module, digits, tf_gan, tmp_path, epochs=2)
    assert module.saved_epoch(tmp_path) == 1
    assert not (tmp_path / "epoch_0002").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp, no lock
    assert json.loads((tmp_path / "history.json").read_text()).keys() >= {"g_loss"}
    assert np.isfinite(module.load(tmp_path).generate(np.zeros((2, 100), np.float32))).all()
    # What a killed writer would leave (no Python clean-up ran): a half checkpoint folder.
    stale = tmp_path / ".epoch_0002.tmpkilled"
    stale.mkdir()
    (stale / "state.pt").write_bytes(b"\x00")
    _, history = _run(module, digits, tf_gan, tmp_path, epochs=2)
    assert len(history["g_loss"]) == 2 and module.saved_epoch(tmp_path) == 2
    assert not stale.exists()  # the resumed run cleared it


# ---------------------------------------------------------------------- run folder settings


def test_other_settings_are_refused_and_nothing_is_deleted(digits, tmp_path):
    pt_dcgan.train(digits, epochs=1, out_dir=tmp_path, **SMALL)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SettingsMismatch, match="was trained with batch_size= 8, not 4") as caught:
        pt_dcgan.train(digits, epochs=2, out_dir=tmp_path, **{**SMALL, "batch_size": 4})
    assert (caught.value.key, caught.value.saved, caught.value.given) == ("batch_size", 8, 4)
    assert isinstance(caught.value, RunFolderError)
    with pytest.raises(SettingsMismatch, match=r"lr= 0\.0002, not 0\.001"):
        pt_dcgan.train(digits, epochs=2, out_dir=tmp_path, lr=1e-3, **SMALL)
    with pytest.raises(SettingsMismatch, match="n_train= 64, not 32"):
        pt_dcgan.train(digits[:32], epochs=2, out_dir=tmp_path, **SMALL)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and pt_dcgan.saved_epoch(tmp_path) == 1
    # overwrite=True starts again with the new settings.
    _, history = pt_dcgan.train(
        digits, epochs=1, out_dir=tmp_path, overwrite=True, **{**SMALL, "batch_size": 4}
    )
    assert len(history["g_loss"]) == 1
    assert json.loads((tmp_path / "run.json").read_text())["batch_size"] == 4
    with pytest.raises(InputError, match="overwrite=True needs out_dir"):
        pt_dcgan.train(digits, epochs=1, overwrite=True, **SMALL)


def test_other_frameworks_folder_is_refused(digits, tf_gan, tmp_path):
    with pytest.raises(RunFolderError, match=r"run\.json is missing"):
        pt_dcgan.load(tmp_path)
    pt_dcgan.train(digits, epochs=1, out_dir=tmp_path / "torch", **SMALL)
    with pytest.raises(RunFolderError, match="holds a torch run"):
        tf_dcgan.train(digits, epochs=2, out_dir=tmp_path / "torch", gan=tf_gan, **SMALL)
    with pytest.raises(RunFolderError, match="holds a torch run; load it with that framework"):
        tf_dcgan.load(tmp_path / "torch")
    assert pt_dcgan.saved_epoch(tmp_path / "torch") == 1


def test_folders_that_hold_something_else_are_refused(digits, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="holds files but no run"):
        pt_dcgan.train(digits, epochs=1, out_dir=tmp_path, **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "run.json").exists()
    with pytest.raises(RunFolderError, match="is a file"):
        pt_dcgan.train(digits, epochs=1, out_dir=tmp_path / "notes.txt", **SMALL)
    with pytest.raises(RunFolderError, match="empty name"):
        pt_dcgan.train(digits, epochs=1, out_dir="", **SMALL)


def test_a_folder_in_use_is_refused_and_a_stale_lock_is_cleared(digits, tmp_path):
    busy, stale = tmp_path / "busy", tmp_path / "stale"
    pt_dcgan.train(digits, epochs=1, out_dir=busy, **SMALL)

    lock = {"pid": 1, "host": socket.gethostname(), "started": "now"}
    (busy / ".lock").write_text(json.dumps(lock))  # pid 1 is always alive
    with pytest.raises(RunFolderError, match="in use by process 1"):
        pt_dcgan.train(digits, epochs=2, out_dir=busy, **SMALL)
    assert (busy / ".lock").exists() and pt_dcgan.saved_epoch(busy) == 1
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pt_dcgan.train(digits, epochs=1, out_dir=stale, **SMALL)
    (stale / ".lock").write_text(json.dumps({**lock, "pid": int(gone.stdout)}))
    _, history = pt_dcgan.train(digits, epochs=2, out_dir=stale, **SMALL)
    assert len(history["g_loss"]) == 2 and not (stale / ".lock").exists()


def test_probe_samples_ignore_files_beyond_the_checkpoint(digits, tmp_path):
    pt_dcgan.train(digits, epochs=1, out_dir=tmp_path, **SMALL)
    np.save(tmp_path / "probes" / "epoch_0009.npy", np.zeros((4, 28, 28), np.uint8))  # an interrupted run's
    assert sorted(pt_dcgan.probe_samples(tmp_path)) == [1]
    pt_dcgan.train(digits, epochs=2, out_dir=tmp_path, **{**SMALL, "probes": 4})
    assert sorted(pt_dcgan.probe_samples(tmp_path)) == [1, 2]
    assert pt_dcgan.probe_samples(tmp_path / "nowhere") == {}


@FRAMEWORKS
def test_damaged_checkpoint_is_reported(module, digits, tf_gan, tmp_path):
    _run(module, digits, tf_gan, tmp_path, epochs=1)
    for path in (tmp_path / "epoch_0001").iterdir():
        if path.name.startswith("state"):
            path.write_bytes(b"\x00 not a checkpoint")
    with pytest.raises(RunFolderError, match="damaged"):
        module.load(tmp_path)


# ---------------------------------------------------------------------- the generator's options (section 6's ablations)

VARIANTS = pytest.mark.parametrize(
    "batch_norm, output", [(False, "tanh"), (True, "sigmoid")], ids=["no-batch-norm", "sigmoid"]
)


def _random_biases_keras(model: keras.Model, rng: np.random.Generator) -> None:
    """Non-zero biases, so that copying them is really checked (fresh biases are all zero)."""
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None and not isinstance(
            layer, keras.layers.BatchNormalization
        ):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))


def _random_biases_torch(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.normal_(0, 0.1)


@VARIANTS
def test_generator_variants_have_the_same_layers_on_both_sides(batch_norm, output):
    kg = tf_dcgan.make_generator(batch_norm=batch_norm, output=output)
    tg = pt_dcgan.make_generator(batch_norm=batch_norm, output=output)
    k_names = [layer.name for layer in kg.layers if layer.weights]
    assert k_names == [n for n, m in tg.named_children() if list(m.parameters())]
    has_bn = any(isinstance(layer, keras.layers.BatchNormalization) for layer in kg.layers)
    assert has_bn == batch_norm == any(isinstance(m, torch.nn.BatchNorm2d) for m in tg.modules())
    # Without batch norm the dense layer and the first two ConvTs get their biases back; the last has none.
    assert (tg.project.bias is not None) == (not batch_norm) == (tg.deconv2.bias is not None)
    assert tg.deconv3.bias is None and not kg.get_layer("deconv3").use_bias
    count = sum(p.numel() for p in tg.parameters())
    assert count == sum(w.numpy().size for w in kg.trainable_weights)
    assert count == (2_305_472 if batch_norm else 2_305_472 - 2 * (12_544 + 128 + 64) + 12_544 + 128 + 64)


@VARIANTS
@pytest.mark.parametrize("direction", ["keras-to-torch", "torch-to-keras"])
def test_generator_variants_transfer_both_ways(batch_norm, output, direction):
    rng = np.random.default_rng(7)
    kg = tf_dcgan.make_generator(batch_norm=batch_norm, output=output)
    tg = pt_dcgan.make_generator(batch_norm=batch_norm, output=output)
    if direction == "keras-to-torch":
        _random_batch_norm_keras(kg, rng)
        _random_biases_keras(kg, rng)
        bridge.keras_to_torch(kg, tg)
    else:
        _random_batch_norm_torch(tg)
        _random_biases_torch(tg)
        bridge.torch_to_keras(tg, kg)
    tg.eval()
    z = rng.standard_normal((6, 100)).astype(np.float32)
    images_k = kg(z, training=False).numpy()[..., 0]
    images_t = tg(torch.from_numpy(z)).detach().numpy()[:, 0]
    assert np.abs(images_k - images_t).max() <= TOL
    assert images_k.std() > 1e-3  # not a trivial comparison


@FRAMEWORKS
def test_a_sigmoid_generator_draws_in_the_unit_range(module):
    """Raw outputs in [0, 1], and ``generate``/``discriminate`` then pass images through unchanged."""
    rng = np.random.default_rng(8)
    z = rng.standard_normal((64, 100)).astype(np.float32)
    raws = {}
    for output in ("sigmoid", "tanh"):
        gan = module.DCGAN(output=output, seed=0)
        last = (
            gan.generator.get_layer("deconv3").kernel if module is tf_dcgan else gan.generator.deconv3.weight
        )
        if module is tf_dcgan:
            last.assign(last * 100.0)  # large pre-activations: outputs reach the ends of the range
            raw = gan.generator(z, training=False).numpy()[..., 0]
        else:
            with torch.no_grad():
                last.mul_(100.0)
                gan.generator.eval()
                raw = gan.generator(torch.from_numpy(z)).numpy()[:, 0]
        raws[output] = raw
        images = gan.generate(z)
        assert 0.0 <= images.min() and images.max() <= 1.0
        np.testing.assert_allclose(images, raw if output == "sigmoid" else (raw + 1.0) / 2.0, atol=1e-6)
        if output == "sigmoid":  # D sees the images as they are, with no rescaling
            x = images[:8, ..., None] if module is tf_dcgan else images[:8, None]
            if module is tf_dcgan:
                want = gan.discriminator(x, training=False).numpy()[:, 0]
            else:
                gan.discriminator.eval()
                with torch.no_grad():
                    want = gan.discriminator(torch.from_numpy(x)).numpy()[:, 0]
            np.testing.assert_allclose(gan.discriminate(images[:8]), want, atol=1e-5)
    assert 0.0 <= raws["sigmoid"].min() < 0.02 and 0.98 < raws["sigmoid"].max() <= 1.0
    assert raws["tanh"].min() < -0.9  # the same weights with tanh leave [0, 1]: the check above can fail


@FRAMEWORKS
@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
def test_the_training_data_follows_the_output_activation(module, output, digits, monkeypatch):
    """The loop hands the step [0, 1] images for a sigmoid generator and [-1, 1] for a tanh one."""
    gan = module.DCGAN(output=output, seed=0)
    uploaded = {}
    make = gan.trainer

    def trainer():
        inner = make()
        upload = inner.upload

        def spying(arrays):
            uploaded.update(arrays)
            upload(arrays)

        inner.upload = spying
        return inner

    monkeypatch.setattr(gan, "trainer", trainer)
    module.train(digits, epochs=1, gan=gan, output=output, **{**SMALL, "probes": 0})
    real = np.asarray(uploaded["real"]).reshape(digits.shape)
    np.testing.assert_array_equal(real, digits if output == "sigmoid" else digits * 2.0 - 1.0)
    assert (real.min() >= 0.0) == (output == "sigmoid")


@FRAMEWORKS
def test_generator_options_are_stored_checked_and_rebuilt(module, digits, tmp_path):
    folder, default = tmp_path / "ablation", tmp_path / "default"
    options = {"batch_norm": False, "output": "sigmoid"}
    gan, _ = module.train(digits, epochs=1, out_dir=folder, **options, **SMALL)
    run = json.loads((folder / "run.json").read_text())
    assert run["batch_norm"] is False and run["output"] == "sigmoid"
    loaded = module.load(folder)
    assert (loaded.batch_norm, loaded.output) == (False, "sigmoid")
    z = np.random.default_rng(9).standard_normal((4, 100)).astype(np.float32)
    np.testing.assert_allclose(loaded.generate(z), gan.generate(z), atol=1e-5)
    with pytest.raises(SettingsMismatch, match="trained with output= 'sigmoid', not 'tanh'"):
        module.train(digits, epochs=2, out_dir=folder, batch_norm=False, **SMALL)
    with pytest.raises(SettingsMismatch, match="trained with batch_norm= False, not True"):
        module.train(digits, epochs=2, out_dir=folder, output="sigmoid", **SMALL)
    assert module.saved_epoch(folder) == 1
    # The chapter's generator is the default: run.json leaves both out, as before the options existed.
    module.train(digits, epochs=1, out_dir=default, **SMALL)
    assert not {"batch_norm", "output"} & set(json.loads((default / "run.json").read_text()))
    with pytest.raises(SettingsMismatch, match="trained with batch_norm= True, not False"):
        module.train(digits, epochs=2, out_dir=default, batch_norm=False, **SMALL)
    assert module.load(default).output == "tanh" and module.saved_epoch(default) == 1


def test_bad_generator_options_are_reported(digits):
    with pytest.raises(InputError, match=r"output must be one of \('tanh', 'sigmoid'\).*got 'relu'"):
        pt_dcgan.make_generator(output="relu")
    with pytest.raises(InputError, match=r"output must be one of .*got 'relu'"):
        tf_dcgan.make_generator(output="relu")
    with pytest.raises(InputError, match="batch_norm must be True or False, got 'no'"):
        tf_dcgan.make_generator(batch_norm="no")
    with pytest.raises(InputError, match="batch_norm must be True or False, got 'no'"):
        pt_dcgan.DCGAN(batch_norm="no")
    with pytest.raises(InputError, match="output must be one of"):
        pt_dcgan.train(digits, epochs=1, output="relu", **SMALL)
    with pytest.raises(InputError, match="batch_norm must be True or False"):
        tf_dcgan.train(digits, epochs=1, batch_norm=0, **SMALL)
    # A given gan= must match the settings, which pick the data range and go into run.json.
    with pytest.raises(
        InputError, match="gan= was built with output='tanh' but the settings say output='sigmoid'"
    ):
        pt_dcgan.train(digits, epochs=1, gan=pt_dcgan.DCGAN(seed=0), output="sigmoid", **SMALL)


# ---------------------------------------------------------------------- guards


def test_guards_read_the_history():
    ok = {"g_loss": [0.9], "d_loss": [1.2], "d_real": [0.6], "d_fake": [0.4], "seconds": [1.0]}
    assert finite_losses(ok) is None
    assert "g_loss=nan" in finite_losses({**ok, "g_loss": [0.5, float("nan")]})
    assert "d_loss=inf" in finite_losses({**ok, "d_loss": [float("inf")]})
    assert finite_losses({**ok, "g_loss": [float("nan"), 0.5]}) is None  # only the last epoch counts
    assert finite_losses({**ok, "seconds": [float("nan")]}) is None  # timings are not metrics
    won = {"g_loss": [9.0] * 3, "d_loss": [0.001] * 3, "d_real": [0.999] * 3, "d_fake": [1e-4] * 3}
    guard = discriminator_won()
    assert guard(ok) is None
    assert "discriminator has won" in guard(won)
    assert guard({**won, "d_fake": [1e-4, 0.2, 1e-4]}) is None
    assert guard({**won, "d_fake": [1e-4] * 2}) is None  # not yet patience epochs
    assert discriminator_won(patience=2)({**won, "d_fake": [0.3, 1e-4, 1e-4]}) is not None
    assert discriminator_won(threshold=1e-5)(won) is None


def _failing_trainer(monkeypatch, gan, after: int, values: dict):
    """Make ``gan``'s trainer return ``values`` from its step number ``after`` on."""
    make = gan.trainer
    calls = []

    def trainer():
        inner = make()
        step = inner.step

        def patched(index, inputs):
            calls.append(1)
            out = step(index, inputs)
            return out if len(calls) <= after else dict(values)

        inner.step = patched
        return inner

    monkeypatch.setattr(gan, "trainer", trainer)


@FRAMEWORKS
def test_nan_stops_training_and_keeps_the_last_checkpoint(module, digits, tmp_path, monkeypatch):
    gan = module.DCGAN(seed=5)
    _failing_trainer(monkeypatch, gan, after=1, values=dict.fromkeys(module.METRICS, float("nan")))
    with pytest.raises(TrainingFailed, match=r"at epoch 2: .*g_loss=nan.*\(last checkpoint: epoch 1\)"):
        module.train(digits, epochs=3, out_dir=tmp_path, gan=gan, **SMALL)
    assert issubclass(module.TrainingFailed, RuntimeError) and module.TrainingFailed is TrainingFailed
    assert module.saved_epoch(tmp_path) == 1 and not (tmp_path / "epoch_0002").exists()
    assert len(json.loads((tmp_path / "history.json").read_text())["g_loss"]) == 1
    assert not (tmp_path / ".lock").exists()
    assert np.isfinite(module.load(tmp_path).generate(np.zeros((2, 100), np.float32))).all()


def test_a_winning_discriminator_stops_training(digits, tmp_path, monkeypatch):
    won = {"g_loss": 9.0, "d_loss": 1e-3, "d_real": 0.999, "d_fake": 1e-5}
    gan = pt_dcgan.DCGAN(seed=5)
    _failing_trainer(monkeypatch, gan, after=0, values=won)
    with pytest.raises(
        TrainingFailed, match=r"at epoch 3: the discriminator has won.*last checkpoint: epoch 2"
    ):
        pt_dcgan.train(digits, epochs=5, out_dir=tmp_path, gan=gan, **SMALL)
    assert pt_dcgan.saved_epoch(tmp_path) == 2
    with pytest.raises(TrainingFailed, match=r"last checkpoint: none"):
        pt_dcgan.train(digits, epochs=5, gan=gan, **SMALL)


# ---------------------------------------------------------------------- bad input


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="batch_size"):
        pt_dcgan.train(np.zeros((8, 28, 28), np.float32), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="must lie in"):
        pt_dcgan.train(np.full((32, 28, 28), 255.0, np.float32), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="28x28"):
        pt_dcgan.train(np.zeros((32, 784), np.float32), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="epochs"):
        tf_dcgan.train(np.zeros((32, 28, 28), np.float32), epochs=0)
    with pytest.raises(ValueError, match="beta1"):
        tf_dcgan.train(np.zeros((32, 28, 28), np.float32), epochs=1, beta1=1.0)
    with pytest.raises(TypeError, match=r"unexpected settings \['batchsize'\]"):
        pt_dcgan.train(np.zeros((32, 28, 28), np.float32), epochs=1, batchsize=16)
    with pytest.raises(TypeError, match="needs epochs"):
        pt_dcgan.train(np.zeros((32, 28, 28), np.float32))
