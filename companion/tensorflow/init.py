"""The same start in both frameworks: Keras' default initialisation, which PyTorch models copy.

Keras draws every Dense and convolution kernel from Glorot-uniform, U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)), and starts biases at zero. The package's Keras models keep those
defaults; ``companion.torch.init`` applies the same to PyTorch models. :func:`initialize` draws a
Keras model's weights afresh that way, for example with a seed of its own.
"""

from __future__ import annotations

from typing import TypeVar

import keras
import numpy as np

KERNEL_LAYERS = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)
Model = TypeVar("Model", bound=keras.Model)


def initialize(model: Model, seed: int | None = None) -> Model:
    """Glorot-uniform kernels and zero biases for every dense and convolution layer of ``model``
    (batch norm keeps scale 1 and offset 0); returns ``model``.

    ``seed`` draws from a private stream, leaving Keras' global random state alone.
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, KERNEL_LAYERS):
            kernel = layer.kernel
            limit = glorot_limit(kernel)
            kernel.assign(rng.uniform(-limit, limit, kernel.shape).astype(np.float32))
            if layer.bias is not None:
                layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
    return model


def glorot_limit(kernel: keras.Variable) -> float:
    """The bound a of Glorot-uniform for a Keras kernel (the same number PyTorch gets for its layout)."""
    shape = tuple(kernel.shape)
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return float(np.sqrt(6.0 / (fan_in + fan_out)))
