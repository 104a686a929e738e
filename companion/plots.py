"""Figures every chapter uses: image grids, loss curves and training GIFs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def to_hw(images: np.ndarray) -> np.ndarray:
    """Any MNIST-like batch -- (N, 784), (N, 28, 28), (N, 28, 28, 1), (N, 1, 28, 28) -> (N, 28, 28)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 784:
        return x.reshape(-1, 28, 28)
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0]
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(
        f"cannot read images of shape {x.shape}; expected (N, 784), (N, H, W), (N, H, W, 1) or (N, 1, H, W)"
    )


def tile(images: np.ndarray, ncols: int = 8, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one 2-d array, row by row, with ``pad`` pixels between."""
    x = to_hw(images)
    n, h, w = x.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), pad_value, np.float32)
    for i, img in enumerate(x):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = (
            img
        )
    return out


def image_grid(
    images: np.ndarray,
    *,
    ncols: int = 8,
    title: str | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    ax: plt.Axes | None = None,
    size: float = 0.6,
) -> plt.Figure:
    """Show a batch of images as one grid; ``value_range`` is the black..white range."""
    grid = tile(images, ncols=ncols, pad_value=value_range[1])
    if ax is None:
        nrows = -(-len(to_hw(images)) // ncols)
        _, ax = plt.subplots(figsize=(size * ncols + 0.2, size * nrows + (0.4 if title else 0.2)))
    ax.imshow(grid, cmap="gray", vmin=value_range[0], vmax=value_range[1])
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure  # type: ignore[return-value]


def image_rows(
    rows: Mapping[str, np.ndarray],
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    size: float = 0.9,
) -> plt.Figure:
    """One labelled row per entry, e.g. ``{"noisy": a, "denoised": b, "original": c}``."""
    n = max(len(to_hw(v)) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 1.2, size * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c, img in enumerate(to_hw(images)):
            axes[r, c].imshow(img, cmap="gray", vmin=value_range[0], vmax=value_range[1])
        for c in range(n):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            for spine in axes[r, c].spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def loss_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str | None = None,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    logy: bool = False,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Plot several runs on one axes: ``{"TensorFlow": {"train": [...], "val": [...]}, ...}``.

    Each run keeps one colour; its series are told apart by line style.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = ["-", "--", ":", "-."]
    for color_index, (run, series) in enumerate(runs.items()):
        color = f"C{color_index}"
        for style, (name, values) in zip(styles * 4, series.items(), strict=False):
            steps = np.arange(1, len(values) + 1)
            ax.plot(steps, values, style, color=color, label=f"{run} {name}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.figure.tight_layout()  # type: ignore[union-attr]
    return ax.figure  # type: ignore[return-value]


def training_gif(
    frames: Sequence[np.ndarray],
    path: str | os.PathLike,
    *,
    ncols: int = 4,
    scale: int = 4,
    seconds_per_frame: float = 0.4,
    value_range: tuple[float, float] = (0.0, 1.0),
    captions: Sequence[str] | None = None,
) -> Path:
    """Write an animated GIF, one frame per batch of images (e.g. one per epoch).

    Each frame is tiled into a grid and upscaled ``scale`` times with nearest-neighbour
    so that 28-pixel digits stay crisp and visible in the HTML book. ``captions`` (one per
    frame, e.g. "epoch 12") are written in a band above the grid, so a still frame says what
    it shows. Returns the path.
    """
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("training_gif needs at least one frame")
    if captions is not None and len(captions) != len(frames):
        raise ValueError(
            f"training_gif got {len(captions)} captions for {len(frames)} frames; give one per frame"
        )
    lo, hi = value_range
    pictures = []
    for index, batch in enumerate(frames):
        grid = (tile(batch, ncols=ncols, pad_value=hi) - lo) / (hi - lo)
        grid = np.clip(grid * 255.0, 0, 255).astype(np.uint8)
        picture = np.kron(grid, np.ones((scale, scale), np.uint8))
        if captions is not None:
            picture = np.concatenate([_caption_band(captions[index], picture.shape[1]), picture])
        pictures.append(picture)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, pictures, duration=seconds_per_frame, loop=0)  # type: ignore[arg-type]
    return path


def _caption_band(text: str, width: int, height: int = 18) -> np.ndarray:
    """A white band with ``text`` in black, ``width`` pixels wide (Pillow's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("L", (width, height), 255)
    ImageDraw.Draw(band).text((4, 3), text, fill=0, font=ImageFont.load_default())
    return np.asarray(band, dtype=np.uint8)
