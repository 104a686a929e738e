"""Atomic writes for run folders: a crash at any moment never damages the last good file or checkpoint.

Every file is written under a temporary name next to its target, flushed to disk and renamed over
the target in one step (``os.replace`` is atomic on POSIX and Windows), so readers see either the
old file or the complete new one. Files get the permissions of any other new file (the umask's).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path`` in one step.

    On an exception the temporary file is removed and the old file is left untouched.
    ``suffix`` keeps an extension that a writer insists on (``np.save`` adds ``.npy``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; follow the umask instead
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it replaces ``path`` whole.

    A checkpoint is such a folder: it appears complete or not at all. A folder left behind by a
    killed process is named ``.NAME.tmp*`` and removed by :func:`remove_stale`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp"))
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync(file)
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():  # the same epoch saved again: swap, then drop the old copy
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files and folders that killed writers left in ``folder``; return them."""
    stale = [p for p in Path(folder).glob(".*.tmp*")] + [p for p in Path(folder).glob(".*.old")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path, suffix=suffix) as tmp:
        write(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, data: object) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


def read_json(path: str | os.PathLike) -> object:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())
