"""Run settings shared by every chapter: quick mode, seeding and log silencing.

Quick mode (``COMPANION_QUICK=1``) shrinks data and epochs so that a chapter
executes in about two minutes on two CPU cores; the tests always use it.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

from companion.validation import InputError

QUICK_ENV = "COMPANION_QUICK"
T = TypeVar("T")


SOURCE_ENV = "COMPANION_DATA"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def env_flag(name: str, default: bool) -> bool:
    """An on/off environment variable, read strictly: a value that is neither says so instead of
    silently meaning "off"."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{name}={raw!r} is not understood; set it to 1 (on) or 0 (off), or unset it")


def quick_mode() -> bool:
    """True when ``COMPANION_QUICK`` is 1/true/yes/on; 0/false/no/off or unset means full mode."""
    return env_flag(QUICK_ENV, False)


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise (epochs, sizes, ...)."""
    return quick if quick_mode() else full


PROGRESS_ENV = "COMPANION_PROGRESS"


def progress_bars() -> bool:
    """Whether training loops draw tqdm bars; ``COMPANION_PROGRESS=0`` turns them off.

    Book execution and the tests turn them off so that stored outputs hold one
    readable line per epoch instead of carriage-return noise.
    """
    return env_flag(PROGRESS_ENV, True)


def default_source() -> str:
    """``"subset"`` in quick mode, else ``$COMPANION_DATA`` (``auto`` or ``subset``), else ``auto``."""
    if quick_mode():
        return "subset"
    env = os.environ.get(SOURCE_ENV, "auto").strip().lower() or "auto"
    if env not in ("auto", "subset"):
        raise InputError(f"{SOURCE_ENV} must be 'auto' or 'subset', got {env!r}")
    return env


def describe_run() -> str:
    """One line for the top of a chapter: the mode and the data source in use."""
    return f"mode: {mode_name()} | data source: {default_source()}"


def mode_name() -> str:
    """``"quick"`` or ``"full"``, for the line each chapter prints about its run."""
    return "quick" if quick_mode() else "full"


# Lines TensorFlow's C++ runtime writes to file descriptor 2 while it loads, whatever
# TF_CPP_MIN_LOG_LEVEL says; they would land as stderr blocks in the book.
_TF_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on.",
    "Unable to register cu",
    "Could not find cuda drivers",
    "computation placer already registered",
    "TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "This TensorFlow binary is optimized",
)


def silence_tensorflow() -> None:
    """Set TensorFlow's C++ log level to warnings-and-up; effective only before its first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up banner removed from stderr.

    File descriptor 2 is captured while TensorFlow loads; every captured line that
    is not a known start-up message is written back, so real problems still show.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    silence_tensorflow()
    with quiet_native_stderr(_TF_STARTUP_NOISE):
        import tensorflow
    return tensorflow


@contextmanager
def quiet_native_stderr(known: tuple[str, ...]) -> Iterator[None]:
    """Hide the lines containing any of ``known`` that native code (TensorFlow's C++ runtime) writes
    to file descriptor 2 while inside; every other line is written back, so real problems still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines()
                if line.strip() and not any(noise in line for noise in known)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def seed_everything(seed: int, frameworks: Sequence[str] = ("tensorflow", "torch")) -> None:
    """Seed Python, NumPy and the given frameworks (those installed) with one call.

    Frameworks that are installed but not yet imported are imported here, so a
    chapter can call this once at the top and get repeatable runs on both sides;
    the command line seeds only the framework it trains with.
    """
    unknown = set(frameworks) - {"tensorflow", "torch"}
    if unknown:
        raise ValueError(f"frameworks must be 'tensorflow' and/or 'torch', got {sorted(unknown)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "tensorflow" in frameworks and ("tensorflow" in sys.modules or importlib.util.find_spec("tensorflow")):
        import_tensorflow_quietly().random.set_seed(seed)
    if "torch" in frameworks and ("torch" in sys.modules or importlib.util.find_spec("torch")):
        import torch

        torch.manual_seed(seed)  # also seeds every CUDA device


def set_threads(threads: int, frameworks: Sequence[str] = ("tensorflow", "torch")) -> None:
    """Use ``threads`` CPU threads in each of the given frameworks; call it before any training
    (TensorFlow refuses a change once it has run an operation)."""
    if "tensorflow" in frameworks:
        import companion.tensorflow  # noqa: F401  (Keras on TensorFlow, quiet start-up)

        tf = import_tensorflow_quietly()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(threads)
