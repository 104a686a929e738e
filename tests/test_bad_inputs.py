"""Bad input and faults: each case either works correctly or stops with one clear line, losing nothing.

Names follow the cases of the run-folder review (silent garbage, unclear errors, lost work)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

import companion
from companion.data import MnistDataError
from companion.training.run_folder import RunFolder, RunFolderError
from companion.validation import InputError

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow

# isort: split
from companion import bridge
from companion.tensorflow import autoencoders as tf_ae
from companion.tensorflow import dcgan as tf_dcgan
from companion.torch import autoencoders as pt_ae
from companion.torch import dcgan as pt_dcgan


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    x, _ = companion.load_mnist("train", source="subset", limit=64, layout="hw", verbose=False)
    return x


# ----------------------------------------------------------------- settings and data


@pytest.mark.parametrize("value", ["maybe", "2", "quick"])
def test_quick_mode_value_that_is_neither_on_nor_off_is_an_error(monkeypatch, value: str) -> None:
    monkeypatch.setenv("COMPANION_QUICK", value)
    with pytest.raises(InputError, match="COMPANION_QUICK"):
        companion.quick_mode()


@pytest.mark.parametrize(
    ("value", "quick"), [("1", True), ("yes", True), ("0", False), ("off", False), ("", False)]
)
def test_quick_mode_values_that_are_understood(monkeypatch, value: str, quick: bool) -> None:
    monkeypatch.setenv("COMPANION_QUICK", value)
    assert companion.quick_mode() is quick


def test_progress_value_that_is_neither_on_nor_off_is_an_error(monkeypatch) -> None:
    from companion.settings import progress_bars

    monkeypatch.setenv("COMPANION_PROGRESS", "sometimes")
    with pytest.raises(InputError, match="COMPANION_PROGRESS"):
        progress_bars()


def test_load_mnist_limit_true_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        companion.load_mnist("train", source="subset", limit=True)


def test_data_dir_that_is_a_file_names_the_fix(monkeypatch, tmp_path: Path) -> None:
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    monkeypatch.setenv("COMPANION_DATA_DIR", str(file))
    with pytest.raises(MnistDataError, match=r"is a file.*--data subset"):
        companion.load_mnist("train", source="auto", verbose=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_data_dir_that_is_read_only_names_the_fix(monkeypatch, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("COMPANION_DATA_DIR", str(folder))
    with pytest.raises(MnistDataError, match="cannot write"):
        companion.load_mnist("train", source="auto", verbose=False)


# ----------------------------------------------------------------- models


@pytest.mark.parametrize("ae", [tf_ae, pt_ae], ids=["tensorflow", "torch"])
def test_reconstruct_refuses_0_255_nan_and_wrong_shapes(ae) -> None:
    model = ae.dense_autoencoder(8)
    good = np.full((2, 784), 0.5, np.float32)
    for bad, words in (
        (good * 255, "0-255"),
        (np.full((2, 784), np.nan, np.float32), "NaN"),
        (good[:, :100], "shape"),
    ):
        with pytest.raises(InputError, match=words):
            ae.reconstruct(model, bad)


@pytest.mark.parametrize("dcgan", [tf_dcgan, pt_dcgan], ids=["tensorflow", "torch"])
def test_dcgan_refuses_scrambled_shapes_rgb_nan_noise_and_odd_seeds(dcgan, digits: np.ndarray) -> None:
    with pytest.raises(InputError, match="28x28"):
        dcgan.train(digits.reshape(-1, 14, 56), epochs=1)
    with pytest.raises(InputError, match="28x28"):
        dcgan.train(np.repeat(digits[..., None], 3, axis=-1), epochs=1)
    with pytest.raises(InputError, match="seed"):
        dcgan.train(digits, epochs=1, seed=1.5)
    gan = dcgan.DCGAN(seed=0)
    with pytest.raises(InputError, match="NaN"):
        gan.generate(np.full((2, 100), np.nan, np.float32))
    with pytest.raises(InputError, match="empty"):
        gan.generate(np.zeros((0, 100), np.float32))


def test_bridge_checks_everything_before_writing_anything() -> None:
    keras_model = tf_ae.dense_autoencoder(16)
    torch_model = pt_ae.deep_autoencoder(16)  # more layers: no pairing possible
    before = [p.detach().clone() for p in torch_model.parameters()]
    with pytest.raises(ValueError, match="differ"):
        bridge.keras_to_torch(keras_model, torch_model)
    assert all(np.array_equal(a, b.detach()) for a, b in zip(before, torch_model.parameters(), strict=True))
    torch_small = pt_ae.dense_autoencoder(16)
    keras_other = tf_ae.dense_autoencoder(8)  # same layers, other shapes: caught before any copy
    before = [w.copy() for w in keras_other.get_weights()]
    with pytest.raises(ValueError, match="shape"):
        bridge.torch_to_keras(torch_small, keras_other)
    assert all(np.array_equal(a, b) for a, b in zip(before, keras_other.get_weights(), strict=True))


def test_bridge_given_two_pytorch_models_says_so() -> None:
    with pytest.raises(TypeError, match="Keras model"):
        bridge.keras_to_torch(pt_ae.dense_autoencoder(4), pt_ae.dense_autoencoder(4))


# ----------------------------------------------------------------- run folders


def test_run_folder_with_an_empty_name_is_refused() -> None:
    with pytest.raises(RunFolderError, match="empty name"):
        RunFolder("", {"model": "m", "framework": "f"})


def test_checkpoint_dir_that_is_a_file_fails_before_training(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    x = np.full((8, 784), 0.5, np.float32)
    with pytest.raises(RunFolderError, match="is a file"):
        pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, epochs=1, out_dir=file, log_every=0)


def test_truncated_weights_file_is_named_and_the_one_before_is_kept(
    tmp_path: Path, digits: np.ndarray
) -> None:
    x = digits.reshape(-1, 784)[:32]
    settings = dict(epochs=2, batch_size=16, out_dir=tmp_path, checkpoint_every=1, log_every=0)
    pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, **settings)
    weights = tmp_path / "epoch_0002" / "state.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunFolderError, match=r"epoch_0002.*damaged"):
        pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, **{**settings, "epochs": 3})
    assert (tmp_path / "epoch_0001").is_dir()  # the checkpoint before is still there to fall back to


def test_run_json_with_a_string_for_a_number_says_the_file_was_edited(tmp_path: Path) -> None:
    import json

    x = np.full((16, 784), 0.5, np.float32)
    settings = dict(epochs=1, batch_size=8, out_dir=tmp_path, log_every=0)
    pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, **settings)
    run = json.loads((tmp_path / "run.json").read_text())
    run["batch_size"] = "8"
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(RunFolderError, match="was edited"):
        pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, **{**settings, "epochs": 2})


def test_deleted_frames_are_rebuilt_from_the_checkpoint(tmp_path: Path, digits: np.ndarray) -> None:
    settings = dict(
        batch_size=16, steps_per_epoch=1, checkpoint_every=1, probes=0, log_every=0, out_dir=tmp_path
    )
    pt_dcgan.train(digits, epochs=1, **settings)
    (tmp_path / "frames.npy").unlink()
    (tmp_path / "fixed_noise.npy").unlink()
    pt_dcgan.train(digits, epochs=2, **settings)
    assert np.load(tmp_path / "frames.npy").shape == (2, 16, 28, 28)
    assert (tmp_path / "fixed_noise.npy").exists()


def test_full_disk_during_a_torch_save_says_so_and_keeps_the_checkpoint_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    x = np.full((32, 784), 0.5, np.float32)
    settings = dict(batch_size=16, out_dir=tmp_path, checkpoint_every=1, log_every=0)
    pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, epochs=1, **settings)

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RunFolderError, match=r"no space left.*epoch 1\) is intact"):
        pt_ae.fit_autoencoder(pt_ae.dense_autoencoder(4), x, epochs=2, **settings)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("epoch")) == ["epoch_0001"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_sigterm_during_training_ends_with_the_resume_line(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "companion",
        "train",
        "mlp-gan",
        "--framework",
        "torch",
        "--data",
        "subset",
    ]
    command += ["--out", str(tmp_path / "run"), "--epochs", "500", "--checkpoint-every", "1", "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "checkpoint.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in err
    assert not (tmp_path / "run" / ".lock").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]


def test_cli_refuses_a_mistyped_quick_mode_before_any_work(monkeypatch, tmp_path: Path, capsys) -> None:
    from companion import cli

    monkeypatch.setenv("COMPANION_QUICK", "2")
    argv = [
        "train",
        "mlp-gan",
        "--framework",
        "torch",
        "--data",
        "subset",
        "--out",
        str(tmp_path / "r"),
        "--dry-run",
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "COMPANION_QUICK" in err[0]
    assert not (tmp_path / "r").exists()
