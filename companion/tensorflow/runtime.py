"""The device policy for TensorFlow: one function decides where every model and tensor lives.

``device(None)`` is the GPU when TensorFlow sees one, else the CPU; every entry point of the
package that trains or runs a model takes ``device=None`` and resolves it here, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import tensorflow as tf

from companion.validation import InputError


def device(requested: str | None = None) -> str:
    """TensorFlow device string: ``"/GPU:0"`` when a GPU is visible (or asked for), else ``"/CPU:0"``.

    ``requested`` may be ``None`` (choose), ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"cuda:N"``/``"/GPU:N"``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if requested is None:
        return "/GPU:0" if gpus else "/CPU:0"
    text = str(requested).strip().lower().lstrip("/")
    kind, _, number = text.partition(":")
    if kind == "cpu":
        return "/CPU:0"
    if kind in ("gpu", "cuda"):
        index = int(number) if number.isdigit() else 0
        if index >= len(gpus):
            raise InputError(
                f"device {requested!r} asked for, but TensorFlow sees {len(gpus)} GPU(s); "
                "pass device='cpu' or install a TensorFlow build with GPU support"
            )
        return f"/GPU:{index}"
    raise InputError(f"device must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got {requested!r}")


def describe(requested: str | None = None) -> str:
    """One line naming the framework version and the device it will use."""
    return f"TensorFlow {tf.__version__} on {device(requested)}"


@contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 matrix products while inside: TensorFloat-32, TensorFlow's default on Ampere and
    newer GPUs, keeps 10 mantissa bits and would break 1e-4 parity checks."""
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)
