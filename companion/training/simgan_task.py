"""What SimGAN trains on, written once for both frameworks (refining synthetic digits, MNIST scale).

Shrivastava et al. (2017), "Learning from Simulated and Unsupervised Images through Adversarial
Training": a refiner R maps a synthetic image x (here a typeset digit from
:mod:`companion.synthetic_digits`) to a refined R(x) that a local discriminator D cannot tell
from unlabelled real images (MNIST), while a self-regularisation term |R(x) - x|_1 keeps the
refined image close to its input, so the synthetic label still holds. A classifier trained on
refined digits should then read real digits better than one trained on the raw synthetic digits.

``companion.{tensorflow,torch}.simgan`` build R, D and the train step; this module holds the rest:
the settings and their checks, the **history buffer** of earlier refined images, the run settings
stored in ``run.json``, the one loop, and the paper's measure (:func:`train_digit_classifier_on`).

The paper's three ingredients:

- the refiner is fully convolutional and ResNet-style (a 3x3 convolution, residual blocks of two
  3x3 convolutions, a 1x1 convolution to one channel, tanh): it edits pixels locally and cannot
  easily redraw a digit; images are in [-1, 1] inside the networks;
- the local adversarial loss: D gives one logit per 18x18 patch (a 7x7 grid), and every loss is a
  mean over patches, so R must make every patch look real, not just the whole;
- the history buffer: half of each batch of refined images D sees comes from a buffer of images
  refined by earlier versions of R, so D keeps rejecting old artefacts and R cannot cycle back
  to them. After each step, half of the new refined batch replaces random buffer slots.

Everything random on the host (which real digits a step sees, which buffer images, which slots are
replaced) is drawn from the loop's seeded per-epoch stream, and the buffer is saved with every
checkpoint, so both frameworks see identical buffers and a resumed run equals an unbroken one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from companion.image_pairs import as_digits
from companion.training import loop, tasks
from companion.training.guards import finite_losses
from companion.training.pix2pix_task import receptive_field
from companion.training.run_folder import saved_run
from companion.validation import InputError, check_positive

History = loop.History
# lambda of the self-regularisation, on the mean |R(x) - x| over pixels in [-1, 1]. Thickening every
# stroke of a digit by a pixel moves about 0.1 of that mean, costing 0.1 next to an adversarial loss
# of order 1: R may change the style freely; redrawing the digit (0.3-0.5) costs as much as fooling D gains.
SELF_REGULARISATION = 1.0
FILTERS = 32  # the refiner's width (the paper: 64); the discriminator uses 1x and 2x
BLOCKS = 3  # residual blocks in the refiner (the paper: 4); receptive field 3 + 2 x 2 x 3 = 15 pixels
LEAKY_SLOPE = 0.2  # the discriminator's LeakyReLU slope
ADAM_EPSILON = 1e-7  # Keras' default, passed to PyTorch's Adam too
# The local discriminator's convolutions (4x4 stride 2, 4x4 stride 2, 3x3 stride 1): 28 -> 14 -> 7 -> 7x7 logits.
PATCH_KERNELS = (4, 4, 3)
PATCH_STRIDES = (2, 2, 1)
PATCH_GRID = 7
PATCH_RECEPTIVE_FIELD = receptive_field(PATCH_KERNELS, PATCH_STRIDES)  # 18: each logit judges an 18x18 patch
# The paper keeps a buffer of B images, fixed; 1,024 refined digits are 32 batches of 64 (16 new ones per step).
HISTORY_SIZE = 1024
METRICS = ("r_adv", "r_reg", "d_loss")  # per-epoch history of a SimGAN run
GIVEN_MODEL_KEYS = ("lr", "beta1", "self_regularisation")  # what a model given as gan= must share


# ---------------------------------------------------------------------- checks


def check_self_regularisation(weight: float) -> float:
    """The self-regularisation weight lambda: a finite number >= 0 (0: the adversarial loss alone)."""
    number = isinstance(weight, (int, float, np.integer, np.floating)) and not isinstance(weight, bool)
    if not number or not np.isfinite(weight) or weight < 0:
        raise InputError(
            f"self_regularisation must be a finite number >= 0 (the default lambda is {SELF_REGULARISATION:g}), "
            f"got {weight!r}"
        )
    return float(weight)


def check_architecture(filters: int, blocks: int) -> None:
    """``filters`` a positive integer, ``blocks`` (residual blocks) an integer >= 0."""
    check_positive("filters", filters, integer=True)
    if not isinstance(blocks, (int, np.integer)) or isinstance(blocks, bool) or blocks < 0:
        raise InputError(f"blocks must be an integer >= 0 (residual blocks in the refiner), got {blocks!r}")


def check_domains(synthetic: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic and real digits in [0, 1] (any one-channel layout) -> float32 ``(N, 28, 28)`` in [-1, 1].

    The two sets are unpaired, so their sizes may differ.
    """
    x, y = as_digits(synthetic, "synthetic"), as_digits(real, "real")
    return tasks.to_data_range(x, "tanh"), tasks.to_data_range(y, "tanh")


# ---------------------------------------------------------------------- settings


class SimganSettings(TypedDict, total=False):
    """Keyword arguments of ``simgan.train`` on both sides (all optional)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    self_regularisation: float
    history: bool
    history_size: int
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    gan: Any


@dataclass(frozen=True)
class SimganConfig:
    """``simgan.train``'s settings and defaults: Adam 2e-4 / beta_1 0.5 (the course's GAN recipe; the
    paper used SGD), batches of 64, lambda = :data:`SELF_REGULARISATION`.

    An epoch runs ``N // batch_size`` steps over the shuffled synthetic digits (capped by
    ``steps_per_epoch``); each step also sees ``batch_size`` real digits drawn afresh. With
    ``history=True`` half of D's refined batch comes from a buffer of ``history_size`` earlier
    refined images (``False``: the ablation without it). ``seed`` seeds the initial weights, the
    shuffling and every draw. With ``out_dir`` checkpoints (buffer included) are written every
    ``checkpoint_every`` epochs and at the end; the same ``out_dir`` resumes. ``gan`` trains a given
    ``SimGAN`` (built with the same ``lr``, ``beta1`` and ``self_regularisation``).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    self_regularisation: float = SELF_REGULARISATION
    history: bool = True
    history_size: int = HISTORY_SIZE
    seed: int = 0
    steps_per_epoch: int | None = None
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int = 1
    overwrite: bool = False
    log_every: int = 1
    device: str | None = None
    gan: Any = None

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        if self.batch_size < 2 or self.batch_size % 2:
            raise InputError(
                f"batch_size must be an even number >= 2 (half of D's refined batch comes from the history), "
                f"got {self.batch_size!r}"
            )
        check_positive("lr", self.lr)
        tasks.check_beta1(self.beta1)
        check_self_regularisation(self.self_regularisation)
        if not isinstance(self.history, bool):
            raise InputError(
                f"history must be True (the paper's buffer) or False (without it), got {self.history!r}"
            )
        check_positive("history_size", self.history_size, integer=True)
        if self.history_size < self.batch_size // 2:
            raise InputError(
                f"history_size {self.history_size} holds fewer than the {self.batch_size // 2} images a step draws "
                f"from it; use history_size >= batch_size / 2 (default {HISTORY_SIZE})"
            )
        loop.check_seed(self.seed)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)


def simgan_settings(settings: Mapping[str, Any]) -> SimganConfig:
    """:class:`SimganConfig` from ``simgan.train``'s keyword arguments, unknown names refused."""
    unknown = sorted(set(settings) - {f.name for f in fields(SimganConfig)})
    if unknown:
        raise TypeError(f"simgan.train got unexpected settings {unknown}; see {__name__}.SimganConfig")
    return SimganConfig(**settings)


# ---------------------------------------------------------------------- the history buffer


class HistoryBuffer:
    """Earlier refined images, in the framework's layout (one image: ``shape``), kept in NumPy.

    :meth:`draw` gives a step ``half`` images sampled without replacement (and a weight 1), or
    zeros and weight 0 while the buffer holds fewer than ``half``; it also picks the slots that
    :meth:`push` then fills with the step's new refined images: free slots first, then random ones.
    All choices come from the ``rng`` passed in (the loop's per-epoch stream).
    """

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        check_positive("size", size, integer=True)
        self.images = np.zeros((int(size), *shape), np.float32)
        self.filled = 0
        self._slots: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.images)

    def draw(self, half: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(history images (half, ...), weight (1,) float32)`` for the next step; picks its push slots."""
        if self.filled >= half:
            history = self.images[rng.choice(self.filled, half, replace=False)]
            weight = np.ones(1, np.float32)
        else:
            history = np.zeros((half, *self.images.shape[1:]), np.float32)
            weight = np.zeros(1, np.float32)
        free = np.arange(self.filled, min(self.filled + half, self.size))
        taken = rng.choice(self.filled, half - len(free), replace=False) if len(free) < half else free[:0]
        self._slots = np.concatenate([free, taken]).astype(np.int64)
        return history, weight

    def push(self, refined: np.ndarray) -> None:
        """Put the first ``half`` of a step's refined images into the slots :meth:`draw` picked."""
        if self._slots is None:
            raise RuntimeError("push() needs a draw() before it: the slots are picked there")
        slots, self._slots = self._slots, None
        self.images[slots] = np.asarray(refined, np.float32)[: len(slots)]
        self.filled = min(self.size, self.filled + int(np.sum(slots >= self.filled)))

    def state(self) -> dict[str, np.ndarray]:
        return {"history_images": self.images[: self.filled].copy()}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        kept = np.asarray(arrays["history_images"], np.float32)
        if kept.shape[1:] != self.images.shape[1:] or len(kept) > self.size:
            raise InputError(
                f"the saved history buffer has shape {kept.shape}, which does not fit a buffer of "
                f"{self.images.shape}; resume with the history_size the run was trained with"
            )
        self.images[:] = 0.0
        self.images[: len(kept)] = kept
        self.filled = len(kept)
        self._slots = None


class _BufferMonitor(loop.Monitor):
    """Saves the buffer with every checkpoint and restores it on resume."""

    def __init__(self, buffer: HistoryBuffer | None) -> None:
        self.buffer = buffer

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.buffer is None else self.buffer.state()

    def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
        if self.buffer is not None:
            self.buffer.load_state(arrays)


class _BufferedTrainer:
    """A framework trainer whose step also returns ``refined``: those go into the buffer, the rest to the loop."""

    def __init__(
        self, inner: loop.Trainer, buffer: HistoryBuffer | None, to_host: Callable[[Any], np.ndarray]
    ):
        self.inner, self.buffer, self.to_host = inner, buffer, to_host
        self.framework, self.device = inner.framework, inner.device

    def upload(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.inner.upload(arrays)

    def step(self, index: np.ndarray, inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        metrics = dict(self.inner.step(index, inputs))
        refined = metrics.pop("refined")
        if self.buffer is not None:
            self.buffer.push(self.to_host(refined))
        return metrics

    def to_floats(self, values: Mapping[str, Any]) -> dict[str, float]:
        return self.inner.to_floats(values)

    def save_state(self, folder: Any) -> None:
        self.inner.save_state(folder)

    def load_state(self, folder: Any) -> None:
        self.inner.load_state(folder)


# ---------------------------------------------------------------------- training


def fit_simgan(
    trainer: loop.Trainer,
    synthetic: np.ndarray,
    real: np.ndarray,
    s: SimganConfig,
    architecture: Mapping[str, Any],
    to_host: Callable[[Any], np.ndarray],
) -> History:
    """Train through the one loop on synthetic and real digits in the framework's layout, in [-1, 1].

    ``trainer``'s step takes a batch with ``synthetic``, ``real``, ``history`` (``batch_size / 2``
    buffer images) and ``history_weight`` (``(1,)``: 1 when they are real history, 0 while the
    buffer is still too empty) and returns the metrics plus ``refined``, the batch's refined images;
    ``to_host`` turns those into a NumPy array in the same layout. ``architecture`` (``filters``,
    ``blocks``) goes into ``run.json`` with the settings that change what is trained.
    """
    for name, images in (("synthetic", synthetic), ("real", real)):
        if len(images) < s.batch_size:
            raise InputError(
                f"batch_size {s.batch_size} exceeds the {len(images)} {name} digits; use a smaller batch_size "
                f"or more {name} digits"
            )
    half = s.batch_size // 2
    buffer = HistoryBuffer(s.history_size, synthetic.shape[1:]) if s.history else None
    empty = np.zeros((half, *synthetic.shape[1:]), np.float32)

    def inputs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = rng.choice(len(real), len(index), replace=False)
        history, weight = buffer.draw(half, rng) if buffer is not None else (empty, np.zeros(1, np.float32))
        return {"real": real[rows], "history": history, "history_weight": weight}

    config = {
        "model": "simgan",
        "framework": trainer.framework,
        **{key: architecture[key] for key in ("filters", "blocks")},
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "self_regularisation": float(s.self_regularisation),
        "history": s.history,
        "history_size": int(s.history_size),
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_synthetic": len(synthetic),
        "n_real": len(real),
    }
    plan = loop.Plan(
        {"synthetic": synthetic},
        s.batch_size,
        drop_last=True,
        steps_per_epoch=s.steps_per_epoch,
        inputs=inputs,
    )
    return tasks.fit_in_run_folder(
        _BufferedTrainer(trainer, buffer, to_host),
        plan,
        config,
        out_dir=s.out_dir,
        overwrite=s.overwrite,
        epochs=s.epochs,
        seed=s.seed,
        checkpoint_every=s.checkpoint_every,
        log_every=s.log_every,
        monitor=_BufferMonitor(buffer),
        guards=(finite_losses,),
    )


def simgan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a SimGAN run of ``framework``."""
    return saved_run(out_dir, framework, ("simgan",), "SimGAN")


# ---------------------------------------------------------------------- the paper's measure


def train_digit_classifier_on(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> float:
    """Accuracy on ``(test_images, test_labels)`` (real digits) of a small classifier trained on
    ``(images, labels)``: multinomial logistic regression on the 784 pixels (scikit-learn, no framework).

    The paper's measure of refinement: train on raw synthetic digits, then on refined ones, and test
    both on real digits; the gap to a classifier trained on real digits is the domain gap left.
    Digits are 28x28 in [0, 1] in any one-channel layout; labels integer digits 0-9.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    seed = loop.check_seed(seed)
    x_train, x_test = as_digits(images, "images"), as_digits(test_images, "test_images")
    y_train, y_test = (
        _digit_labels(labels, len(x_train), "labels"),
        _digit_labels(test_labels, len(x_test), "test_labels"),
    )
    if len(np.unique(y_train)) < 2:
        raise InputError("labels hold a single digit; a classifier needs at least two classes to train on")
    classifier = LogisticRegression(C=0.1, max_iter=200, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 200 iterations are enough for the comparison
        classifier.fit(x_train.reshape(len(x_train), -1), y_train)
    return float(np.mean(classifier.predict(x_test.reshape(len(x_test), -1)) == y_test))


def _digit_labels(labels: object, n: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise InputError(
            f"{name} must be {n} integer digits, one per image (shape ({n},)), got dtype {y.dtype} and shape {y.shape}"
        )
    if y.min() < 0 or y.max() > 9:
        raise InputError(f"{name} must be digits 0-9, got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)
