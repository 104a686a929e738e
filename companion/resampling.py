"""Image resampling in NumPy for the super-resolution section: area downsampling and bicubic upsampling.

:func:`downsample` makes the low-resolution inputs (each output pixel is the mean of a
``factor`` x ``factor`` block, what a camera sensor with bigger pixels would record);
:func:`bicubic_upsample` is the classical baseline every learned upscaler is compared with.

Bicubic interpolation here is Keys' cubic convolution with a = -0.5 (the kernel PIL and
TensorFlow's ``resize_bicubic`` use), applied separably along rows and columns, with pixel-centre
alignment (output pixel i samples the input at (i + 0.5) / factor - 0.5, as image libraries do)
and edge-replicated borders. Images are ``(N, H, W)`` float arrays; outputs are float32.
"""

from __future__ import annotations

import numpy as np

from companion.validation import InputError, check_images, check_positive

KEYS_A = -0.5  # Keys (1981): the choice that makes the interpolant third-order accurate


def _grey_batch(images: np.ndarray, name: str = "images") -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 3:
        raise InputError(
            f"{name} has shape {x.shape}; pass one-channel images (N, H, W), e.g. x.reshape(len(x), 28, 28) "
            "for flat MNIST or x[..., 0] for (N, 28, 28, 1)"
        )
    return check_images(x, name=name, value_range=(-np.inf, np.inf))


def _check_factor(factor: int) -> int:
    check_positive("factor", factor, integer=True)
    return int(factor)


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """``(N, H, W)`` -> ``(N, H / factor, W / factor)``: the mean of each ``factor`` x ``factor`` block.

    ``H`` and ``W`` must be multiples of ``factor`` (28 x 28 MNIST: factor 2 gives 14 x 14, 4 gives 7 x 7).
    """
    factor = _check_factor(factor)
    x = _grey_batch(images)
    n, height, width = x.shape
    if height % factor or width % factor:
        raise InputError(
            f"images of {height}x{width} cannot be cut into {factor}x{factor} blocks; pick a factor that "
            f"divides both sides (for 28x28: 2, 4, 7, 14 or 28)"
        )
    blocks = x.reshape(n, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def keys_kernel(distance: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel at ``distance`` (in input pixels): 1 at 0, 0 at every other
    integer and beyond 2, and weights that sum to 1 for any sampling position."""
    t = np.abs(np.asarray(distance, np.float64))
    near = ((a + 2) * t - (a + 3)) * t * t + 1  # |t| <= 1
    far = (((t - 5) * t + 8) * t - 4) * a  # 1 < |t| < 2
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_matrix(size: int, factor: int, a: float = KEYS_A) -> np.ndarray:
    """The ``(size * factor, size)`` matrix that upsamples one row (or column) of ``size`` pixels.

    Row i holds the four kernel weights of output pixel i at input position (i + 0.5) / factor - 0.5;
    taps beyond the border fall on the edge pixel (edge replication), so every row sums to 1.
    """
    position = (np.arange(size * factor) + 0.5) / factor - 0.5
    first = np.floor(position).astype(np.int64) - 1
    matrix = np.zeros((size * factor, size))
    rows = np.arange(size * factor)
    for tap in range(4):
        source = first + tap
        np.add.at(matrix, (rows, np.clip(source, 0, size - 1)), keys_kernel(position - source, a))
    return matrix


def bicubic_upsample(images: np.ndarray, factor: int, a: float = KEYS_A) -> np.ndarray:
    """``(N, h, w)`` -> ``(N, h * factor, w * factor)`` by bicubic interpolation, clipped to [0, 1].

    The cubic kernel overshoots at sharp edges (values slightly below 0 or above 1); the clip keeps
    the result a valid image, as image libraries do for 8-bit images. ``a = -0.75`` gives OpenCV's
    and PyTorch's variant of the kernel (a little sharper).
    """
    factor = _check_factor(factor)
    x = _grey_batch(images).astype(np.float64)
    rows, cols = bicubic_matrix(x.shape[1], factor, a), bicubic_matrix(x.shape[2], factor, a)
    upsampled = np.einsum("ih,nhw,jw->nij", rows, x, cols, optimize=True)
    return np.clip(upsampled, 0.0, 1.0).astype(np.float32)
