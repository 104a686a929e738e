"""What pix2pix trains on, written once for both frameworks (paired image-to-image translation).

``companion.{tensorflow,torch}.pix2pix`` build the U-Net generator, the PatchGAN discriminator and
the train step, and call the functions here for the rest: the settings and their checks, the run
settings stored in ``run.json``, the pair checks, the PatchGAN's receptive field and the scores of a
translation. Pairs themselves come from :mod:`companion.image_pairs`.

Isola et al. (2017), "Image-to-Image Translation with Conditional Adversarial Networks": G maps an
input image x to an output G(x); D sees (x, y) pairs and says, for every patch, whether y is the
real target of x or G's output. G minimises the non-saturating adversarial loss plus
``l1_weight`` x |y - G(x)|_1 (lambda = 100 in the paper); D minimises the usual binary cross-entropy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from companion.evaluation.metrics import frechet_distance, grey_share
from companion.image_pairs import TASKS, as_digits
from companion.training import loop, tasks
from companion.training.guards import finite_losses
from companion.training.run_folder import saved_run
from companion.validation import InputError, check_positive

History = loop.History
L1_WEIGHT = 100.0  # lambda of Isola et al. (2017) for images in [-1, 1]
FILTERS = 32  # the U-Net's first layer; deeper layers use 2x and 4x (the PatchGAN: 1x and 2x)
DROPOUT = 0.5  # the decoder's dropout, the paper's only source of noise
LEAKY_SLOPE = 0.2  # the paper's LeakyReLU slope, in the encoder and the discriminator
BN_EPSILON = 1e-3  # Keras default, set on the PyTorch side too
ADAM_EPSILON = 1e-7  # Keras default, passed to PyTorch's Adam too
# The PatchGAN's convolutions (4x4 stride 2, 4x4 stride 2, 3x3 stride 1): 28x28 -> 14 -> 7 -> 7x7 logits.
PATCH_KERNELS = (4, 4, 3)
PATCH_STRIDES = (2, 2, 1)
PATCH_GRID = 7
GIVEN_MODEL_KEYS = (
    "lr",
    "beta1",
    "l1_weight",
    "adversarial",
)  # what a model given as gan= must share with the settings
METRICS = ("g_l1", "g_adv", "d_loss")  # per-epoch history of a pix2pix run; the L1 baseline keeps g_l1 only


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int]) -> int:
    """Side in pixels of the input patch one output of a stack of convolutions sees.

    Going forward, each layer widens the field by ``(kernel - 1) x jump``, where the jump (the
    input distance between neighbouring outputs) is the product of the strides before it.
    Padding does not change the field; near the border part of it falls on padding.
    """
    kernels, steps = list(kernel_sizes), list(strides)
    if len(kernels) != len(steps) or not kernels:
        raise InputError(
            f"give one stride per kernel size (and at least one layer), got {len(kernels)} kernel sizes "
            f"and {len(steps)} strides"
        )
    for name, values in (("kernel_sizes", kernels), ("strides", steps)):
        for value in values:
            check_positive(name, value, integer=True)
    field, jump = 1, 1
    for kernel, stride in zip(kernels, steps, strict=True):
        field += (int(kernel) - 1) * jump
        jump *= int(stride)
    return field


PATCH_RECEPTIVE_FIELD = receptive_field(PATCH_KERNELS, PATCH_STRIDES)  # 18: each logit judges an 18x18 patch


# ---------------------------------------------------------------------- checks


def check_l1_weight(l1_weight: float, adversarial: bool = True) -> float:
    """The L1 weight lambda: a finite number >= 0, and > 0 for the L1-only baseline (it has nothing else)."""
    number = isinstance(l1_weight, (int, float, np.integer, np.floating)) and not isinstance(l1_weight, bool)
    if not number or not np.isfinite(l1_weight) or l1_weight < 0:
        raise InputError(
            f"l1_weight must be a finite number >= 0 (the paper's lambda is {L1_WEIGHT:g}), got {l1_weight!r}"
        )
    if not adversarial and l1_weight == 0:
        raise InputError(
            "adversarial=False trains on the L1 loss alone, so l1_weight must be > 0; keep the default "
            f"{L1_WEIGHT:g} or set adversarial=True"
        )
    return float(l1_weight)


def check_architecture(filters: int, dropout: float) -> None:
    """``filters`` a positive integer, ``dropout`` a rate in [0, 1)."""
    check_positive("filters", filters, integer=True)
    number = isinstance(dropout, (int, float, np.integer, np.floating)) and not isinstance(dropout, bool)
    if not number or not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"dropout must be a rate in [0, 1) (0 turns it off), got {dropout!r}")


def check_pairs(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paired digits in [0, 1] -> ``(inputs, targets)`` float32 ``(N, 28, 28)`` in [-1, 1], the tanh range.

    Each may be ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)``; both need the same N.
    """
    x, y = as_digits(inputs, "inputs"), as_digits(targets, "targets")
    if len(x) != len(y):
        raise InputError(
            f"inputs has {len(x)} images but targets has {len(y)}; pass one target per input, in the same "
            "order (image_pairs.make_pairs gives both)"
        )
    return tasks.to_data_range(x, "tanh"), tasks.to_data_range(y, "tanh")


# ---------------------------------------------------------------------- settings


class Pix2PixSettings(TypedDict, total=False):
    """Keyword arguments of ``pix2pix.train`` on both sides (all optional)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    l1_weight: float
    adversarial: bool
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    gan: Any
    task: str | None


@dataclass(frozen=True)
class Pix2PixConfig:
    """``pix2pix.train``'s settings and defaults: Adam 2e-4 / beta_1 0.5 and lambda = 100 as in the paper,
    batches of 64 (the paper trains on single images; batches make an epoch fast on small CPUs).

    ``adversarial=False`` is the L1-only baseline: the same U-Net trained on L1 alone, the
    discriminator never updated. ``seed`` seeds the initial weights, the dropout masks and the
    shuffling. Each epoch runs ``N // batch_size`` steps (the last short batch is dropped, for batch
    norm), capped by ``steps_per_epoch``. With ``out_dir`` checkpoints are written every
    ``checkpoint_every`` epochs and at the end; calling again with the same ``out_dir`` resumes.
    ``gan`` trains a given ``Pix2Pix`` (built with the same ``lr``, ``beta1``, ``l1_weight`` and
    ``adversarial``), for example one whose weights were copied from the other framework.
    ``task`` (one of :data:`companion.image_pairs.TASKS`) records in ``run.json`` what made the pairs,
    so that a later ``sample`` can make inputs the same way.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    l1_weight: float = L1_WEIGHT
    adversarial: bool = True
    seed: int = 0
    steps_per_epoch: int | None = None
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int = 1
    overwrite: bool = False
    log_every: int = 1
    device: str | None = None
    gan: Any = None
    task: str | None = None

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        tasks.check_beta1(self.beta1)
        if not isinstance(self.adversarial, bool):
            raise InputError(
                f"adversarial must be True (pix2pix) or False (the L1-only baseline), got {self.adversarial!r}"
            )
        check_l1_weight(self.l1_weight, self.adversarial)
        loop.check_seed(self.seed)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"task must be one of {TASKS} (what made the pairs) or None, got {self.task!r}")


def pix2pix_settings(settings: Mapping[str, Any]) -> Pix2PixConfig:
    """:class:`Pix2PixConfig` from ``pix2pix.train``'s keyword arguments."""
    unknown = sorted(set(settings) - {f.name for f in fields(Pix2PixConfig)})
    if unknown:
        raise TypeError(
            f"pix2pix.train got unexpected settings {unknown}; see companion.training.pix2pix_task.Pix2PixConfig"
        )
    return Pix2PixConfig(**settings)


def fit_pix2pix(
    trainer: loop.Trainer,
    inputs: np.ndarray,
    targets: np.ndarray,
    s: Pix2PixConfig,
    architecture: Mapping[str, Any],
) -> History:
    """Train through the one loop on paired images in the framework's layout, in [-1, 1].

    ``architecture`` (``filters``, ``dropout``) goes into ``run.json`` with the settings that change
    what is trained, and the ``task`` when the caller names it (the pairs are whatever the caller passes).
    """
    config = {
        "model": "pix2pix",
        "framework": trainer.framework,
        **{key: architecture[key] for key in ("filters", "dropout")},
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "l1_weight": float(s.l1_weight),
        "adversarial": s.adversarial,
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_train": len(inputs),
        **({"task": s.task} if s.task is not None else {}),
    }
    plan = loop.Plan(
        {"inputs": inputs, "targets": targets},
        s.batch_size,
        drop_last=True,
        steps_per_epoch=s.steps_per_epoch,
    )
    return tasks.fit_in_run_folder(
        trainer,
        plan,
        config,
        out_dir=s.out_dir,
        overwrite=s.overwrite,
        epochs=s.epochs,
        seed=s.seed,
        checkpoint_every=s.checkpoint_every,
        log_every=s.log_every,
        guards=(finite_losses,),
    )


def pix2pix_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a pix2pix run of ``framework``."""
    return saved_run(out_dir, framework, ("pix2pix",), "pix2pix model")


# ---------------------------------------------------------------------- scores


def translation_scores(
    outputs: np.ndarray, targets: np.ndarray, labels: np.ndarray, classifier: Any
) -> dict[str, float]:
    """How good translations ``outputs`` of ``targets`` are, all images in [0, 1].

    ``l1``: mean absolute pixel error; ``fd``: Frechet distance between the classifier's features
    of outputs and of targets (blurry outputs sit far from real digits even at a low L1);
    ``label_match``: share of outputs the classifier reads as the true digit ``labels``;
    ``grey_share``: :func:`~companion.evaluation.metrics.grey_share` of the outputs, with
    ``target_grey_share`` the same for the targets (blur shows as more grey than the digits have).
    ``classifier`` is a :class:`~companion.evaluation.classifier.DigitClassifier` (``features``, ``predict``).
    """
    out, real = as_digits(outputs, "outputs"), as_digits(targets, "targets")
    if out.shape != real.shape:
        raise InputError(
            f"outputs has {len(out)} images and targets {len(real)}; score one output per target"
        )
    digits = np.asarray(labels)
    if digits.dtype.kind not in "iu" or digits.shape != (len(out),):
        raise InputError(
            f"labels must be {len(out)} integer digits, one per target (shape ({len(out)},)), got dtype "
            f"{digits.dtype} and shape {digits.shape}"
        )
    if len(out) < 2:
        raise InputError("the Frechet distance needs at least 2 images; score a larger batch")

    return {
        "l1": float(np.mean(np.abs(out.astype(np.float64) - real))),
        "fd": frechet_distance(classifier.features(out), classifier.features(real)),
        "label_match": float(np.mean(classifier.predict(out) == digits)),
        "grey_share": grey_share(out),
        "target_grey_share": grey_share(real),
    }
