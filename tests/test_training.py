"""The one training loop, through fit_autoencoder on both sides, and its run folders.

It learns; a resumed run equals an unbroken one; a crash while writing a checkpoint never damages
the previous one; a folder holding a run with other settings is refused and left untouched; a
lock keeps two processes out of one folder; bad input fails early with a clear message.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import companion
import companion.tensorflow  # (first: pins Keras to TensorFlow, silences its start-up log)

# isort: split
import torch

from companion.evaluation import metrics
from companion.tensorflow import autoencoders as tf_ae
from companion.tensorflow import training as tf_train
from companion.torch import autoencoders as pt_ae
from companion.torch import training as pt_train
from companion.training import atomic_files, loop, run_folder, tasks
from companion.training.guards import TrainingFailed, finite_losses
from companion.training.run_folder import RunFolder, RunFolderError, SettingsMismatch, latest_epoch
from companion.validation import InputError

SIDES = {"tensorflow": (tf_ae, tf_train), "torch": (pt_ae, pt_train)}
HISTORY_KEYS = {"train", "seconds", "train_seconds", "steps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x, _ = companion.load_mnist("train", source="subset", limit=600, verbose=False)
    return x[:512], x[512:]


def copy_model(side: str, source):
    """A second dense model with the same weights (same framework)."""
    ae, _ = SIDES[side]
    clone = ae.dense_autoencoder(source.code_size)
    if side == "torch":
        clone.load_state_dict(source.state_dict())
    else:
        clone.set_weights(source.get_weights())
    return clone


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to check that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("side", SIDES)
def test_training_lowers_the_loss(side: str, data) -> None:
    ae, _ = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(32)
    untrained = ae.evaluate_loss(model, x_val)
    history = ae.fit_autoencoder(model, x_train, x_val, epochs=4, batch_size=64, log_every=0)
    assert set(history) == HISTORY_KEYS | {"val"}
    assert all(len(v) == 4 for v in history.values())
    assert history["steps"] == [8] * 4  # 512 images in batches of 64
    assert history["train"][-1] < 0.7 * history["train"][0]
    assert history["val"][-1] < 0.7 * untrained
    assert history["val"][-1] == pytest.approx(ae.evaluate_loss(model, x_val), rel=1e-5)
    assert all(t <= s for t, s in zip(history["train_seconds"], history["seconds"], strict=True))
    assert loop.seconds_per_step(history) > 0


@pytest.mark.parametrize("side", SIDES)
def test_denoising_training_beats_the_noisy_input(side: str, data) -> None:
    ae, _ = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(64)
    ae.fit_autoencoder(
        model, x_train, epochs=6, batch_size=32, learning_rate=3e-3, noise=0.5, seed=1, log_every=0
    )
    noisy = companion.add_gaussian_noise(x_val, 0.5, seed=2)
    denoised = ae.reconstruct(model, noisy)
    assert metrics.psnr(x_val, denoised) > metrics.psnr(x_val, noisy) + 2.0


def test_noise_is_fresh_each_epoch_and_seeded() -> None:
    x = np.full((4, 784), 0.5, np.float32)
    a = tasks.corrupt(x, 0.3, loop.epoch_rng(0, 1, 1))
    assert np.array_equal(a, tasks.corrupt(x, 0.3, loop.epoch_rng(0, 1, 1)))  # same seed, same epoch
    assert not np.array_equal(a, tasks.corrupt(x, 0.3, loop.epoch_rng(0, 2, 1)))  # next epoch: new noise
    assert not np.array_equal(a, tasks.corrupt(x, 0.3, loop.epoch_rng(1, 1, 1)))  # another seed
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.dtype == np.float32
    assert tasks.corrupt(x, None, loop.epoch_rng(0, 1, 1)) is x
    halved = tasks.corrupt(x, lambda batch, rng: batch * 0.5, loop.epoch_rng(0, 1, 1))
    assert np.allclose(halved, 0.25)
    with pytest.raises(InputError, match="noise function"):
        tasks.corrupt(x, lambda batch, rng: batch[:, :10], loop.epoch_rng(0, 1, 1))


def test_epoch_streams_are_independent_and_reproducible() -> None:
    draws = {(s, e, k): loop.epoch_rng(s, e, k).random(4) for s in (0, 1) for e in (0, 1, 2) for k in (0, 1)}
    assert len({v.tobytes() for v in draws.values()}) == len(draws), "two streams gave the same numbers"
    assert np.array_equal(draws[(0, 1, 0)], loop.epoch_rng(0, 1, 0).random(4))


class Recorder:
    """Records what the loop hands to a Trainer's ``step``, then lets the real step run."""

    def __init__(self, monkeypatch, trainer_class) -> None:
        self.calls: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        real = trainer_class.step

        def step(trainer, index, inputs):
            self.calls.append((np.array(index), {k: np.array(v) for k, v in inputs.items()}))
            return real(trainer, index, inputs)

        monkeypatch.setattr(trainer_class, "step", step)


def test_both_frameworks_draw_the_seeded_batches_and_noise(data, monkeypatch) -> None:
    """Both sides take the batches of ``epoch_rng(seed, e, 0)`` and the noise of ``epoch_rng(seed, e, 1)``."""
    x = data[0][:100]
    settings = {"epochs": 2, "batch_size": 32, "noise": 0.3, "seed": 7, "log_every": 0}
    tf_seen, pt_seen = Recorder(monkeypatch, tf_train.Trainer), Recorder(monkeypatch, pt_train.Trainer)
    tf_ae.fit_autoencoder(tf_ae.dense_autoencoder(4), x, **settings)
    pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, **settings)
    assert len(tf_seen.calls) == len(pt_seen.calls) == 2 * 4  # the short last batch is kept
    for (i_tf, in_tf), (i_pt, in_pt) in zip(tf_seen.calls, pt_seen.calls, strict=True):
        np.testing.assert_array_equal(i_tf, i_pt)
        np.testing.assert_array_equal(in_tf["inputs"], in_pt["inputs"])
    expected = []
    for epoch in (1, 2):
        order, rng = loop.epoch_rng(7, epoch, 0).permutation(100), loop.epoch_rng(7, epoch, 1)
        for start in range(0, 100, 32):
            index = order[start : start + 32]
            expected.append((index, tasks.corrupt(x[index], 0.3, rng)))
    for (index, inputs), (want_index, want_inputs) in zip(tf_seen.calls, expected, strict=True):
        np.testing.assert_array_equal(index, want_index)
        np.testing.assert_array_equal(inputs["inputs"], want_inputs)


# ---------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, data, tmp_path: Path, capsys) -> None:
    ae, _ = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    settings = {"batch_size": 64, "noise": 0.2, "seed": 3, "log_every": 1}
    first = ae.dense_autoencoder(16)
    twin = copy_model(side, first)

    unbroken = ae.fit_autoencoder(twin, x_train, x_val, epochs=4, **settings)
    ae.fit_autoencoder(first, x_train, x_val, epochs=2, out_dir=tmp_path, **settings)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    assert latest_epoch(tmp_path) == 2
    assert not (tmp_path / ".lock").exists(), "the lock outlived the call"
    capsys.readouterr()

    resumed_model = ae.dense_autoencoder(16)  # fresh weights: everything must come from the checkpoint
    resumed = ae.fit_autoencoder(resumed_model, x_train, x_val, epochs=4, out_dir=tmp_path, **settings)
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path} after epoch 2" in printed
    assert "epoch 1/4" not in printed and "epoch 3/4" in printed
    assert len(resumed["train"]) == len(resumed["val"]) == 4
    # Weights, Adam's moments and the data order all carried over: the run matches an unbroken one.
    np.testing.assert_allclose(resumed["train"], unbroken["train"], rtol=1e-4)
    np.testing.assert_allclose(resumed["val"], unbroken["val"], rtol=1e-4)
    np.testing.assert_allclose(ae.reconstruct(resumed_model, x_val), ae.reconstruct(twin, x_val), atol=1e-4)
    assert json.loads((tmp_path / "checkpoint.json").read_text()) == {"epoch": 4, "folder": "epoch_0004"}
    assert json.loads((tmp_path / "history.json").read_text())["train"] == resumed["train"]
    # the latest checkpoint and the one before are kept, older ones pruned
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == ["epoch_0003", "epoch_0004"]
    # load_autoencoder rebuilds the model from run.json and the latest checkpoint
    loaded = ae.load_autoencoder(tmp_path)
    assert loaded.kind == "dense" and loaded.code_size == 16
    np.testing.assert_allclose(ae.reconstruct(loaded, x_val), ae.reconstruct(resumed_model, x_val), atol=1e-6)


@pytest.mark.parametrize("side", SIDES)
def test_checkpoint_every_k_epochs(side: str, data, tmp_path: Path, monkeypatch) -> None:
    ae, _ = SIDES[side]
    x_train, _ = data
    seen = []
    real = RunFolder.save

    def spy(self, io, epoch, history, arrays):
        seen.append(epoch)
        return real(self, io, epoch, history, arrays)

    monkeypatch.setattr(RunFolder, "save", spy)
    ae.fit_autoencoder(
        ae.dense_autoencoder(8),
        x_train[:128],
        epochs=5,
        batch_size=64,
        out_dir=tmp_path,
        checkpoint_every=2,
        log_every=0,
    )
    assert seen == [2, 4, 5]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 5
    assert len(json.loads((tmp_path / "history.json").read_text())["train"]) == 5
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == ["epoch_0004", "epoch_0005"]


@pytest.mark.parametrize("side", SIDES)
def test_interrupted_checkpoint_leaves_the_previous_one_usable(
    side: str, data, tmp_path: Path, monkeypatch
) -> None:
    ae, train = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(16)
    ae.fit_autoencoder(model, x_train, epochs=2, batch_size=64, out_dir=tmp_path, log_every=0)
    after_two = ae.reconstruct(model, x_val)
    before = snapshot(tmp_path)

    real = train.Trainer.save_state

    def power_cut(trainer, folder):
        real(trainer, folder)
        for file in Path(folder).rglob("*"):
            if file.is_file():  # half of every file written, then the machine stops
                file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        raise OSError("simulated crash while writing a checkpoint")

    monkeypatch.setattr(train.Trainer, "save_state", power_cut)
    with pytest.raises(OSError, match="simulated crash"):
        ae.fit_autoencoder(model, x_train, epochs=3, batch_size=64, out_dir=tmp_path, log_every=0)
    monkeypatch.undo()

    assert not list(tmp_path.glob(".*tmp*")), "a temporary file was left behind"
    assert not (tmp_path / ".lock").exists(), "the lock outlived the failed call"
    assert snapshot(tmp_path) == before, "the failed checkpoint changed the folder"
    assert latest_epoch(tmp_path) == 2
    restored = ae.load_autoencoder(tmp_path)
    np.testing.assert_allclose(ae.reconstruct(restored, x_val), after_two, atol=1e-6)
    # ... and training picks up from there once the disk behaves again.
    history = ae.fit_autoencoder(
        ae.dense_autoencoder(16), x_train, epochs=3, batch_size=64, out_dir=tmp_path, log_every=0
    )
    assert len(history["train"]) == 3 and latest_epoch(tmp_path) == 3


@pytest.mark.parametrize("side", SIDES)
def test_crash_before_the_pointer_moves_keeps_the_old_checkpoint(
    side: str, data, tmp_path: Path, monkeypatch
) -> None:
    ae, _ = SIDES[side]
    x_train, _ = data
    settings = {"batch_size": 64, "out_dir": tmp_path, "log_every": 0}
    ae.fit_autoencoder(ae.dense_autoencoder(8), x_train[:128], epochs=1, **settings)
    real = run_folder.write_json

    def failing(path, payload):
        if Path(path).name == "checkpoint.json":
            raise OSError("simulated crash before checkpoint.json was replaced")
        return real(path, payload)

    monkeypatch.setattr(run_folder, "write_json", failing)
    with pytest.raises(OSError, match="simulated crash"):
        ae.fit_autoencoder(ae.dense_autoencoder(8), x_train[:128], epochs=2, **settings)
    monkeypatch.undo()
    assert (tmp_path / "epoch_0002").is_dir()  # complete, but not yet pointed at
    assert latest_epoch(tmp_path) == 1
    history = ae.fit_autoencoder(ae.dense_autoencoder(8), x_train[:128], epochs=2, **settings)
    assert len(history["train"]) == 2 and latest_epoch(tmp_path) == 2


def test_a_damaged_pointer_falls_back_to_the_newest_checkpoint_folder(data, tmp_path: Path) -> None:
    x_train, _ = data
    pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x_train[:128], epochs=2, out_dir=tmp_path, log_every=0)
    (tmp_path / "checkpoint.json").write_text('{"epo')
    assert latest_epoch(tmp_path) == 2


def test_a_new_folder_starts_fresh(data, tmp_path: Path) -> None:
    x_train, _ = data
    out = tmp_path / "new" / "run"
    history = pt_ae.fit_autoencoder(
        pt_ae.dense_autoencoder(8), x_train[:128], epochs=1, out_dir=out, log_every=0
    )
    assert len(history["train"]) == 1
    saved = json.loads((out / "run.json").read_text())
    assert saved["model"] == "autoencoder" and saved["framework"] == "torch"
    assert saved["kind"] == "dense" and saved["code_size"] == 8 and saved["n_train"] == 128


# ---------------------------------------------------------------------------------- settings checks


@pytest.fixture(scope="module")
def trained_folder(data, tmp_path_factory) -> Path:
    """A TensorFlow dense autoencoder (code 8, lr 1e-3) trained 3 epochs into a folder."""
    folder = tmp_path_factory.mktemp("trained")
    x_train, _ = data
    tf_ae.fit_autoencoder(
        tf_ae.dense_autoencoder(8), x_train[:128], epochs=3, batch_size=64, out_dir=folder, log_every=0
    )
    return folder


MISMATCHES = [
    ("tensorflow", "dense", 8, {"learning_rate": 2e-3}, SettingsMismatch, "learning_rate= 0.001"),
    ("tensorflow", "dense", 8, {"batch_size": 32}, SettingsMismatch, "batch_size= 64"),
    ("tensorflow", "dense", 8, {"seed": 1}, SettingsMismatch, "seed= 0"),
    ("tensorflow", "dense", 4, {}, SettingsMismatch, "code_size= 8"),
    ("tensorflow", "deep", 8, {}, SettingsMismatch, "kind= 'dense'"),
    ("tensorflow", "dense", 8, {"noise": 0.2}, RunFolderError, "holds a 'autoencoder' run, not 'denoising'"),
    ("torch", "dense", 8, {}, RunFolderError, "holds a tensorflow run"),
]


@pytest.mark.parametrize(("side", "kind", "code_size", "change", "error", "message"), MISMATCHES)
def test_other_settings_are_refused_and_nothing_is_deleted(
    side, kind, code_size, change, error, message, data, trained_folder: Path
) -> None:
    ae, _ = SIDES[side]
    x_train, _ = data
    before = snapshot(trained_folder)
    settings = {"epochs": 5, "batch_size": 64, "out_dir": trained_folder, "log_every": 0, **change}
    with pytest.raises(error, match=message):
        ae.fit_autoencoder(ae.build_autoencoder(kind, code_size), x_train[:128], **settings)
    assert snapshot(trained_folder) == before
    assert not (trained_folder / ".lock").exists()


def test_a_shorter_run_keeps_the_longer_checkpoint(data, trained_folder: Path, capsys) -> None:
    x_train, x_val = data
    before = snapshot(trained_folder)
    model = tf_ae.dense_autoencoder(8)
    history = tf_ae.fit_autoencoder(
        model, x_train[:128], epochs=1, batch_size=64, out_dir=trained_folder, log_every=1
    )
    assert "already trained for 3 epochs (asked for 1); nothing to do" in capsys.readouterr().out
    assert snapshot(trained_folder) == before  # nothing lost
    assert len(history["train"]) == 3  # the saved history
    # the model holds the epoch-3 weights
    loaded = tf_ae.load_autoencoder(trained_folder)
    np.testing.assert_allclose(tf_ae.reconstruct(model, x_val), tf_ae.reconstruct(loaded, x_val), atol=1e-6)


@pytest.mark.parametrize("side", SIDES)
def test_overwrite_restarts(side: str, data, tmp_path: Path, capsys) -> None:
    ae, _ = SIDES[side]
    x_train, _ = data
    ae.fit_autoencoder(
        ae.dense_autoencoder(8), x_train[:128], epochs=3, batch_size=64, out_dir=tmp_path, log_every=0
    )
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SettingsMismatch):
        ae.fit_autoencoder(ae.deep_autoencoder(4), x_train[:128], epochs=2, out_dir=tmp_path, log_every=0)
    history = ae.fit_autoencoder(
        ae.deep_autoencoder(4), x_train[:128], epochs=2, out_dir=tmp_path, overwrite=True, log_every=1
    )
    assert "resuming" not in capsys.readouterr().out
    assert len(history["train"]) == 2
    assert not (tmp_path / "notes.txt").exists() and not (tmp_path / "epoch_0003").exists()
    assert latest_epoch(tmp_path) == 2
    saved = json.loads((tmp_path / "run.json").read_text())
    assert (saved["kind"], saved["code_size"]) == ("deep", 4)
    assert ae.load_autoencoder(tmp_path).kind == "deep"


def test_a_folder_of_other_files_is_refused(data, tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"not a run")
    with pytest.raises(RunFolderError, match="holds files but no run"):
        pt_ae.fit_autoencoder(
            pt_ae.dense_autoencoder(4), data[0][:64], epochs=1, out_dir=tmp_path, log_every=0
        )
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]
    with pytest.raises(RunFolderError, match="is a file"):
        pt_ae.fit_autoencoder(
            pt_ae.dense_autoencoder(4), data[0][:64], epochs=1, out_dir=tmp_path / "photo.png", log_every=0
        )


def test_loading_a_run_of_the_other_framework_is_refused(trained_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a torch autoencoder"):
        pt_ae.load_autoencoder(trained_folder)
    with pytest.raises(RunFolderError, match=r"run\.json is missing"):
        tf_ae.load_autoencoder(tmp_path)


def test_edited_run_file_is_reported_as_edited(tmp_path: Path) -> None:
    config = {"model": "m", "framework": "torch", "batch_size": 64}
    with RunFolder(tmp_path, config):
        pass
    saved = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**saved, "batch_size": "64"}))
    with pytest.raises(SettingsMismatch, match="the file was edited") as caught:
        RunFolder(tmp_path, config).__enter__()
    assert caught.value.key == "batch_size"
    (tmp_path / "run.json").write_text("{trunc")
    with pytest.raises(RunFolderError, match="unreadable or truncated"):
        RunFolder(tmp_path, config).__enter__()
    assert not (tmp_path / ".lock").exists()


# ---------------------------------------------------------------------------------- the lock


def test_a_locked_folder_is_refused_until_released(data, tmp_path: Path) -> None:
    config = {"model": "autoencoder", "framework": "torch"}
    with RunFolder(tmp_path, config):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RunFolderError, match="in use"):
            RunFolder(tmp_path, config).__enter__()
        with pytest.raises(RunFolderError, match="in use"):
            pt_ae.fit_autoencoder(
                pt_ae.dense_autoencoder(4), data[0][:64], epochs=1, out_dir=tmp_path, log_every=0
            )
        assert (tmp_path / ".lock").exists(), "the refused caller removed the holder's lock"
    assert not (tmp_path / ".lock").exists()
    with RunFolder(tmp_path, config):  # free again
        pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    config = {"model": "autoencoder", "framework": "torch"}
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "yesterday"}))
    with RunFolder(tmp_path, config):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    # a lock held on another machine cannot be checked, so it is respected
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere.example", "started": "now"}))
    with pytest.raises(RunFolderError, match="in use"):
        RunFolder(tmp_path, config).__enter__()
    assert lock.exists()


# ---------------------------------------------------------------------------------- atomic files


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_follow_the_umask(tmp_path: Path, mask: int) -> None:
    previous = os.umask(mask)
    try:
        target = atomic_files.write_json(tmp_path / "a.json", {"x": 1})
        with atomic_files.atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(previous)
    assert atomic_files.read_json(target) == {"x": 1}
    assert (target.stat().st_mode & 0o777) == 0o666 & ~mask
    assert ((tmp_path / "folder").stat().st_mode & 0o777) == 0o777 & ~mask
    assert not list(tmp_path.glob(".*"))


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "epoch_0001"
    with atomic_files.atomic_directory(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_files.atomic_directory(target) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError("boom")
    assert (target / "a").read_text() == "old" and not list(tmp_path.glob(".*"))
    with atomic_files.atomic_directory(target) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    (tmp_path / ".epoch_0002.tmpabc").mkdir()  # left by a killed writer
    assert [p.name for p in atomic_files.remove_stale(tmp_path)] == [".epoch_0002.tmpabc"]


# ---------------------------------------------------------------------------------- guards and bad input


@pytest.mark.parametrize("side", SIDES)
def test_a_nan_loss_raises_training_failed(side: str, data, tmp_path: Path) -> None:
    ae, _ = SIDES[side]
    model = ae.dense_autoencoder(4)
    if side == "torch":
        with torch.no_grad():
            model.decoder.reconstruction.weight.fill_(float("nan"))
    else:
        kernel = model.decoder.get_layer("reconstruction").kernel
        kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    with pytest.raises(TrainingFailed, match=r"training failed at epoch 1: train=nan.*last checkpoint: none"):
        ae.fit_autoencoder(model, data[0][:128], epochs=3, batch_size=64, out_dir=tmp_path, log_every=0)
    assert latest_epoch(tmp_path) == 0 and not (tmp_path / ".lock").exists()


def test_finite_losses_guard() -> None:
    timings = {"seconds": [float("nan")] * 2}  # timings are no metrics
    assert finite_losses({"train": [0.1, 0.2], **timings}) is None
    assert "d_loss=inf" in finite_losses({"d_loss": [0.1, float("inf")], "g_loss": [0.1, 0.2]})
    assert finite_losses({"d_loss": [float("nan"), 0.5]}) is None  # only the last epoch counts


def test_plan_and_fit_arguments_are_checked() -> None:
    arrays = {"targets": np.zeros((10, 3), np.float32)}
    assert loop.Plan(arrays, 4).steps == 3 and loop.Plan(arrays, 4, drop_last=True).steps == 2
    assert loop.Plan(arrays, 2, steps_per_epoch=3).steps == 3
    with pytest.raises(InputError, match="exceeds the 10 training images"):
        loop.Plan(arrays, 11, drop_last=True)
    with pytest.raises(InputError, match="differ in length"):
        loop.Plan({"a": np.zeros(3), "b": np.zeros(4)}, 2)
    history = {"train_seconds": [9.0, 2.0, 4.0, 3.0], "steps": [1, 2, 2, 2]}
    assert loop.seconds_per_step(history) == pytest.approx(1.5)  # the first epoch (tracing) left out


def _bad_inputs(side: str, tmp_path: Path):
    x, _ = companion.load_mnist("train", source="subset", limit=32, verbose=False)
    conv_layout = (32, 28, 28, 1) if side == "tensorflow" else (32, 1, 28, 28)
    wrong_conv_layout = (32, 1, 28, 28) if side == "tensorflow" else (32, 28, 28, 1)
    nan = x.copy()
    nan[3, 100] = np.nan
    return [
        ("dense", x.reshape(32, 28, 28), {}, "shape"),
        ("conv", x.reshape(wrong_conv_layout), {}, "shape"),
        ("conv", x.reshape(conv_layout) * 255.0, {}, "divide by 255"),
        ("dense", x * 255.0, {}, "divide by 255"),
        ("dense", nan, {}, "NaN"),
        ("dense", x[:0], {}, "empty"),
        ("dense", x, {"epochs": 0}, "epochs"),
        ("dense", x, {"batch_size": -1}, "batch_size"),
        ("dense", x, {"batch_size": 2.5}, "batch_size"),
        ("dense", x, {"learning_rate": 0.0}, "learning_rate"),
        ("dense", x, {"learning_rate": float("nan")}, "learning_rate"),
        ("dense", x, {"noise": -0.1}, "noise"),
        ("dense", x, {"noise": "gaussian"}, "noise"),
        ("dense", x, {"noise": lambda b, rng: b[:, :10]}, "noise function"),
        ("dense", x, {"seed": -1}, "seed"),
        ("dense", x, {"checkpoint_every": 0}, "checkpoint_every"),
        ("dense", x, {"log_every": -1}, "log_every"),
        ("dense", x, {"overwrite": True}, "needs out_dir"),
        ("dense", x, {"overwrite": "yes", "out_dir": tmp_path / "run"}, "overwrite must be True or False"),
        ("dense", x, {"device": "tpu"}, "device"),
    ]


@pytest.mark.parametrize("side", SIDES)
def test_bad_input_raises_a_clear_error(side: str, tmp_path: Path) -> None:
    ae, _ = SIDES[side]
    for kind, x, kwargs, message in _bad_inputs(side, tmp_path):
        model = ae.build_autoencoder(kind, 4)
        with pytest.raises(InputError, match=message):
            ae.fit_autoencoder(model, x, **{"epochs": 1, "log_every": 0, **kwargs})
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("epoch_*"))
    # the validation set is checked too
    x, _ = companion.load_mnist("train", source="subset", limit=8, verbose=False)
    with pytest.raises(InputError, match="x_val"):
        ae.fit_autoencoder(ae.dense_autoencoder(4), x, x * 255.0, epochs=1, log_every=0)
    # settings that no longer exist are not silently ignored
    with pytest.raises(TypeError, match="checkpoint_dir"):
        ae.fit_autoencoder(ae.dense_autoencoder(4), x, epochs=1, checkpoint_dir="old", log_every=0)
