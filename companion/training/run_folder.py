"""Run folders: where a training run keeps its settings, checkpoints and outputs, safely.

A run folder holds

* ``run.json`` -- the settings that shape training (model, framework, architecture, optimiser,
  batch size, seed, ...); a resume must match every one of them;
* ``epoch_NNNN/`` -- the last checkpoints, each a complete folder: the framework's weights,
  optimiser and random-number state, written by the framework, plus ``history.json`` and any
  arrays the run keeps (sample frames, ...), written here;
* ``checkpoint.json`` -- which ``epoch_NNNN/`` is the latest, rewritten only once it is complete;
* outputs derived from the latest checkpoint (``history.json``, ``frames.npy``, ``training.gif``, ...);
* ``.lock`` while a process trains into it.

Nothing is deleted without ``overwrite=True``: training into a folder that holds a run resumes it
(when the settings match) or refuses with one line that names the mismatch and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from companion.training.atomic_files import atomic_directory, atomic_path, read_json, remove_stale, write_json

RUN_FILE = "run.json"
POINTER = "checkpoint.json"
LOCK = ".lock"
HISTORY = "history.json"
KEEP = 2  # checkpoints kept: the latest and the one before


class RunFolderError(RuntimeError):
    """A run folder cannot be used as asked; the message names the problem and the fix."""


class SettingsMismatch(RunFolderError):
    """The folder holds a run trained with other settings than the ones given."""

    def __init__(self, folder: Path, key: str, saved: Any, given: Any, flag: Callable[[str], str]) -> None:
        self.folder, self.key, self.saved, self.given = folder, key, saved, given
        name = flag(key)
        if type(saved) is not type(given) and str(saved) == str(given):
            text = (
                f"{folder / RUN_FILE} stores {key} as {saved!r} ({type(saved).__name__}), not {given!r}: "
                f"the file was edited; write {given!r} there or train into a new folder"
            )
        else:
            text = (
                f"{folder} was trained with {name} {saved!r}, not {given!r}; pass {name} {saved!r} to resume it, "
                "train into a new folder, or start again with overwrite (which deletes its checkpoints)"
            )
        super().__init__(text)


class StateIO(Protocol):
    """The framework's half of a checkpoint: write and read its state (weights, optimisers, RNGs)."""

    framework: str

    def save_state(self, folder: Path) -> None: ...

    def load_state(self, folder: Path) -> None: ...


def python_name(key: str) -> str:
    """How a setting is named in messages by default: as the Python argument ``key=``."""
    return f"{key}="


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunFolder:
    """A locked run folder for one training call; use it as a context manager.

    ``config`` holds every setting that changes training; ``framework`` and ``model`` must be in it.
    ``flag`` names a setting in messages (the command line passes one that prints ``--batch-size``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        overwrite: bool = False,
        flag: Callable[[str], str] = python_name,
    ) -> None:
        if path is None or str(path).strip() == "":
            raise RunFolderError("the run folder is an empty name; give a folder such as runs/my-run")
        self.path = Path(path)
        self.config = json.loads(json.dumps(dict(config)))  # as it will read back from run.json
        for key in ("model", "framework"):
            if key not in self.config:
                raise ValueError(f"config needs {key!r}")
        self.overwrite = bool(overwrite)
        self.flag = flag
        self._locked = False

    # ------------------------------------------------------------------ opening and locking

    def __enter__(self) -> RunFolder:
        self._create()
        self._lock()
        try:
            remove_stale(self.path)
            self._check_or_start()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._unlock()

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a folder; give a folder for the run")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise RunFolderError(
                f"cannot write to the run folder {self.path} ({reason}); choose a folder you can write to"
            ) from err

    def _lock(self) -> None:
        lock = self.path / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                pid, host = holder.get("pid"), holder.get("host")
                try:
                    age = time.time() - lock.stat().st_mtime
                except OSError:
                    age = 0.0
                stale = host == me["host"] and isinstance(pid, int) and not _pid_alive(pid)
                if stale or (not holder and age > 10):  # its process is gone, or died before writing its pid
                    lock.unlink(missing_ok=True)
                    continue
                raise RunFolderError(
                    f"{self.path} is in use by process {pid} on {host} (since {holder.get('started')}); wait "
                    f"for it to finish or stop it; if no such process runs, delete {lock}"
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._locked = True
            return
        raise RunFolderError(f"could not lock {self.path}; delete {lock} if no process trains into it")

    def _unlock(self) -> None:
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    def _check_or_start(self) -> None:
        run_file = self.path / RUN_FILE
        if self.overwrite:
            self._clear()
        elif run_file.exists():
            saved = read_run_file(self.path)
            check_settings(self.path, saved, self.config, self.flag)
            return
        elif any(p.name != LOCK for p in self.path.iterdir()):
            raise RunFolderError(
                f"{self.path} holds files but no run ({RUN_FILE} is missing); train into an empty or new "
                "folder, or start again with overwrite (which deletes what is there)"
            )
        write_json(run_file, self.config)

    def _clear(self) -> None:
        for item in self.path.iterdir():
            if item.name == LOCK:
                continue
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()

    # ------------------------------------------------------------------ checkpoints

    def latest(self) -> int:
        """Epoch of the latest complete checkpoint (0: none yet)."""
        return latest_epoch(self.path)

    def restore(self, io: StateIO) -> tuple[int, dict[str, list], dict[str, np.ndarray]]:
        """Load the latest checkpoint into ``io``: ``(epoch, history, kept arrays)``, or ``(0, {}, {})``."""
        epoch = self.latest()
        if epoch == 0:
            return 0, {}, {}
        folder = self.path / epoch_name(epoch)
        io.load_state(folder)
        return epoch, read_history(folder), read_arrays(folder)

    def save(
        self, io: StateIO, epoch: int, history: Mapping[str, list], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Write checkpoint ``epoch`` as one folder, then point ``checkpoint.json`` at it, then prune."""
        try:
            with atomic_directory(self.path / epoch_name(epoch)) as tmp:
                io.save_state(tmp)
                (tmp / HISTORY).write_text(json.dumps(dict(history)))
                for name, array in arrays.items():
                    np.save(tmp / f"{name}.npy", array)
        except (OSError, RuntimeError) as err:
            text = str(err)
            full = getattr(err, "errno", None) == 28 or "No space" in text or "inline_container" in text
            if not full:
                raise
            last = self.latest()
            raise RunFolderError(
                f"no space left on the device while writing checkpoint {epoch} into {self.path}; the previous "
                f"checkpoint ({f'epoch {last}' if last else 'none yet'}) is intact: free some space and run again"
            ) from err
        write_json(self.path / POINTER, {"epoch": int(epoch), "folder": epoch_name(epoch)})
        kept = sorted(self.path.glob("epoch_[0-9][0-9][0-9][0-9]"))[-KEEP:]
        for old in self.path.glob("epoch_[0-9][0-9][0-9][0-9]"):
            if old not in kept and old.name != epoch_name(epoch):
                shutil.rmtree(old, ignore_errors=True)
        write_json(self.path / HISTORY, dict(history))  # a convenience copy; resume reads the checkpoint's

    def write_output(self, name: str, write: Callable[[Path], object], suffix: str = "") -> Path:
        """Atomically write a derived output file ``name`` with ``write(tmp_path)``."""
        with atomic_path(self.path / name, suffix=suffix) as tmp:
            write(tmp)
        return self.path / name


# ---------------------------------------------------------------------- reading folders (no lock needed)


def epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def saved_run(
    out_dir: str | os.PathLike, framework: str, models: tuple[str, ...], what: str
) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a run of one of ``models`` trained in
    ``framework``; ``what`` names the model family in the error."""
    config = read_run_file(out_dir)
    if config.get("model") not in models or config.get("framework") != framework:
        raise RunFolderError(
            f"{out_dir} holds a {config.get('framework')} {config.get('model')!r} run, not a {framework} {what}"
        )
    return config, checkpoint_folder(out_dir)


def read_run_file(path: str | os.PathLike) -> dict:
    """``run.json`` of a run folder, or a :class:`RunFolderError` naming what is wrong with it."""
    run_file = Path(path) / RUN_FILE
    if not run_file.exists():
        raise RunFolderError(f"{path} holds no run ({RUN_FILE} is missing); train into it first")
    try:
        saved = read_json(run_file)
    except (OSError, ValueError) as err:
        raise RunFolderError(
            f"{run_file} is unreadable or truncated ({type(err).__name__}); it cannot be rebuilt: train into a "
            "new folder, or start again with overwrite"
        ) from err
    if not isinstance(saved, dict):
        raise RunFolderError(f"{run_file} does not hold run settings; train into a new folder")
    return saved


def check_settings(
    folder: Path, saved: Mapping[str, Any], given: Mapping[str, Any], flag: Callable[[str], str] = python_name
) -> None:
    """Raise when ``saved`` (from ``run.json``) and ``given`` differ in any setting, model and framework first."""
    if saved.get("model") != given["model"]:
        raise RunFolderError(
            f"{folder} holds a {saved.get('model')!r} run, not {given['model']!r}; use another folder"
        )
    if saved.get("framework") != given["framework"]:
        raise RunFolderError(
            f"{folder} holds a {saved.get('framework')} run; use that framework ({flag('framework')} "
            f"{saved.get('framework')}) or another folder"
        )
    for key in sorted(set(saved) | set(given)):
        if saved.get(key) != given.get(key):
            raise SettingsMismatch(folder, key, saved.get(key), given.get(key), flag)


def latest_epoch(path: str | os.PathLike) -> int:
    """Epoch of the latest complete checkpoint in a run folder (0: none yet).

    ``checkpoint.json`` names it; if that small file is damaged, the newest complete
    ``epoch_NNNN/`` folder is used instead (folders appear only once complete).
    """
    folder = Path(path)
    pointer = folder / POINTER
    if pointer.exists():
        try:
            epoch = int(read_json(pointer)["epoch"])  # type: ignore[index]
            if (folder / epoch_name(epoch)).is_dir():
                return epoch
        except (OSError, ValueError, KeyError, TypeError):
            pass  # rebuilt from the folders below
    epochs = sorted(
        int(p.name.split("_")[1]) for p in folder.glob("epoch_[0-9][0-9][0-9][0-9]") if p.is_dir()
    )
    return epochs[-1] if epochs else 0


def read_history(checkpoint: Path) -> dict[str, list]:
    try:
        history = json.loads((checkpoint / HISTORY).read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(
            f"{checkpoint / HISTORY} is missing or damaged ({type(err).__name__}); the checkpoint cannot be "
            "resumed; delete the folder to fall back to the one before, or start again with overwrite"
        ) from err
    return {name: list(values) for name, values in history.items()}


def read_arrays(checkpoint: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for path in sorted(checkpoint.glob("*.npy")):
        try:
            arrays[path.stem] = np.load(path)
        except (OSError, ValueError) as err:
            raise RunFolderError(
                f"{path} is damaged ({type(err).__name__}); delete {checkpoint} to fall back to the "
                "checkpoint before it, or start again with overwrite"
            ) from err
    return arrays


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """The latest checkpoint folder of a run, or a :class:`RunFolderError` when there is none."""
    epoch = latest_epoch(path)
    if epoch == 0:
        raise RunFolderError(f"{path} has no checkpoint yet; train for at least one epoch")
    return Path(path) / epoch_name(epoch)
