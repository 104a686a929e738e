"""The device policy for PyTorch: one function decides where every model and tensor lives.

``device(None)`` is CUDA when available, else the CPU; every entry point of the package that trains
or runs a model takes ``device=None``, resolves it here once, moves the model there and puts every
tensor it makes on the model's device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from companion.validation import InputError


def device(requested: str | torch.device | None = None) -> torch.device:
    """PyTorch device: ``cuda`` when available (or asked for), else ``cpu``.

    ``requested`` may be ``None`` (choose), ``"cpu"``, ``"gpu"``/``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
    """
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(requested).strip().lower().lstrip("/")
    kind, _, number = text.partition(":")
    if kind == "cpu":
        return torch.device("cpu")
    if kind in ("gpu", "cuda"):
        index = int(number) if number.isdigit() else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device {requested!r} asked for, but PyTorch sees {torch.cuda.device_count()} CUDA device(s); "
                "pass device='cpu' or install a CUDA build of PyTorch"
            )
        return torch.device("cuda", index)
    raise InputError(f"device must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got {requested!r}")


def describe(requested: str | torch.device | None = None) -> str:
    """One line naming the framework version and the device it will use."""
    return f"PyTorch {torch.__version__} on {device(requested)}"


@contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 matrix products and convolutions while inside (no TensorFloat-32 on CUDA), so that
    parity checks against TensorFlow hold to 1e-4 on Ampere and newer GPUs too."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
