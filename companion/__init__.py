"""Companion package of *Generative Models, Hands-On*.

Framework-neutral code (data, noise, plots, metrics, run settings) lives here;
``companion.tensorflow`` and ``companion.torch`` hold the matching model code.
Importing ``companion`` imports neither framework.
"""

from __future__ import annotations

import os

# Must happen before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from companion.data import MnistDataError, load_mnist
from companion.noise import add_gaussian_noise, sample_latent
from companion.settings import pick, quick_mode, seed_everything

__version__ = "0.1.0"

__all__ = [
    "MnistDataError",
    "add_gaussian_noise",
    "load_mnist",
    "pick",
    "quick_mode",
    "sample_latent",
    "seed_everything",
]
