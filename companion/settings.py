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
from typing import TypeVar

import numpy as np

QUICK_ENV = "COMPANION_QUICK"
T = TypeVar("T")


def quick_mode() -> bool:
    """True when ``COMPANION_QUICK`` is set to 1/true/yes (case-insensitive)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise (epochs, sizes, ...)."""
    return quick if quick_mode() else full


PROGRESS_ENV = "COMPANION_PROGRESS"


def progress_bars() -> bool:
    """Whether training loops draw tqdm bars; ``COMPANION_PROGRESS=0`` turns them off.

    Book execution and the tests turn them off so that stored outputs hold one
    readable line per epoch instead of carriage-return noise.
    """
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def describe_run() -> str:
    """One line for the top of a chapter: the mode and the data source in use."""
    from companion.data import default_source

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


def import_tensorflow_quietly():  # noqa: ANN201 - returns the tensorflow module
    """Import TensorFlow with its C++ start-up banner removed from stderr.

    File descriptor 2 is captured while TensorFlow loads; every captured line that
    is not a known start-up message is written back, so real problems still show.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    silence_tensorflow()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines()
                if line.strip() and not any(noise in line for noise in _TF_STARTUP_NOISE)
            ]
    if kept:
        print("\n".join(kept), file=sys.stderr)
    return tensorflow


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and PyTorch (those installed) with one call.

    Frameworks that are installed but not yet imported are imported here, so a
    chapter can call this once at the top and get repeatable runs on both sides.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is not None:
        import_tensorflow_quietly().random.set_seed(seed)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)  # also seeds every CUDA device
