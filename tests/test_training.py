"""fit_autoencoder on both sides: it learns, it resumes where it stopped, a crash while writing a
checkpoint never damages the previous one, and bad input fails early with a clear message."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import companion
from companion import checkpoints, metrics
from companion.tensorflow import autoencoders as tf_ae
from companion.tensorflow import training as tf_train
from companion.torch import autoencoders as pt_ae
from companion.torch import training as pt_train

SIDES = {"tensorflow": (tf_ae, tf_train), "torch": (pt_ae, pt_train)}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x, _ = companion.load_mnist("train", source="subset", limit=600, verbose=False)
    return x[:512], x[512:]


def copy_model(side: str, source):
    """A second model with the same weights (same framework)."""
    ae, _ = SIDES[side]
    clone = ae.dense_autoencoder(source.code_size)
    if side == "torch":
        clone.load_state_dict(source.state_dict())
    else:
        clone.set_weights(source.get_weights())
    return clone


@pytest.mark.parametrize("side", SIDES)
def test_training_lowers_the_loss(side: str, data) -> None:
    ae, train = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(32)
    untrained = train.evaluate_loss(model, x_val)
    history = train.fit_autoencoder(model, x_train, x_val, epochs=4, batch_size=64, log_every=0)
    assert set(history) == {"train", "val", "seconds"}
    assert all(len(v) == 4 for v in history.values())
    assert history["train"][-1] < 0.7 * history["train"][0]
    assert history["val"][-1] < 0.7 * untrained
    assert history["val"][-1] == pytest.approx(train.evaluate_loss(model, x_val), rel=1e-5)


@pytest.mark.parametrize("side", SIDES)
def test_denoising_training_beats_the_noisy_input(side: str, data) -> None:
    ae, train = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(64)
    train.fit_autoencoder(
        model, x_train, epochs=6, batch_size=32, learning_rate=3e-3, noise=0.5, seed=1, log_every=0
    )
    noisy = companion.add_gaussian_noise(x_val, 0.5, seed=2)
    denoised = ae.reconstruct(model, noisy)
    assert metrics.psnr(x_val, denoised) > metrics.psnr(x_val, noisy) + 2.0


@pytest.mark.parametrize("side", SIDES)
def test_noise_is_fresh_each_epoch_and_seeded(side: str) -> None:
    _, train = SIDES[side]
    x = np.full((4, 784), 0.5, np.float32)
    a = train.corrupt(x, 0.3, train.epoch_rng(0, 1, 1))
    assert np.array_equal(a, train.corrupt(x, 0.3, train.epoch_rng(0, 1, 1)))  # same seed, same epoch
    assert not np.array_equal(a, train.corrupt(x, 0.3, train.epoch_rng(0, 2, 1)))  # next epoch: new noise
    assert train.corrupt(x, None, train.epoch_rng(0, 1, 1)) is x
    doubled = train.corrupt(x, lambda batch, rng: batch * 0.5, train.epoch_rng(0, 1, 1))
    assert np.allclose(doubled, 0.25)


@pytest.mark.parametrize("side", SIDES)
def test_resume_continues_from_the_saved_epoch(side: str, data, tmp_path: Path, capsys) -> None:
    ae, train = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    settings = {"batch_size": 64, "noise": 0.2, "seed": 3, "log_every": 1}
    first = ae.dense_autoencoder(16)
    twin = copy_model(side, first)

    unbroken = train.fit_autoencoder(twin, x_train, x_val, epochs=4, **settings)
    train.fit_autoencoder(first, x_train, x_val, epochs=2, checkpoint_dir=tmp_path, **settings)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    capsys.readouterr()

    resumed_model = ae.dense_autoencoder(16)  # fresh weights: everything must come from the checkpoint
    resumed = train.fit_autoencoder(
        resumed_model, x_train, x_val, epochs=4, checkpoint_dir=tmp_path, resume=True, **settings
    )
    printed = capsys.readouterr().out
    assert "resuming after epoch 2" in printed
    assert "epoch 1/4" not in printed and "epoch 3/4" in printed
    assert len(resumed["train"]) == len(resumed["val"]) == 4
    # Weights, Adam's moments and the data order all carried over: the run matches an unbroken one.
    np.testing.assert_allclose(resumed["train"], unbroken["train"], rtol=1e-4)
    np.testing.assert_allclose(resumed["val"], unbroken["val"], rtol=1e-4)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["epoch"] == 4
    assert json.loads((tmp_path / "history.json").read_text())["train"] == resumed["train"]
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == sorted(
        v for k, v in saved.items() if k in ("weights", "optimizer")
    )  # older checkpoints were removed once the new one was complete


@pytest.mark.parametrize("side", SIDES)
def test_checkpoint_every_k_epochs(side: str, data, tmp_path: Path, monkeypatch) -> None:
    ae, train = SIDES[side]
    x_train, _ = data
    model = ae.dense_autoencoder(8)
    seen = []
    real = train.save_checkpoint

    def spy(model, optimizer, folder, epoch, history):
        seen.append(epoch)
        return real(model, optimizer, folder, epoch, history)

    monkeypatch.setattr(train, "save_checkpoint", spy)
    train.fit_autoencoder(
        model,
        x_train[:128],
        epochs=5,
        batch_size=64,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        log_every=0,
    )
    assert seen == [2, 4, 5]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 5
    assert len(json.loads((tmp_path / "history.json").read_text())["train"]) == 5


def crashing_atomic_path(when):
    """An ``atomic_path`` whose writer is cut off half-way (power cut) for targets matching ``when``."""

    @contextmanager
    def atomic_path(path, suffix=""):
        with checkpoints.atomic_path(path, suffix=suffix) as tmp:
            yield tmp
            if when(Path(path).name):
                data = tmp.read_bytes()
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(f"simulated crash while writing {Path(path).name}")

    return atomic_path


CRASHES = {
    "tensorflow": ["weights.h5", "optimizer.npz"],  # two files per checkpoint: crash in either
    "torch": [".pt"],
}


@pytest.mark.parametrize(("side", "target"), [(s, t) for s, ts in CRASHES.items() for t in ts])
def test_interrupted_checkpoint_leaves_the_previous_one_usable(
    side: str, target: str, data, tmp_path: Path, monkeypatch
) -> None:
    ae, train = SIDES[side]
    companion.seed_everything(0)
    x_train, x_val = data
    model = ae.dense_autoencoder(16)
    train.fit_autoencoder(model, x_train, epochs=2, batch_size=64, checkpoint_dir=tmp_path, log_every=0)
    after_two = ae.reconstruct(model, x_val)

    monkeypatch.setattr(train, "atomic_path", crashing_atomic_path(lambda name: name.endswith(target)))
    with pytest.raises(OSError, match="simulated crash"):
        train.fit_autoencoder(
            model, x_train, epochs=3, batch_size=64, checkpoint_dir=tmp_path, resume=True, log_every=0
        )
    monkeypatch.undo()

    assert not list(tmp_path.glob(".*tmp*")), "a temporary file was left behind"
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    restored = ae.dense_autoencoder(16)
    epoch, history = train.load_checkpoint(restored, None, tmp_path)
    assert epoch == 2 and len(history["train"]) == 2
    np.testing.assert_allclose(ae.reconstruct(restored, x_val), after_two, atol=1e-6)
    # ... and training picks up from there once the disk behaves again.
    history = train.fit_autoencoder(
        restored, x_train, epochs=3, batch_size=64, checkpoint_dir=tmp_path, resume=True, log_every=0
    )
    assert len(history["train"]) == 3


@pytest.mark.parametrize("side", SIDES)
def test_crash_before_the_pointer_moves_keeps_the_old_checkpoint(
    side: str, data, tmp_path, monkeypatch
) -> None:
    ae, train = SIDES[side]
    x_train, _ = data
    model = ae.dense_autoencoder(8)
    train.fit_autoencoder(model, x_train[:128], epochs=1, batch_size=64, checkpoint_dir=tmp_path, log_every=0)
    real = train.write_json

    def failing(path, payload):
        if Path(path).name == "checkpoint.json":
            raise OSError("simulated crash before checkpoint.json was replaced")
        return real(path, payload)

    monkeypatch.setattr(train, "write_json", failing)
    with pytest.raises(OSError, match="simulated crash"):
        train.fit_autoencoder(
            model, x_train[:128], epochs=2, batch_size=64, checkpoint_dir=tmp_path, resume=True, log_every=0
        )
    monkeypatch.undo()
    epoch, _ = train.load_checkpoint(ae.dense_autoencoder(8), None, tmp_path)
    assert epoch == 1


def test_resume_without_a_checkpoint_starts_fresh(data, tmp_path: Path) -> None:
    x_train, _ = data
    history = pt_train.fit_autoencoder(
        pt_ae.dense_autoencoder(8),
        x_train[:128],
        epochs=1,
        checkpoint_dir=tmp_path / "new",
        resume=True,
        log_every=0,
    )
    assert len(history["train"]) == 1


def _bad_inputs(side: str):
    ae, _ = SIDES[side]
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
        ("dense", x, {"resume": True}, "checkpoint_dir"),
    ]


@pytest.mark.parametrize("side", SIDES)
def test_bad_input_raises_a_clear_error(side: str) -> None:
    ae, train = SIDES[side]
    for kind, x, kwargs, message in _bad_inputs(side):
        model = ae.build_autoencoder(kind, 4)
        with pytest.raises(ValueError, match=message):
            train.fit_autoencoder(model, x, **{"epochs": 1, "log_every": 0, **kwargs})
    # the validation set is checked too
    x, _ = companion.load_mnist("train", source="subset", limit=8, verbose=False)
    with pytest.raises(ValueError, match="x_val"):
        train.fit_autoencoder(ae.dense_autoencoder(4), x, x * 255.0, epochs=1, log_every=0)
