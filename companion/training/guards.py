"""Guards the training loop checks after every epoch: it stops a run that can no longer learn.

A guard takes the history so far and returns a message when training went wrong, else ``None``.
The loop raises :class:`TrainingFailed` with that message and the epoch of the last good checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

History = Mapping[str, Sequence]
Guard = Callable[[History], "str | None"]


class TrainingFailed(RuntimeError):
    """A guard stopped training (a loss became NaN or infinite, or the discriminator won outright).

    The checkpoint on disk, if any, is from before the failure and can be resumed with other settings.
    """


NOT_METRICS = ("seconds", "train_seconds", "steps")


def finite_losses(history: History) -> str | None:
    """A message when the last epoch's value of any metric (losses, D's outputs, ...) is NaN or infinite."""
    bad = {
        name: values[-1]
        for name, values in history.items()
        if name not in NOT_METRICS and values and not math.isfinite(values[-1])
    }
    if not bad:
        return None
    shown = ", ".join(f"{name}={value}" for name, value in bad.items())
    return f"{shown}: lower the learning rate, check the images lie in [0, 1], and check no weight is NaN"


def discriminator_won(patience: int = 3, threshold: float = 1e-3) -> Guard:
    """A guard for GANs: D(G(z)) below ``threshold`` for ``patience`` epochs leaves G almost no gradient."""

    def guard(history: History) -> str | None:
        recent = list(history.get("d_fake", []))[-patience:]
        if len(recent) == patience and max(recent) < threshold:
            return (
                f"the discriminator has won: D(G(z)) < {threshold:g} for {patience} epochs, so G gets no "
                "signal; lower D's learning rate, add dropout or label smoothing, or restart from a checkpoint"
            )
        return None

    return guard
