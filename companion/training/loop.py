"""The one training loop of the course: every model of every chapter trains through :func:`fit`.

The loop is framework-neutral. It owns the epochs, the seeded random streams, the batch order,
the history, progress lines, the guards, checkpoint order and resume. A framework hands it a
:class:`Trainer` (``companion.tensorflow.training.Trainer`` or ``companion.torch.training.Trainer``):
the model's train step, the device, and checkpoint I/O. A model hands it a :class:`Plan` (which
arrays the steps index into, and what each step draws on the host, such as noise) and, when it
keeps more than losses, a :class:`Monitor`.

Random streams: epoch ``e`` of a run seeded ``s`` shuffles with ``epoch_rng(s, e, 0)`` and draws
every step's host inputs from ``epoch_rng(s, e, 1)``. Both frameworks therefore see the same
batches and the same noise, and a resumed run sees exactly what an unbroken one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from companion.training.guards import NOT_METRICS, Guard, TrainingFailed, finite_losses
from companion.training.progress import batches, epoch_line, should_log
from companion.training.run_folder import RunFolder
from companion.validation import InputError, check_positive

History = dict[str, list]
TIMING = NOT_METRICS  # history entries that are not metrics


class Trainer(Protocol):
    """What a framework supplies for one model: device, data upload, the train step, checkpoint I/O."""

    framework: str
    device: Any  # a TensorFlow device string or a torch.device

    def upload(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Put the training arrays on the device once; steps then index into them."""

    def step(self, index: np.ndarray, inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """One update from the rows ``index`` of the uploaded arrays plus per-step host ``inputs``;
        returns the step's metrics as framework scalars (summed by the loop, read once per epoch)."""

    def to_floats(self, values: Mapping[str, Any]) -> dict[str, float]:
        """Framework scalars -> Python floats (one device-to-host read)."""

    def save_state(self, folder: Any) -> None:
        """Write weights, optimiser state and random-number state into ``folder``."""

    def load_state(self, folder: Any) -> None:
        """Read what :meth:`save_state` wrote."""


class Monitor:
    """Hooks around the epochs for what a model keeps or measures beyond its step metrics.

    The default does nothing. ``after_epoch`` returns extra per-epoch metrics (a validation loss);
    ``state``/``load_state`` are arrays saved with every checkpoint (sample frames) and restored on
    resume; ``write_outputs`` writes derived files (a GIF) after each checkpoint.
    """

    def before_epoch(self, epoch: int) -> None:
        return None

    def after_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
        return None

    def write_outputs(self, run: RunFolder, epoch: int) -> None:
        return None


@dataclass
class Plan:
    """What every step of an epoch gets.

    ``arrays`` (same length N, in the framework's layout) are uploaded once; each step takes the rows
    of one batch of a fresh permutation. ``inputs(index, rng)`` returns arrays drawn on the host for
    that batch (noise, corrupted inputs), from the epoch's input stream. ``drop_last`` skips a last
    short batch; ``steps_per_epoch`` caps the steps (smoke tests).
    """

    arrays: dict[str, np.ndarray]
    batch_size: int
    drop_last: bool = False
    steps_per_epoch: int | None = None
    inputs: Callable[[np.ndarray, np.random.Generator], dict[str, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size, integer=True)
        lengths = {len(a) for a in self.arrays.values()}
        if len(lengths) != 1:
            raise InputError(f"the training arrays differ in length: {sorted(lengths)}")
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)
        if self.steps == 0:
            raise InputError(
                f"batch_size {self.batch_size} exceeds the {self.n} training images; use a smaller batch_size"
            )

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def steps(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        steps = full if self.drop_last or rest == 0 else full + 1
        return steps if self.steps_per_epoch is None else min(steps, self.steps_per_epoch)


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of epoch ``epoch`` (0: shuffling, 1: step inputs; epoch 0: set-up)."""
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def check_seed(seed: object) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def fit(
    trainer: Trainer,
    plan: Plan,
    *,
    epochs: int,
    seed: int = 0,
    run: RunFolder | None = None,
    checkpoint_every: int = 1,
    log_every: int = 1,
    monitor: Monitor | None = None,
    guards: Sequence[Guard] = (finite_losses,),
) -> History:
    """Train up to ``epochs`` (counting epochs a resumed run already did); return the history.

    The history maps each metric to one value per epoch (step metrics are means over the epoch's
    images), plus ``seconds`` (whole epoch), ``train_seconds`` (the steps alone) and ``steps``.
    With an open ``run`` folder, a checkpoint is written every ``checkpoint_every`` epochs and after
    the last, and training resumes from the folder's latest checkpoint.
    """
    check_positive("epochs", epochs, integer=True)
    check_positive("checkpoint_every", checkpoint_every, integer=True)
    if not isinstance(log_every, (int, np.integer)) or log_every < 0:
        raise InputError(f"log_every must be an integer >= 0 (0: silent), got {log_every!r}")
    seed = check_seed(seed)
    monitor = monitor or Monitor()
    trainer.upload(plan.arrays)
    start: int = 0
    history: History = {}
    if run is not None:
        start, history, kept = run.restore(trainer)
        if start:
            monitor.load_state(kept, start)
            if start >= epochs:
                if log_every:
                    print(
                        f"{run.path}: already trained for {start} epochs (asked for {epochs}); nothing to do"
                    )
            elif log_every:
                print(f"resuming {run.path} after epoch {start}")
    for epoch in range(start + 1, epochs + 1):
        began = time.perf_counter()
        order = epoch_rng(seed, epoch, 0).permutation(plan.n)
        input_rng = epoch_rng(seed, epoch, 1)
        monitor.before_epoch(epoch)
        sums: dict[str, Any] = {}
        seen = 0
        for i in batches(range(plan.steps), total=plan.steps, desc=f"epoch {epoch}/{epochs}"):
            index = order[i * plan.batch_size : (i + 1) * plan.batch_size]
            inputs = plan.inputs(index, input_rng) if plan.inputs is not None else {}
            for name, value in trainer.step(index, inputs).items():
                sums[name] = sums[name] + value * len(index) if name in sums else value * len(index)
            seen += len(index)
        means = {name: value / seen for name, value in trainer.to_floats(sums).items()}
        train_seconds = time.perf_counter() - began
        means.update(monitor.after_epoch(epoch))
        means.update(seconds=time.perf_counter() - began, train_seconds=train_seconds, steps=plan.steps)
        for name, value in means.items():
            history.setdefault(name, []).append(value)
        for guard in guards:
            problem = guard(history)
            if problem is not None:
                last = f"epoch {run.latest()}" if run is not None and run.latest() else "none"
                raise TrainingFailed(f"training failed at epoch {epoch}: {problem} (last checkpoint: {last})")
        if should_log(epoch, epochs, log_every):
            shown = {name: value for name, value in means.items() if name not in TIMING}
            print(epoch_line(epoch, epochs, shown, means["seconds"]))
        if run is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            run.save(trainer, epoch, history, monitor.state())
            monitor.write_outputs(run, epoch)
    return history


def seconds_per_step(history: Mapping[str, Sequence[float]], first: int = 0) -> float:
    """Median over epochs (from index ``first``) of step-loop seconds per step; the first epoch of a
    call (tracing, warm-up) is left out when there are others."""
    per_step = [
        s / n for s, n in zip(history["train_seconds"][first:], history["steps"][first:], strict=True)
    ]
    timed = per_step[1:] if len(per_step) > 1 else per_step
    return float(np.median(timed)) if timed else float("nan")
