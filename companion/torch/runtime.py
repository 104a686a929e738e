"""Device choice for PyTorch: CUDA when available, else the CPU."""

from __future__ import annotations

import torch


def device() -> torch.device:
    """PyTorch device to train on: ``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe() -> str:
    """One line naming the framework version and the device it will use."""
    return f"PyTorch {torch.__version__} on {device()}"
