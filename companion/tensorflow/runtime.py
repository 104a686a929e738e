"""Device choice for TensorFlow: the GPU when one is visible, else the CPU."""

from __future__ import annotations

import tensorflow as tf


def device() -> str:
    """TensorFlow device string to train on: ``"/GPU:0"`` when a GPU is visible, else ``"/CPU:0"``."""
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def describe() -> str:
    """One line naming the framework version and the device it will use."""
    return f"TensorFlow {tf.__version__} on {device()}"
