"""Divergence guard shared by every GAN training loop, TensorFlow and PyTorch alike."""

from __future__ import annotations

import math


class GanDivergedError(RuntimeError):
    """A loss became NaN or infinite: training stopped instead of producing garbage."""


def check_finite(metrics: dict[str, float], epoch: int, step: int) -> None:
    """Raise :class:`GanDivergedError` when a loss is NaN or infinite."""
    bad = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if bad:
        raise GanDivergedError(
            f"training diverged at epoch {epoch}, step {step}: "
            + ", ".join(f"{k}={v}" for k, v in bad.items())
            + ". Lower the learning rate, check the images lie in [0, 1], and check no weight is NaN."
        )
