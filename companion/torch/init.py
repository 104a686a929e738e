"""The same start in both frameworks: Keras' default initialisation for PyTorch models.

Keras draws every Dense and convolution kernel from Glorot-uniform, U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)), and starts biases at zero; PyTorch's layers default to
Kaiming-uniform kernels and non-zero biases, up to 3x wider for some layers. Every PyTorch model
of the package is passed through :func:`initialize`, so a recipe starts from the same weight
distribution in both frameworks (``tests/test_mirror.py`` compares per-layer statistics).
``companion.tensorflow.init`` draws Keras models afresh the same way.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

KERNEL_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
Model = TypeVar("Model", bound=nn.Module)


def initialize(model: Model, seed: int | None = None) -> Model:
    """Glorot-uniform kernels and zero biases for every linear and convolution layer of ``model``
    (batch norm keeps scale 1 and offset 0, as in Keras); returns ``model``.

    ``seed`` draws from a private generator, leaving PyTorch's global random state alone.
    """
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, KERNEL_LAYERS):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model


def glorot_limit(kernel: torch.Tensor) -> float:
    """The bound a of Glorot-uniform for a PyTorch kernel (the same number Keras uses for its layout)."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(kernel)
    return (6.0 / (fan_in + fan_out)) ** 0.5
