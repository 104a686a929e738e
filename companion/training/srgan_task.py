"""What super-resolution trains on, written once for both frameworks (SRGAN at MNIST scale).

``companion.{tensorflow,torch}.srgan`` build the generator (low-resolution digit -> 28x28 digit),
the discriminator and the train step, and call the functions here for the rest: the settings and
their checks, the low-/high-resolution pairs, the run settings stored in ``run.json``, the one
loop, and the scores that compare upscalers (PSNR, Frechet distance on the digit classifier's
features, and whether the classifier still reads the right digit).

Images lie in [0, 1] everywhere; the generator's linear output is trained towards that range and clipped to it by ``upscale``.
Low-resolution inputs are ``downsample(high_res, factor)`` from :mod:`companion.resampling`:
7x7 for the default factor 4, 14x14 for factor 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from companion.evaluation.metrics import frechet_distance, grey_share, psnr
from companion.training import loop, tasks
from companion.training.guards import finite_losses
from companion.training.run_folder import saved_run
from companion.validation import InputError, check_images, check_positive

History = loop.History
HIGH_RES = 28
FACTORS = (2, 4)
# The weight of the adversarial term next to the pixel MSE. SRGAN used 1e-3 beside a VGG feature
# loss; beside a pixel MSE of a few hundredths on 28x28 digits, 1e-2 changes the outputs visibly.
ADVERSARIAL_WEIGHT = 1e-2
GIVEN_MODEL_KEYS = (
    "factor",
    "adversarial_weight",
    "lr",
    "beta1",
)  # what a model given as gan= must share with the settings
ADAM_EPSILON = 1e-7  # Keras' default, passed to PyTorch's Adam too


class SrganSettings(TypedDict, total=False):
    """Keyword arguments of ``srgan.train`` on both sides (all optional but ``epochs``)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    adversarial_weight: float
    factor: int
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    gan: Any


# ---------------------------------------------------------------------- checks


def check_factor(factor: object) -> int:
    """The upscaling factor: 2 (14x14 -> 28x28) or 4 (7x7 -> 28x28)."""
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor not in FACTORS:
        raise InputError(
            f"factor must be 2 (14x14 -> 28x28) or 4 (7x7 -> 28x28), got {factor!r}; "
            "make the inputs with companion.resampling.downsample(images, factor)"
        )
    return int(factor)


def check_adversarial_weight(weight: float) -> float:
    """The adversarial term's weight: a finite number >= 0 (0 trains the plain MSE network, without D)."""
    number = isinstance(weight, (int, float, np.integer, np.floating)) and not isinstance(weight, bool)
    if not number or not np.isfinite(weight) or weight < 0:
        raise InputError(
            f"adversarial_weight must be a finite number >= 0 (0: MSE only, {ADVERSARIAL_WEIGHT:g}: the "
            f"chapter's SRGAN), got {weight!r}"
        )
    return float(weight)


def low_res_size(factor: int) -> int:
    """Side of the low-resolution input for ``factor``: 28 / factor."""
    return HIGH_RES // check_factor(factor)


def _square_batch(images: object, name: str) -> np.ndarray:
    """``(N, s, s)``, ``(N, s, s, 1)`` or ``(N, 1, s, s)`` -> ``(N, s, s)`` float32 in [0, 1]."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    elif x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise InputError(
            f"{name} has shape {x.shape}; pass square one-channel images: (N, s, s), (N, s, s, 1) or "
            "(N, 1, s, s) (for flat MNIST, load_mnist(layout='hw'))"
        )
    return check_images(x, name=name)


def check_high_res(images: object, name: str = "high_res") -> np.ndarray:
    """28x28 digits in [0, 1], in any one-channel layout -> ``(N, 28, 28)`` float32."""
    x = _square_batch(images, name)
    if x.shape[1] != HIGH_RES:
        raise InputError(
            f"{name} is {x.shape[1]}x{x.shape[1]}; the targets are 28x28 digits, e.g. load_mnist(layout='hw')"
        )
    return x


def check_low_res(images: object, factor: int, name: str = "low_res") -> np.ndarray:
    """Low-resolution digits for ``factor`` (7x7 for 4, 14x14 for 2) in [0, 1] -> ``(N, s, s)`` float32."""
    size = low_res_size(factor)
    x = _square_batch(images, name)
    if x.shape[1] != size:
        fits = [f for f in FACTORS if HIGH_RES // f == x.shape[1]]
        other = f", or factor={fits[0]} for {x.shape[1]}x{x.shape[1]} inputs" if fits else ""
        raise InputError(
            f"{name} is {x.shape[1]}x{x.shape[1]} but factor={factor} upscales {size}x{size} images to "
            f"28x28; pass downsample(high_res, {factor}) from companion.resampling{other}"
        )
    return x


def check_pair(low_res: object, high_res: object, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Matching training pairs: ``(low (N, s, s), high (N, 28, 28))``, one low-resolution image per target."""
    high = check_high_res(high_res)
    low = check_low_res(low_res, factor)
    if len(low) != len(high):
        raise InputError(
            f"low_res has {len(low)} images but high_res has {len(high)}; pass one low-resolution image per "
            "target, e.g. low_res = downsample(high_res, factor)"
        )
    return low, high


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SrganConfig:
    """``srgan.train``'s settings and defaults.

    Adam with lr 2e-4 and beta_1 0.5 for both networks (the DCGAN recipe); batches of 64; the last
    short batch of an epoch is dropped and ``steps_per_epoch`` caps the steps. ``adversarial_weight``
    0 trains the generator on the pixel MSE alone and builds no discriminator; > 0 adds that weight
    times the non-saturating GAN loss (SRGAN). ``seed`` seeds the initial weights and the shuffling.
    With ``out_dir`` a checkpoint is written every ``checkpoint_every`` epochs and after the last,
    and a later call with the same settings resumes; ``overwrite=True`` starts the folder again.
    ``gan`` trains a given ``SuperResolution`` (built with the same ``factor``, ``adversarial_weight``,
    ``lr`` and ``beta1``), for example one whose weights were copied from the other framework.
    """

    epochs: int
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    adversarial_weight: float = ADVERSARIAL_WEIGHT
    factor: int = 4
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
        check_positive("lr", self.lr)
        tasks.check_beta1(self.beta1)
        check_adversarial_weight(self.adversarial_weight)
        check_factor(self.factor)
        loop.check_seed(self.seed)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)


def srgan_settings(settings: Mapping[str, Any]) -> SrganConfig:
    """:class:`SrganConfig` from ``srgan.train``'s keyword arguments, unknown names refused."""
    unknown = sorted(set(settings) - set(SrganConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"srgan.train got unexpected settings {unknown}; see {__name__}.SrganConfig")
    if "epochs" not in settings:
        raise TypeError("srgan.train needs epochs=")
    return SrganConfig(**settings)


# ---------------------------------------------------------------------- training


def fit_srgan(trainer: loop.Trainer, low_res: np.ndarray, high_res: np.ndarray, s: SrganConfig) -> History:
    """Train through the one loop (``trainer`` holds G, D when there is one, and the step) on pairs
    already checked by :func:`check_pair` and put in the framework's layout.

    The history holds per-epoch means of ``g_loss`` (MSE + weight x adversarial), ``mse``, and with
    a discriminator ``adversarial`` (G's non-saturating loss), ``d_loss``, ``d_real`` = D(x) and
    ``d_fake`` = D(G(x_low)); plus the loop's timings.
    """
    if s.batch_size > len(high_res):
        raise InputError(
            f"batch_size {s.batch_size} exceeds the {len(high_res)} training pairs; use a smaller batch_size"
        )
    config = {
        "model": "srgan",
        "framework": trainer.framework,
        "factor": s.factor,
        "adversarial_weight": float(s.adversarial_weight),
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_train": len(high_res),
    }
    plan = loop.Plan(
        {"low_res": low_res, "high_res": high_res},
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


def srgan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a super-resolution run of ``framework``."""
    return saved_run(out_dir, framework, ("srgan",), "super-resolution model")


# ---------------------------------------------------------------------- scores


def resolution_scores(
    outputs: np.ndarray, targets: np.ndarray, labels: np.ndarray, classifier: Any
) -> dict[str, float]:
    """How good upscaled digits are, three ways (the perception-distortion trade-off):

    - ``psnr``: mean per-image PSNR against the true 28x28 digits, in dB (higher: closer pixel by pixel);
    - ``fd``: Frechet distance between the classifier's features of the outputs and of the targets
      (lower: the outputs are distributed like real digits, sharp strokes included);
    - ``accuracy``: share of outputs that ``classifier`` (``companion.evaluation.classifier``) reads as
      the true digit ``labels``;
    - ``grey_share``: :func:`~companion.evaluation.metrics.grey_share` of the outputs (real digits: about
      0.5; blurred strokes: more).

    ``outputs`` and ``targets`` are 28x28 digits in [0, 1] in any one-channel layout.
    """
    out = check_high_res(outputs, "outputs")
    true = check_high_res(targets, "targets")
    if out.shape != true.shape:
        raise InputError(
            f"outputs has {len(out)} images but targets has {len(true)}; pass one output per target"
        )
    y = np.asarray(labels)
    if y.shape != (len(out),) or y.dtype.kind not in "iu":
        raise InputError(
            f"labels must be {len(out)} integer digits, one per image (the y of load_mnist), got "
            f"shape {y.shape} and dtype {y.dtype}"
        )
    if len(out) < 2:
        raise InputError("the Frechet distance needs at least 2 images; pass more outputs")
    return {
        "psnr": psnr(true, out),
        "fd": frechet_distance(classifier.features(out), classifier.features(true)),
        "accuracy": float(np.mean(classifier.predict(out) == y)),
        "grey_share": grey_share(out),
    }
