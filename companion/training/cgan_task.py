"""What a conditional GAN trains on, written once for both frameworks (the conditional GAN chapter).

``companion.{tensorflow,torch}.cgan`` build the networks and the train step and call the functions
here for the rest: the label checks (hard labels for training, hard or soft ones for sampling), the
run settings stored in ``run.json``, the per-step noise (drawn from the loop's seeded NumPy stream,
so both frameworks see the same numbers), the per-epoch grid of fixed noise with one row per digit,
and the scores the chapter prints (how often the digit classifier reads the requested digit).

Labels are one-hot vectors, not a learned embedding: no extra weights to copy between the
frameworks, and the generator accepts *soft* label vectors (mixtures such as 0.5 x "3" + 0.5 x "8"),
which the chapter uses to interpolate between classes in label space.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from companion.noise import sample_latent
from companion.training import loop, tasks
from companion.training.guards import discriminator_won, finite_losses
from companion.training.run_folder import RunFolder, saved_run
from companion.validation import InputError, check_positive

History = loop.History
N_CLASSES = 10
NOISE_DIM = 100  # as the DCGAN chapter's generator
N_PER_CLASS = 8  # columns of the per-epoch grid: 8 fixed noise vectors, each drawn once per digit
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")
SOFT_TOLERANCE = 1e-3  # how far a soft label vector's sum may stray from 1


class CganSettings(TypedDict, total=False):
    """Keyword arguments of ``cgan.train`` on both sides (all optional but ``epochs``)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    n_classes: int
    gan: Any


@dataclass(frozen=True)
class CganConfig:
    """``cgan.train``'s settings and defaults: batches of 64, Adam 2e-4 with beta_1 0.5 (the DCGAN paper's).

    ``n_classes=10`` trains the conditional GAN on digits and their labels; ``n_classes=0`` trains its
    unconditional twin (the same networks without the label inputs) on the same data, steps and noise.
    Each epoch shuffles the data, runs ``N // batch_size`` steps (capped by ``steps_per_epoch``) and
    keeps the generator's output for the fixed grid (:func:`grid_noise`). With ``out_dir`` the run is
    saved every ``checkpoint_every`` epochs and at the end; calling again resumes up to ``epochs``.
    ``gan`` trains a given ``CGAN`` (built with the same ``n_classes``) instead of a fresh one.
    """

    epochs: int
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    steps_per_epoch: int | None = None
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int = 5
    overwrite: bool = False
    log_every: int = 1
    device: str | None = None
    n_classes: int = N_CLASSES
    gan: Any = None

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        tasks.check_beta1(self.beta1)
        loop.check_seed(self.seed)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)
        check_n_classes(self.n_classes)


def cgan_settings(settings: Mapping[str, Any]) -> CganConfig:
    """:class:`CganConfig` from ``cgan.train``'s keyword arguments, naming unknown ones."""
    known = {f.name for f in fields(CganConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(
            f"cgan.train got unexpected settings {unknown}; see companion.training.cgan_task.CganConfig"
        )
    if "epochs" not in settings:
        raise TypeError("cgan.train needs epochs=")
    return CganConfig(**settings)


# ---------------------------------------------------------------------- labels


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_n_classes(n_classes: object) -> int:
    """0 (the unconditional twin) or the number of labels (at least 2)."""
    if not _is_integer(n_classes) or n_classes < 0 or n_classes == 1:  # type: ignore[operator]
        raise InputError(
            f"n_classes must be 0 (the unconditional twin) or the number of labels, such as 10; got {n_classes!r}"
        )
    return int(n_classes)  # type: ignore[call-overload]


def one_hot(labels: ArrayLike, n_classes: int = N_CLASSES) -> np.ndarray:
    """Integer labels ``(N,)`` in [0, n_classes) -> float32 one-hot rows ``(N, n_classes)``."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels, np.int64)]


def check_labels(
    labels: object, n: int, n_classes: int = N_CLASSES, name: str = "labels", soft: bool = True
) -> np.ndarray:
    """Labels for ``n`` images as float32 rows ``(n, n_classes)``, checked.

    Accepted: integers ``(n,)`` in [0, n_classes), or vectors ``(n, n_classes)``. With ``soft=True``
    (sampling) a vector may be any probability vector (entries >= 0 summing to 1, such as a mixture
    of two digits); with ``soft=False`` (training) it must be one-hot, because a training image shows
    one digit.
    """
    if labels is None:
        raise InputError(
            f"this conditional GAN needs {name}: one digit in [0, {n_classes}) per image (e.g. the y of "
            "load_mnist), or build the unconditional twin with n_classes=0"
        )
    array = np.asarray(labels)
    if array.ndim == 1:
        if array.dtype.kind not in "iu":
            hint = ""
            if array.dtype.kind == "f" and array.size and np.all(array == np.round(array)):
                hint = f"; convert them with {name}.astype(int)"
            raise InputError(f"{name} must be integers in [0, {n_classes}), got dtype {array.dtype}{hint}")
        if len(array) != n:
            raise InputError(f"{name} has {len(array)} entries for {n} images; pass one label per image")
        if n and (array.min() < 0 or array.max() >= n_classes):
            raise InputError(
                f"{name} must lie in [0, {n_classes}), got [{array.min()}, {array.max()}]; "
                f"MNIST digits are 0-{n_classes - 1}"
            )
        return one_hot(array, n_classes)
    if array.ndim != 2 or array.shape[1] != n_classes or array.dtype.kind not in "fiu":
        raise InputError(
            f"{name} has shape {array.shape}; pass integers ({n},) or label vectors ({n}, {n_classes})"
        )
    if len(array) != n:
        raise InputError(f"{name} has {len(array)} rows for {n} images; pass one label per image")
    vectors = array.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise InputError(f"{name} contains NaN or infinite values")
    if not soft:
        hard = np.isin(vectors, (0.0, 1.0)).all() and np.all(vectors.sum(axis=1) == 1.0)
        if not hard:
            raise InputError(
                f"{name} must be integers ({n},) or one-hot rows for training (one digit per image); soft "
                "label vectors are for sampling only (generate, sample)"
            )
        return vectors
    if vectors.min() < 0 or np.abs(vectors.sum(axis=1) - 1.0).max() > SOFT_TOLERANCE:
        raise InputError(
            f"{name} rows must be probability vectors (entries >= 0 summing to 1), such as one_hot(y) or "
            "interpolate_labels(a, b, steps)"
        )
    return vectors


def expand_labels(label: object, n: int, n_classes: int) -> np.ndarray | None:
    """The generator's label rows for ``n`` samples (``None`` for the unconditional twin): ``label``
    is ``None`` (conditional: digits 0, 1, ..., n_classes - 1, 0, 1, ... in turn), one int for all
    samples, integers ``(n,)`` or (soft) vectors ``(n, n_classes)``."""
    if n_classes == 0:
        if label is not None:
            raise InputError(
                "this model is unconditional (n_classes=0) and takes no labels; drop them, or train "
                "the conditional GAN (n_classes=10)"
            )
        return None
    if label is None:
        label = np.arange(n) % n_classes
    elif _is_integer(label):
        label = np.full(n, int(label), np.int64)  # type: ignore[call-overload]
    return check_labels(label, n, n_classes)


def judged_labels(labels: object, n: int, n_classes: int) -> np.ndarray | None:
    """The discriminator's label rows for ``n`` images: a conditional D needs each image's label
    (integers ``(n,)`` or vectors ``(n, n_classes)``), the twin's takes none."""
    if n_classes == 0:
        return expand_labels(labels, n, 0)
    return check_labels(labels, n, n_classes)


def label_grid(n_per_class: int, n_classes: int = N_CLASSES) -> np.ndarray:
    """Labels int64 ``(n_classes * n_per_class,)``: ``n_per_class`` zeros, then ones, ...: a grid
    drawn with ``ncols=n_per_class`` has one row per digit."""
    check_positive("n_per_class", n_per_class, integer=True)
    return np.repeat(np.arange(n_classes, dtype=np.int64), int(n_per_class))


def grid_noise(
    n_per_class: int = N_PER_CLASS, noise_dim: int = NOISE_DIM, n_classes: int = N_CLASSES, seed: int = 0
) -> np.ndarray:
    """Noise ``(n_classes * n_per_class, noise_dim)`` matching :func:`label_grid`: the same
    ``n_per_class`` vectors in every row, so a column shows one noise vector drawn as each digit."""
    noise = sample_latent(n_per_class, noise_dim, seed=seed)
    return np.tile(noise, (n_classes, 1))


def interpolate_labels(a: object, b: object, steps: int, n_classes: int = N_CLASSES) -> np.ndarray:
    """Soft labels float32 ``(steps, n_classes)`` from ``a`` to ``b`` in a straight line:
    ``(1 - t) * a + t * b`` for ``t`` from 0 to 1. ``a`` and ``b`` are digits or label vectors."""
    check_positive("steps", steps, integer=True)
    ends = []
    for name, end in (("a", a), ("b", b)):
        if _is_integer(end):
            ends.append(check_labels(np.array([end]), 1, n_classes, name=name)[0])
        else:
            ends.append(check_labels(np.asarray(end)[None], 1, n_classes, name=name)[0])
    t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
    return ((1.0 - t) * ends[0] + t * ends[1]).astype(np.float32)


@dataclass(frozen=True)
class LabelAgreement:
    """How often a classifier reads the requested digit: ``overall`` over all samples, ``per_class``
    (n_classes,) for the samples requested as each digit (NaN where none was), ``counts`` per digit."""

    overall: float
    per_class: np.ndarray
    counts: np.ndarray

    def __str__(self) -> str:
        parts = ", ".join(f"{digit}: {value:.2f}" for digit, value in enumerate(self.per_class))
        return f"{self.overall:.3f} ({parts})"


def label_agreement(
    predicted_labels: object, requested: object, n_classes: int = N_CLASSES
) -> LabelAgreement:
    """Share of samples whose predicted digit is the requested one, overall and per requested digit.

    ``predicted_labels``: integers ``(N,)`` or class probabilities ``(N, n_classes)`` (such as the
    digit classifier's ``predict_proba``; the most probable digit counts). ``requested``: the hard
    labels the samples were drawn for, integers ``(N,)`` or one-hot rows.
    """
    n_classes = check_n_classes(n_classes)
    if n_classes == 0:
        raise InputError("label_agreement needs n_classes >= 2: an unconditional GAN is asked for no digit")
    wanted = np.argmax(
        check_labels(requested, _length(requested, "requested"), n_classes, "requested", soft=False), 1
    )
    predicted = np.asarray(predicted_labels)
    if predicted.ndim == 2:
        if predicted.shape[1] != n_classes or not np.isfinite(predicted).all():
            raise InputError(
                f"predicted_labels has shape {predicted.shape}; pass digits (N,) or probabilities (N, {n_classes})"
            )
        predicted = np.argmax(predicted, axis=1)
    elif predicted.ndim != 1 or predicted.dtype.kind not in "iu":
        raise InputError(
            f"predicted_labels must be integer digits (N,) or probabilities (N, {n_classes}), "
            f"got shape {predicted.shape} and dtype {predicted.dtype}"
        )
    if len(predicted) != len(wanted):
        raise InputError(
            f"predicted_labels has {len(predicted)} entries but requested has {len(wanted)}; "
            "pass one prediction per requested label"
        )
    if len(wanted) == 0:
        raise InputError("label_agreement needs at least one sample")
    hits = predicted == wanted
    counts = np.bincount(wanted, minlength=n_classes)
    per_class = np.full(n_classes, np.nan)
    seen = counts > 0
    per_class[seen] = np.bincount(wanted, weights=hits, minlength=n_classes)[seen] / counts[seen]
    return LabelAgreement(float(hits.mean()), per_class, counts)


def _length(array: object, name: str) -> int:
    shape = np.asarray(array).shape
    if not shape:
        raise InputError(f"{name} must be an array of labels, got {array!r}")
    return int(shape[0])


# ---------------------------------------------------------------------- training


def check_cgan_images(images: np.ndarray) -> np.ndarray:
    """Digits ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)`` in [0, 1] -> ``(N, 28, 28)`` in
    [-1, 1], the range of the generator's tanh."""
    return tasks.check_dcgan_images(images, "tanh")


def check_training_labels(labels: object, n: int, n_classes: int) -> np.ndarray | None:
    """One-hot rows ``(n, n_classes)`` for training, or ``None`` for the unconditional twin.

    The twin ignores the labels (so the same call trains both); only their number is checked."""
    if n_classes == 0:
        if labels is not None and _length(labels, "labels") != n:
            raise InputError(
                f"labels has {_length(labels, 'labels')} entries for {n} images; pass one label per image"
            )
        return None
    return check_labels(labels, n, n_classes, soft=False)


class GridKeeper(loop.Monitor):
    """Per epoch: the generator's output for the fixed grid (one row per digit, uint8 ``(N, 28, 28)``),
    kept with every checkpoint and written to ``frames.npy`` and ``training.gif``."""

    def __init__(
        self,
        generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
        noise_dim: int,
        n_classes: int,
        seed: int,
    ) -> None:
        self.generate = generate
        if n_classes:
            self.noise = grid_noise(N_PER_CLASS, noise_dim, n_classes, seed=seed + 1)
        else:  # the twin takes no labels: as many samples, each from its own noise vector
            self.noise = sample_latent(N_PER_CLASS * N_CLASSES, noise_dim, seed=seed + 1)
        self.labels = one_hot(label_grid(N_PER_CLASS, n_classes), n_classes) if n_classes else None
        self.frames = np.zeros((0, len(self.noise), 28, 28), np.uint8)

    def after_epoch(self, epoch: int) -> dict[str, float]:
        frame = np.round(np.clip(self.generate(self.noise, self.labels), 0, 1) * 255).astype(np.uint8)
        self.frames = np.concatenate([self.frames, frame[None]])
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames}

    def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
        self.frames = np.asarray(arrays.get("frames", self.frames))[:epoch]

    def write_outputs(self, run: RunFolder, epoch: int) -> None:
        from companion.plots import training_gif

        run.write_output("frames.npy", lambda tmp: np.save(tmp, self.frames), suffix=".npy")
        frames = list(self.frames.astype(np.float32) / 255.0)
        captions = [f"epoch {e}" for e in range(1, len(frames) + 1)]
        run.write_output(
            "training.gif",
            lambda tmp: training_gif(frames, tmp, ncols=N_PER_CLASS, scale=2, captions=captions),
            suffix=".gif",
        )


def cgan_plan(
    x: np.ndarray, onehot: np.ndarray | None, batch_size: int, noise_dim: int, steps_per_epoch: int | None
) -> loop.Plan:
    """Batches of real images (with their one-hot labels) and one noise draw per step.

    The fakes of a step are drawn for the real batch's labels, so real and fake batches carry the
    same labels and the label alone tells the discriminator nothing about which is which.
    """

    def inputs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"noise": rng.standard_normal((len(index), noise_dim), dtype=np.float32)}

    arrays = {"real": x} if onehot is None else {"real": x, "onehot": onehot}
    return loop.Plan(arrays, batch_size, drop_last=True, steps_per_epoch=steps_per_epoch, inputs=inputs)


def train_cgan(
    trainer: loop.Trainer,
    generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    x: np.ndarray,
    onehot: np.ndarray | None,
    noise_dim: int,
    s: CganConfig,
) -> History:
    """Train a (conditional) GAN: ``trainer`` holds G, D and the step; ``x`` are the images in the
    framework's layout in [-1, 1] (:func:`check_cgan_images`), ``onehot`` their labels
    (:func:`check_training_labels`); ``generate(noise, onehot)`` draws images in [0, 1]."""
    config = {
        "model": "cgan",
        "framework": trainer.framework,
        "n_classes": int(s.n_classes),
        "noise_dim": int(noise_dim),
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_train": len(x),
    }
    return tasks.fit_in_run_folder(
        trainer,
        cgan_plan(x, onehot, s.batch_size, noise_dim, s.steps_per_epoch),
        config,
        out_dir=s.out_dir,
        overwrite=s.overwrite,
        epochs=s.epochs,
        seed=s.seed,
        checkpoint_every=s.checkpoint_every,
        log_every=s.log_every,
        monitor=GridKeeper(generate, noise_dim, s.n_classes, s.seed),
        guards=(finite_losses, discriminator_won()),
    )


def cgan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a conditional GAN run (or its
    unconditional twin's) of ``framework``."""
    return saved_run(out_dir, framework, ("cgan",), "conditional GAN")
