"""Paired images for image-to-image translation (the pix2pix section), made from MNIST digits in NumPy.

Each task turns a digit into an input the network must translate back into the digit:

- ``"outline"``: the stroke's outline (binarised at 0.5, then a morphological gradient: dilation
  minus erosion with a 3x3 cross). Almost one answer per input: the filling is implied by the outline.
- ``"lower_half"``: the digit with its lower half (rows 14-27) blanked. Many digits share a top half
  (a 7 and a 9, a 3 and a 5 ...), so the answer is ambiguous: a network trained on L1 alone draws the
  average of the possible lower halves, a blur, where an adversarial loss pushes it to pick one.

Everything is deterministic and framework-free; the functions take digits ``(N, 28, 28)`` (or one
channel, ``(N, 28, 28, 1)`` / ``(N, 1, 28, 28)``) in [0, 1] and return ``(N, 28, 28)`` float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

from companion.validation import InputError, check_images

TASKS = ("outline", "lower_half")
SIDE = 28
HIDDEN_ROWS = slice(14, 28)  # what hide_lower_half blanks: rows 14-27
THRESHOLD = 0.5  # the outline binarises strokes at this ink level


def as_digits(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Digits ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)`` in [0, 1] -> float32 ``(N, 28, 28)``."""
    x = np.asarray(images)
    if x.ndim == 4 and 1 in (x.shape[1], x.shape[3]) and x.size == len(x) * SIDE * SIDE:
        x = x.reshape(len(x), SIDE, SIDE)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise InputError(
            f"{name} has shape {x.shape}; pass 28x28 digits as (N, 28, 28), (N, 28, 28, 1) or (N, 1, 28, 28), "
            "e.g. load_mnist(layout='hw')"
        )
    return check_images(x, name=name)


def _cross_neighbours(mask: np.ndarray) -> list[np.ndarray]:
    """``mask`` (N, H, W) and its four shifts by one pixel (up, down, left, right), zeros shifted in."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    return [
        padded[:, 1:-1, 1:-1],
        padded[:, :-2, 1:-1],
        padded[:, 2:, 1:-1],
        padded[:, 1:-1, :-2],
        padded[:, 1:-1, 2:],
    ]


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation of boolean masks (N, H, W) with the 3x3 cross: a pixel or any 4-neighbour is set."""
    return np.logical_or.reduce(_cross_neighbours(mask))


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion with the 3x3 cross: a pixel and all its 4-neighbours are set (outside counts as unset)."""
    return np.logical_and.reduce(_cross_neighbours(mask))


def outline(images: np.ndarray) -> np.ndarray:
    """The outline of each digit's strokes, 1 on the outline and 0 elsewhere, float32 ``(N, 28, 28)``.

    Strokes are the pixels >= 0.5; the outline is their morphological gradient with the 3x3 cross,
    dilation minus erosion: the pixels just outside and just inside the stroke's edge.
    """
    strokes = as_digits(images) >= THRESHOLD
    return (dilate(strokes) & ~erode(strokes)).astype(np.float32)


def hide_lower_half(images: np.ndarray) -> np.ndarray:
    """The digits with rows 14-27 set to 0 (the top half kept as it is), float32 ``(N, 28, 28)``."""
    masked = as_digits(images).copy()
    masked[:, HIDDEN_ROWS] = 0.0
    return masked


def make_pairs(images: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` for ``task`` (one of :data:`TASKS`): targets are the digits themselves,
    inputs their :func:`outline` or their :func:`hide_lower_half`; both float32 ``(N, 28, 28)`` in [0, 1]."""
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    targets = as_digits(images)
    inputs = outline(targets) if task == "outline" else hide_lower_half(targets)
    return inputs, targets.copy()
