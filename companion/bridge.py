"""Copy weights between matching Keras and PyTorch models (parity checks and chapters).

This is the one module that imports both frameworks; ``companion.tensorflow`` and
``companion.torch`` never import each other. Layers are paired by name when both
models use the same names, otherwise in order; each pair must be of matching kinds:

=====================  ======================  =========================================
Keras                  PyTorch                 weight layout
=====================  ======================  =========================================
Dense                  Linear                  (in, out) <-> (out, in)
Conv2D                 Conv2d                  (kh, kw, in, out) <-> (out, in, kh, kw)
Conv2DTranspose        ConvTranspose2d         (kh, kw, out, in) <-> (in, out, kh, kw)
BatchNormalization     BatchNorm1d/2d          gamma, beta, moving mean/var <-> weight,
                                               bias, running_mean, running_var
=====================  ======================  =========================================
"""

from __future__ import annotations

from collections.abc import Iterator

import companion.tensorflow  # noqa: F401  # first: Keras on TensorFlow, start-up log silenced

# isort: split
import keras
import numpy as np
import torch
from torch import nn

_PAIRS = {
    keras.layers.Dense: nn.Linear,
    keras.layers.Conv2D: nn.Conv2d,
    keras.layers.Conv2DTranspose: nn.ConvTranspose2d,
    keras.layers.BatchNormalization: (nn.BatchNorm1d, nn.BatchNorm2d),
}
_TORCH_KINDS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm1d, nn.BatchNorm2d)


def _keras_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Layers that own weights, depth first, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            yield from _keras_layers(layer)
        elif layer.weights:
            yield layer


def _torch_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in module.named_modules() if isinstance(m, _TORCH_KINDS)]


def _check_kinds(keras_model: object, torch_model: object) -> None:
    if not isinstance(keras_model, keras.layers.Layer):
        raise TypeError(
            f"the Keras side must be a Keras model, got {type(keras_model).__name__}; "
            "pass (keras_model, torch_model) in that order"
        )
    if not isinstance(torch_model, nn.Module):
        raise TypeError(f"the PyTorch side must be an nn.Module, got {type(torch_model).__name__}")


def fans(kernel_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Keras kernel shape, as Keras' Glorot initialiser counts them."""
    receptive = int(np.prod(kernel_shape[:-2])) if len(kernel_shape) > 2 else 1
    return kernel_shape[-2] * receptive, kernel_shape[-1] * receptive


def paired_layers(
    keras_model: keras.Model, torch_model: nn.Module
) -> list[tuple[keras.layers.Layer, nn.Module]]:
    """The (Keras layer, PyTorch module) pairs whose weights correspond, checked to be of matching kinds."""
    _check_kinds(keras_model, torch_model)
    k_layers = list(_keras_layers(keras_model))
    t_modules = _torch_modules(torch_model)
    if len(k_layers) != len(t_modules):
        raise ValueError(
            f"the models differ: Keras has {len(k_layers)} layers with weights "
            f"({[type(k).__name__ for k in k_layers]}), PyTorch has {len(t_modules)} "
            f"({[type(m).__name__ for _, m in t_modules]})"
        )
    by_name = {name.split(".")[-1]: m for name, m in t_modules}
    if {k.name for k in k_layers} == set(by_name):
        pairs = [(k, by_name[k.name]) for k in k_layers]
    else:
        pairs = [(k, m) for k, (_, m) in zip(k_layers, t_modules, strict=True)]
    for k, m in pairs:
        kind = next((t for kt, t in _PAIRS.items() if type(k) is kt), None)
        if kind is None or not isinstance(m, kind):  # type: ignore[arg-type]
            raise ValueError(
                f"cannot pair Keras {type(k).__name__} {k.name!r} with PyTorch {type(m).__name__}"
            )
    return pairs


def torch_tensors(m: nn.Module) -> list[torch.Tensor]:
    """The tensors of a PyTorch layer in Keras' order (batch norm: scale, offset, mean, variance)."""
    batch_norm = isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
    names = ("weight", "bias", "running_mean", "running_var") if batch_norm else ("weight", "bias")
    return [t for t in (getattr(m, name) for name in names) if isinstance(t, torch.Tensor)]


def _to_torch_layout(m: nn.Module, arrays: list[np.ndarray]) -> list[np.ndarray]:
    kernel, rest = arrays[0], arrays[1:]
    if isinstance(m, nn.Linear):
        kernel = kernel.T
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel = kernel.transpose(3, 2, 0, 1)
    return [kernel, *rest]


def _to_keras_layout(m: nn.Module, arrays: list[np.ndarray]) -> list[np.ndarray]:
    kernel, rest = arrays[0], arrays[1:]
    if isinstance(m, nn.Linear):
        kernel = kernel.T
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel = kernel.transpose(2, 3, 1, 0)
    return [kernel, *rest]


def keras_to_torch(keras_model: keras.Model, torch_model: nn.Module) -> nn.Module:
    """Copy every weight (and batch-norm statistic) of ``keras_model`` into ``torch_model``.

    Every pair is checked before anything is written: a mismatch leaves ``torch_model`` untouched.
    """
    plan = []
    for k, m in paired_layers(keras_model, torch_model):
        arrays = _to_torch_layout(m, k.get_weights())
        targets = torch_tensors(m)
        if len(arrays) != len(targets):
            raise ValueError(
                f"{k.name!r}: Keras has {len(arrays)} weights, PyTorch {len(targets)} (bias on one side only?)"
            )
        for target, array in zip(targets, arrays, strict=True):
            if tuple(target.shape) != array.shape:
                raise ValueError(
                    f"{k.name!r}: shape {array.shape} does not fit PyTorch {tuple(target.shape)}"
                )
            plan.append((target, array))
    with torch.no_grad():
        for target, array in plan:
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return torch_model


def torch_to_keras(torch_model: nn.Module, keras_model: keras.Model) -> keras.Model:
    """Copy every weight (and batch-norm statistic) of ``torch_model`` into ``keras_model``.

    Every pair is checked before anything is written: a mismatch leaves ``keras_model`` untouched.
    """
    _check_kinds(keras_model, torch_model)
    plan = []
    for k, m in paired_layers(keras_model, torch_model):
        arrays = [t.detach().cpu().numpy() for t in torch_tensors(m)]
        arrays = _to_keras_layout(m, arrays)
        expected = [tuple(w.shape) for w in k.get_weights()]
        if [a.shape for a in arrays] != expected:
            raise ValueError(
                f"{k.name!r}: PyTorch shapes {[a.shape for a in arrays]} do not fit Keras {expected}"
            )
        plan.append((k, arrays))
    for k, arrays in plan:
        k.set_weights(arrays)
    return keras_model
