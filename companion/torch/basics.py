"""Chapter 1: one tiny classifier, 784 -> 64 (ReLU) -> 10 logits, written the PyTorch ways.

``companion.tensorflow.basics`` builds the same network; the parameter counts match and
``companion.bridge`` copies weights between them.
"""

from __future__ import annotations

import torch
from torch import nn

from companion.torch.init import initialize

INPUTS, HIDDEN, CLASSES = 784, 64, 10


def tiny_sequential() -> nn.Sequential:
    """The network as an ``nn.Sequential`` stack of modules."""
    return initialize(nn.Sequential(nn.Linear(INPUTS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES)))


class TinyModule(nn.Module):
    """The same network as an ``nn.Module`` subclass: layers in ``__init__``, data flow in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(INPUTS, HIDDEN)
        self.logits = nn.Linear(HIDDEN, CLASSES)
        initialize(self)  # Keras' Glorot-uniform start, as on the TensorFlow side

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.relu(self.hidden(pixels)))


class TwoOutputModule(nn.Module):
    """A shared hidden layer feeding two heads: digit logits and a reconstruction of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(INPUTS, HIDDEN)
        self.logits = nn.Linear(HIDDEN, CLASSES)
        self.reconstruction = nn.Linear(HIDDEN, INPUTS)
        initialize(self)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.hidden(pixels))
        return self.logits(hidden), torch.sigmoid(self.reconstruction(hidden))


def tiny_functional() -> TinyModule:
    """PyTorch has no separate functional model API; a module subclass plays that role."""
    return TinyModule()


def two_output_functional() -> TwoOutputModule:
    """The two-headed network, named as on the Keras side."""
    return TwoOutputModule()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters, the figure Keras prints in ``model.summary()``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
