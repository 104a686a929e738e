"""Checks on user input that fail early with a message naming the problem and the fix."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """A bad argument or input array; the message names the problem and the fix."""


def check_images(
    x: np.ndarray,
    *,
    name: str = "x",
    value_range: tuple[float, float] = (0.0, 1.0),
    shape: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Return ``x`` as float32 after checking it is a non-empty, finite batch in ``value_range``.

    ``shape`` gives the per-example shape, ``None`` entries matching any size.
    """
    x = np.asarray(x)
    if x.size == 0 or x.ndim == 0 or len(x) == 0:
        raise InputError(f"{name} is empty (shape {x.shape}); pass at least one example")
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {x.dtype}")
    if shape is not None:
        example = x.shape[1:]
        if len(example) != len(shape) or any(
            s is not None and s != e for s, e in zip(shape, example, strict=True)
        ):
            want = "(N, " + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise InputError(
                f"{name} has shape {x.shape}, expected {want}; "
                "load_mnist(layout=...) gives 'flat', 'nhwc' (TensorFlow) or 'nchw' (PyTorch)"
            )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{name} contains NaN or infinite values; clean or drop those examples")
    lo, hi = value_range
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        hint = " (0-255 pixels? divide by 255 or use load_mnist(scale='unit'))" if x.max() > 1.5 else ""
        raise InputError(f"{name} must lie in [{lo}, {hi}], got [{x.min():.3g}, {x.max():.3g}]{hint}")
    return x


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive (integer, if asked) number."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not np.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise InputError(f"{name} must be {kind}, got {value!r}")
