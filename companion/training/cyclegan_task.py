"""What CycleGAN trains on, written once for both frameworks (unpaired image-to-image translation).

``companion.{tensorflow,torch}.cyclegan`` build the two translators (A -> B and B -> A), the two
PatchGAN discriminators and the train step, and call the functions here for the rest: the settings
and their checks, the domain checks, the unpaired batches, the run settings stored in ``run.json``,
the one loop, and a neutral score of a translation.

Zhu et al. (2017), "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks": G_ab maps domain A to B, G_ba maps B to A, D_b tells real B images from G_ab's
outputs and D_a real A images from G_ba's. No image of A has a partner in B, so nothing says
*which* B image G_ab(a) should be; the cycle-consistency loss asks that going there and back gives
the start again, G_ba(G_ab(a)) ~ a and G_ab(G_ba(b)) ~ b. The generators minimise

    L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a) + cycle_weight x L_cyc + identity_weight x L_identity,

with L_cyc = |G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1 and L_identity = |G_ab(b) - b|_1 +
|G_ba(a) - a|_1 (an image already in the target domain should pass unchanged), each L1 a mean over
pixels in [-1, 1]. The paper's weights: cycle 10, identity 0.5 x 10 = 5; its adversarial loss is
the least-squares one (LSGAN, Mao et al. 2017), ``gan_loss="lsgan"``; ``"bce"`` is the
non-saturating cross-entropy of the earlier chapters.

Left out from the paper, with the reason: the pool of 50 earlier fakes that D also sees (it makes
the step depend on a random buffer that would have to be checkpointed; with small networks and
batches of 32-64 the batch itself spreads D's view), reflection padding (zero padding, which both
frameworks spell the same way), and the halving of D's loss (Adam's steps do not depend on the
scale of a loss).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from companion.image_pairs import as_digits
from companion.training import loop, pix2pix_task, tasks
from companion.training.guards import finite_losses
from companion.training.run_folder import saved_run
from companion.validation import InputError, check_positive

History = loop.History
CYCLE_WEIGHT = 10.0  # lambda of Zhu et al. (2017)
IDENTITY_WEIGHT = 0.5 * CYCLE_WEIGHT  # the paper's identity loss: 0.5 x lambda
GAN_LOSSES = ("lsgan", "bce")
GAN_LOSS = "lsgan"  # the paper's choice
FILTERS = 16  # the translators' first width (F, then 2F after the stride-2 layer); D uses F and 2F too
RESIDUAL_BLOCKS = 2  # at 14x14x2F (the paper uses 6 or 9 at 64x64 and up)
IN_EPSILON = 1e-5  # instance norm's epsilon (PyTorch's default, set on the Keras side too)
LEAKY_SLOPE = 0.2  # the discriminators' LeakyReLU slope, as in the paper
ADAM_EPSILON = 1e-7  # Keras default, passed to PyTorch's Adam too
# The PatchGAN of the pix2pix section, on one image: 28x28 -> 14 -> 7 -> 7x7 logits, each an 18x18 patch.
PATCH_GRID = pix2pix_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = pix2pix_task.PATCH_RECEPTIVE_FIELD
GIVEN_MODEL_KEYS = (
    "lr",
    "beta1",
    "cycle_weight",
    "identity_weight",
    "gan_loss",
)  # what a model given as gan= must share with the settings
NETWORKS = ("g_ab", "g_ba", "d_a", "d_b")  # names in checkpoints, one Adam each


def metric_names(
    cycle_weight: float = CYCLE_WEIGHT, identity_weight: float = IDENTITY_WEIGHT
) -> tuple[str, ...]:
    """The step metrics of a run: ``g_adv`` (both generators' adversarial losses, summed), ``cycle`` and
    ``identity`` (the unweighted L1 terms, summed over both directions; only when their weight is > 0,
    since a term with weight 0 is not computed), ``d_a`` and ``d_b`` (each discriminator's loss)."""
    names = ["g_adv"]
    if check_weight("cycle_weight", cycle_weight) > 0:
        names.append("cycle")
    if check_weight("identity_weight", identity_weight) > 0:
        names.append("identity")
    return (*names, "d_a", "d_b")


# ---------------------------------------------------------------------- checks


def check_weight(name: str, weight: float) -> float:
    """A loss weight: a finite number >= 0 (0 turns the term off)."""
    number = isinstance(weight, (int, float, np.integer, np.floating)) and not isinstance(weight, bool)
    if not number or not np.isfinite(weight) or weight < 0:
        default = CYCLE_WEIGHT if name == "cycle_weight" else IDENTITY_WEIGHT
        raise InputError(
            f"{name} must be a finite number >= 0 (0 turns the term off; the paper's is {default:g}), "
            f"got {weight!r}"
        )
    return float(weight)


def check_gan_loss(gan_loss: object) -> str:
    if gan_loss not in GAN_LOSSES:
        raise InputError(
            f"gan_loss must be 'lsgan' (least squares, the paper's) or 'bce' (cross-entropy), got {gan_loss!r}"
        )
    return str(gan_loss)


def check_architecture(filters: int, residual_blocks: int) -> None:
    """``filters`` a positive integer, ``residual_blocks`` an integer >= 0."""
    check_positive("filters", filters, integer=True)
    blocks_ok = isinstance(residual_blocks, (int, np.integer)) and not isinstance(residual_blocks, bool)
    if not blocks_ok or residual_blocks < 0:
        raise InputError(f"residual_blocks must be an integer >= 0, got {residual_blocks!r}")


def check_domains(
    domain_a: np.ndarray, domain_b: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two unpaired sets of digits in [0, 1] -> float32 ``(N_a, 28, 28)`` and ``(N_b, 28, 28)`` in [-1, 1].

    Each may be ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)``; the sizes may differ, but
    each must hold at least one batch.
    """
    a, b = as_digits(domain_a, "domain_a"), as_digits(domain_b, "domain_b")
    check_positive("batch_size", batch_size, integer=True)
    for name, x in (("domain_a", a), ("domain_b", b)):
        if len(x) < batch_size:
            raise InputError(
                f"batch_size {batch_size} exceeds the {len(x)} images of {name}; use a smaller batch_size "
                "or more images"
            )
    return tasks.to_data_range(a, "tanh"), tasks.to_data_range(b, "tanh")


# ---------------------------------------------------------------------- settings


class CycleGanSettings(TypedDict, total=False):
    """Keyword arguments of ``cyclegan.train`` on both sides (all optional)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    cycle_weight: float
    identity_weight: float
    gan_loss: str
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    gan: Any


@dataclass(frozen=True)
class CycleGanConfig:
    """``cyclegan.train``'s settings and defaults: Adam 2e-4 / beta_1 0.5, cycle weight 10, identity
    weight 5 and the least-squares GAN loss, as in the paper; batches of 32 (the paper trains on
    single images; batches make an epoch fast on small CPUs).

    An epoch is one pass over domain A in a shuffled order, ``N_a // batch_size`` steps (capped by
    ``steps_per_epoch``); each step pairs the A batch with a batch of B drawn in B's own shuffled
    order (:class:`UnpairedBatches`), so no image of A is ever tied to an image of B. ``seed``
    seeds the initial weights and both orders. ``cycle_weight=0`` or ``identity_weight=0`` turns
    that term off (it is then neither computed nor reported). With ``out_dir`` checkpoints are
    written every ``checkpoint_every`` epochs and at the end; calling again with the same
    ``out_dir`` resumes. ``gan`` trains a given ``CycleGAN`` (built with the same ``lr``, ``beta1``,
    ``cycle_weight``, ``identity_weight`` and ``gan_loss``), for example one whose weights were
    copied from the other framework.
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    cycle_weight: float = CYCLE_WEIGHT
    identity_weight: float = IDENTITY_WEIGHT
    gan_loss: str = GAN_LOSS
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
        check_weight("cycle_weight", self.cycle_weight)
        check_weight("identity_weight", self.identity_weight)
        check_gan_loss(self.gan_loss)
        loop.check_seed(self.seed)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)


def cyclegan_settings(settings: Mapping[str, Any]) -> CycleGanConfig:
    """:class:`CycleGanConfig` from ``cyclegan.train``'s keyword arguments."""
    unknown = sorted(set(settings) - {f.name for f in fields(CycleGanConfig)})
    if unknown:
        raise TypeError(
            f"cyclegan.train got unexpected settings {unknown}; see "
            "companion.training.cyclegan_task.CycleGanConfig"
        )
    return CycleGanConfig(**settings)


# ---------------------------------------------------------------------- the loop


class UnpairedBatches(loop.Monitor):
    """Domain B's batches, in an order of its own: the loop shuffles domain A (the plan's array) and
    this hands each step a batch of B as a host input.

    Each epoch starts a fresh permutation of B, drawn from the epoch's step-input stream
    (``epoch_rng(seed, epoch, 1)``), and walks through it batch by batch, drawing the next
    permutation when fewer than a batch are left. So both domains are shuffled independently and
    deterministically from the seed, and a resumed run sees the batches an unbroken one would.
    """

    def __init__(self, images_b: np.ndarray, batch_size: int) -> None:
        self.images_b, self.batch_size = images_b, int(batch_size)
        self._order = np.zeros(0, np.int64)
        self._next = 0

    def before_epoch(self, epoch: int) -> None:
        self._order, self._next = np.zeros(0, np.int64), 0

    def inputs(self, index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self._next + len(index) > len(self._order):
            self._order, self._next = rng.permutation(len(self.images_b)), 0
        rows = self._order[self._next : self._next + len(index)]
        self._next += len(index)
        return {"images_b": self.images_b[rows]}


def fit_cyclegan(
    trainer: loop.Trainer,
    domain_a: np.ndarray,
    domain_b: np.ndarray,
    s: CycleGanConfig,
    architecture: Mapping[str, Any],
) -> History:
    """Train through the one loop on two unpaired sets in the framework's layout, in [-1, 1].

    The step sees ``batch["images_a"]`` (rows of A, shuffled by the loop) and ``batch["images_b"]``
    (from :class:`UnpairedBatches`). ``architecture`` (``filters``, ``residual_blocks``) goes into
    ``run.json`` with the settings that change what is trained.
    """
    config = {
        "model": "cyclegan",
        "framework": trainer.framework,
        **{key: int(architecture[key]) for key in ("filters", "residual_blocks")},
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "cycle_weight": float(s.cycle_weight),
        "identity_weight": float(s.identity_weight),
        "gan_loss": s.gan_loss,
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_a": len(domain_a),
        "n_b": len(domain_b),
    }
    batches_b = UnpairedBatches(domain_b, s.batch_size)
    # Same-size batches only: a short last batch would retrace the TensorFlow step for one batch.
    plan = loop.Plan(
        {"images_a": domain_a},
        s.batch_size,
        drop_last=True,
        steps_per_epoch=s.steps_per_epoch,
        inputs=batches_b.inputs,
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
        monitor=batches_b,
        guards=(finite_losses,),
    )


def cyclegan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a CycleGAN run of ``framework``."""
    return saved_run(out_dir, framework, ("cyclegan",), "CycleGAN model")


# ---------------------------------------------------------------------- scores


def label_preservation(translated: np.ndarray, labels: np.ndarray, classifier: Any) -> float:
    """Share of ``translated`` digits (in [0, 1]) the digit classifier reads as ``labels``, the digits
    of the images they were translated from: a translation between two styles of digits should keep
    the digit. ``classifier`` has ``predict`` (e.g. :func:`companion.evaluation.classifier.load_classifier`)."""
    images = as_digits(translated, "translated")
    digits = np.asarray(labels)
    if digits.dtype.kind not in "iu" or digits.shape != (len(images),):
        raise InputError(
            f"labels must be {len(images)} integer digits, one per translated image (shape ({len(images)},)), "
            f"got dtype {digits.dtype} and shape {digits.shape}"
        )
    if digits.min() < 0 or digits.max() > 9:
        raise InputError(f"labels must be digits 0-9, got values in [{digits.min()}, {digits.max()}]")
    return float(np.mean(np.asarray(classifier.predict(images)) == digits))
