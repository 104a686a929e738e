"""CycleGAN (Zhu et al., 2017) on 28x28 digits in PyTorch, matching ``companion.tensorflow.cyclegan``.

Same networks, layer names, losses, train step and run folder as the Keras side (its docstring
draws the ResNet translator and the PatchGAN). Keras' ``padding="same"`` is symmetric for every
layer here (7x7 and 3x3 stride 1, and 4x4 stride 2 on even sizes), so plain ``padding`` reproduces
it. Instance norm is ``InstanceNorm2d(affine=False)`` (no running statistics, no weights) with the
Keras side's epsilon; LeakyReLU has the paper's slope 0.2.

Tensors are channels first: images ``(N, 1, 28, 28)`` in [-1, 1] inside the models. The public
helpers (:func:`translate`, :meth:`CycleGAN.losses`, :func:`train`) take digits ``(N, 28, 28)``
(or ``(N, 1, 28, 28)``) in [0, 1] and return NumPy arrays, as on the Keras side. All four networks
start from Keras' initialisation (``companion.torch.init``).
"""

from __future__ import annotations

import os
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.image_pairs import as_digits
from companion.torch import runtime
from companion.torch.init import initialize
from companion.torch.training import FRAMEWORK, Trainer, make_adam
from companion.training import cyclegan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

CYCLE_WEIGHT = cyclegan_task.CYCLE_WEIGHT
IDENTITY_WEIGHT = cyclegan_task.IDENTITY_WEIGHT
GAN_LOSS = cyclegan_task.GAN_LOSS
FILTERS = cyclegan_task.FILTERS
RESIDUAL_BLOCKS = cyclegan_task.RESIDUAL_BLOCKS
IN_EPSILON = cyclegan_task.IN_EPSILON
LEAKY_SLOPE = cyclegan_task.LEAKY_SLOPE
ADAM_EPSILON = cyclegan_task.ADAM_EPSILON
PATCH_GRID = cyclegan_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = cyclegan_task.PATCH_RECEPTIVE_FIELD


def _down(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """4x4 stride-2 convolution, 28 -> 14 -> 7 (Keras "same": one pixel of padding on each side)."""
    return nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)


def _same(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """Stride-1 convolution with an odd kernel that keeps the size."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def _instance_norm(h: torch.Tensor) -> torch.Tensor:
    """Each image and channel normalised over its pixels, no learned scale or offset."""
    return F.instance_norm(h, eps=IN_EPSILON)


class Translator(nn.Module):
    """A translator: images ``(N, 1, 28, 28)`` in [-1, 1] -> ``(N, 1, 28, 28)`` in [-1, 1] (tanh)."""

    def __init__(self, filters: int = FILTERS, residual_blocks: int = RESIDUAL_BLOCKS) -> None:
        super().__init__()
        cyclegan_task.check_architecture(filters, residual_blocks)
        f = int(filters)
        self.head = _same(1, f, 7, bias=False)  # 28x28xF
        self.down = _down(f, 2 * f, bias=False)  # 14x14x2F
        # Flat names (res1_a, res1_b, ...) as the Keras layers, so the bridge pairs them by name.
        self.residual = nn.ModuleDict(
            {
                f"res{i}_{part}": _same(2 * f, 2 * f, 3, bias=False)
                for i in range(1, int(residual_blocks) + 1)
                for part in "ab"
            }
        )
        self.blocks = int(residual_blocks)
        self.up = nn.ConvTranspose2d(2 * f, f, 4, stride=2, padding=1, bias=False)  # 28x28xF
        self.to_image = _same(f, 1, 7)  # 28x28x1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.relu(_instance_norm(self.head(images)))
        h = F.relu(_instance_norm(self.down(h)))
        for i in range(1, self.blocks + 1):
            r = F.relu(_instance_norm(self.residual[f"res{i}_a"](h)))
            h = h + _instance_norm(self.residual[f"res{i}_b"](r))
        h = F.relu(_instance_norm(self.up(h)))
        return torch.tanh(self.to_image(h))


class DomainDiscriminator(nn.Module):
    """A PatchGAN on one image: ``(N, 1, 28, 28)`` in [-1, 1] -> scores ``(N, 1, 7, 7)``."""

    def __init__(self, filters: int = FILTERS) -> None:
        super().__init__()
        cyclegan_task.check_architecture(filters, 0)
        f = int(filters)
        self.patch1 = _down(1, f)  # 14x14xF, no norm (as in the paper)
        self.patch2 = _down(f, 2 * f, bias=False)  # 7x7x2F
        self.patch_logits = _same(2 * f, 1, 3)  # 7x7x1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.patch1(images), LEAKY_SLOPE)
        h = F.leaky_relu(_instance_norm(self.patch2(h)), LEAKY_SLOPE)
        return self.patch_logits(h)


def build_translator(
    filters: int = FILTERS, residual_blocks: int = RESIDUAL_BLOCKS, seed: int | None = None
) -> Translator:
    """A translator: images ``(N, 1, 28, 28)`` in [-1, 1] -> ``(N, 1, 28, 28)`` in [-1, 1] (tanh), with
    Keras' initialisation.

    ``filters`` (F) sets the widths F at 28x28 and 2F at 14x14, where ``residual_blocks`` blocks
    work. ``seed`` makes the initial weights repeatable (it reseeds PyTorch first).
    """
    cyclegan_task.check_architecture(filters, residual_blocks)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(Translator(filters, residual_blocks))


def build_domain_discriminator(filters: int = FILTERS, seed: int | None = None) -> DomainDiscriminator:
    """A PatchGAN: images ``(N, 1, 28, 28)`` in [-1, 1] -> scores ``(N, 1, 7, 7)``, one per 18x18 patch
    (plus the whole image's feature statistics, through instance norm); high means "this patch comes
    from a real image of my domain". Raw scores: squared against 1/0 by LSGAN, logits for "bce".
    Keras' initialisation.

    ``seed`` makes the initial weights repeatable (it reseeds PyTorch first).
    """
    cyclegan_task.check_architecture(filters, 0)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(DomainDiscriminator(filters))


def generator_adversarial_loss(fake_scores: torch.Tensor, gan_loss: str = GAN_LOSS) -> torch.Tensor:
    """One generator's adversarial loss from D's patch scores on its outputs, averaged over every patch:
    ``"lsgan"`` mean (D(G(x)) - 1)^2; ``"bce"`` the non-saturating cross-entropy against "real"."""
    if cyclegan_task.check_gan_loss(gan_loss) == "lsgan":
        return torch.mean((fake_scores - 1.0) ** 2)
    return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))


def discriminator_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, gan_loss: str = GAN_LOSS
) -> torch.Tensor:
    """One discriminator's loss, real images -> 1 and translations -> 0, each averaged over every patch:
    ``"lsgan"`` mean (D(y) - 1)^2 + mean D(G(x))^2; ``"bce"`` the binary cross-entropy of the scores
    as logits. (The paper halves it; Adam's steps do not depend on such a scale, so it is left whole.)"""
    if cyclegan_task.check_gan_loss(gan_loss) == "lsgan":
        return torch.mean((real_scores - 1.0) ** 2) + torch.mean(fake_scores**2)
    real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
    return real + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))


@torch.no_grad()
def translate(generator: nn.Module, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The translator's outputs for ``images`` (digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]."""
    x = tasks.to_data_range(as_digits(images, "images"), "tanh")[:, None]
    device = next(generator.parameters()).device
    parts = [
        generator(torch.from_numpy(x[i : i + batch_size]).to(device))[:, 0].cpu().numpy()
        for i in range(0, len(x), batch_size)
    ]
    return tasks.to_unit_range(np.concatenate(parts), "tanh")


class CycleGAN:
    """The translators ``g_ab`` (A -> B) and ``g_ba`` (B -> A), the discriminators ``d_a`` and ``d_b``,
    one Adam optimiser each, and the train step.

    ``cycle_weight`` and ``identity_weight`` weigh the cycle-consistency and identity L1 terms (0
    turns a term off); ``gan_loss`` is ``"lsgan"`` (the paper's) or ``"bce"``. ``filters`` and
    ``residual_blocks`` choose the networks; ``seed`` makes the initial weights repeatable (it
    reseeds PyTorch's global generator; ``None`` leaves it alone). ``device``: see
    :func:`companion.torch.runtime.device`; all four networks live there.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        cycle_weight: float = CYCLE_WEIGHT,
        identity_weight: float = IDENTITY_WEIGHT,
        gan_loss: str = GAN_LOSS,
        filters: int = FILTERS,
        residual_blocks: int = RESIDUAL_BLOCKS,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = cyclegan_task.CycleGanConfig(
            lr=lr, beta1=beta1, cycle_weight=cycle_weight, identity_weight=identity_weight, gan_loss=gan_loss
        )
        cyclegan_task.check_architecture(filters, residual_blocks)
        self.lr, self.beta1 = float(lr), float(beta1)
        self.cycle_weight, self.identity_weight = float(s.cycle_weight), float(s.identity_weight)
        self.gan_loss = s.gan_loss
        self.filters, self.residual_blocks = int(filters), int(residual_blocks)
        self.metrics = cyclegan_task.metric_names(self.cycle_weight, self.identity_weight)
        self.device = runtime.device(device)
        seeds = [None if seed is None else seed + i for i in range(4)]
        self.g_ab = build_translator(filters, residual_blocks, seed=seeds[0]).to(self.device)
        self.g_ba = build_translator(filters, residual_blocks, seed=seeds[1]).to(self.device)
        self.d_a = build_domain_discriminator(filters, seed=seeds[2]).to(self.device)
        self.d_b = build_domain_discriminator(filters, seed=seeds[3]).to(self.device)
        self.optimizers = {
            name: make_adam(getattr(self, name), lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            for name in cyclegan_task.NETWORKS
        }

    def _losses(
        self, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(generators' total loss, discriminators' total loss, metrics)`` of one forward pass."""
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        fake_b_scores, fake_a_scores = self.d_b(fake_b), self.d_a(fake_a)
        terms = {
            "g_adv": generator_adversarial_loss(fake_b_scores, self.gan_loss)
            + generator_adversarial_loss(fake_a_scores, self.gan_loss)
        }
        g_total = terms["g_adv"]
        if self.cycle_weight > 0:  # there and back again: A -> B -> A and B -> A -> B
            back_a, back_b = self.g_ba(fake_b), self.g_ab(fake_a)
            terms["cycle"] = torch.mean(torch.abs(back_a - a)) + torch.mean(torch.abs(back_b - b))
            g_total = g_total + self.cycle_weight * terms["cycle"]
        if self.identity_weight > 0:  # an image already in the target domain should pass unchanged
            same_b, same_a = self.g_ab(b), self.g_ba(a)
            terms["identity"] = torch.mean(torch.abs(same_b - b)) + torch.mean(torch.abs(same_a - a))
            g_total = g_total + self.identity_weight * terms["identity"]
        terms["d_a"] = discriminator_loss(self.d_a(a), fake_a_scores, self.gan_loss)
        terms["d_b"] = discriminator_loss(self.d_b(b), fake_b_scores, self.gan_loss)
        return g_total, terms["d_a"] + terms["d_b"], terms

    def train_step(self, images_a: torch.Tensor, images_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of all four networks from a batch of each domain, ``(B, 1, 28, 28)`` in [-1, 1]
        (unpaired: any two batches); returns the step's :data:`metrics`.

        Both gradients come from one forward pass (D's scores before its update), as the Keras step's
        two tapes; the paper updates G first and D after, on the same fakes.
        """
        g_total, d_total, terms = self._losses(images_a, images_b)
        for loss, names, retain in ((g_total, ("g_ab", "g_ba"), True), (d_total, ("d_a", "d_b"), False)):
            params = [p for name in names for p in getattr(self, name).parameters()]
            grads = torch.autograd.grad(loss, params, retain_graph=retain)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        for optimizer in self.optimizers.values():
            optimizer.step()
        return {name: value.detach() for name, value in terms.items()}

    @torch.no_grad()
    def losses(self, images_a: np.ndarray, images_b: np.ndarray) -> dict[str, float]:
        """The step's :data:`metrics` on digits in [0, 1] (``(N, 28, 28)`` or ``(N, 1, 28, 28)``, one
        batch of each domain, any sizes), without updating anything."""
        a, b = (
            torch.from_numpy(tasks.to_data_range(as_digits(x, name), "tanh")[:, None]).to(self.device)
            for x, name in ((images_a, "images_a"), (images_b, "images_b"))
        )
        _, _, terms = self._losses(a, b)
        return {name: float(value) for name, value in terms.items()}

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda batch: self.train_step(batch["images_a"], batch["images_b"]),
            models={name: getattr(self, name) for name in cyclegan_task.NETWORKS},
            optimizers=self.optimizers,
            device=self.device,
        )

    def a_to_b(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with ``g_ab``: domain-A digits in [0, 1] -> ``(N, 28, 28)`` in [0, 1]."""
        return translate(self.g_ab, images, batch_size)

    def b_to_a(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with ``g_ba``: domain-B digits in [0, 1] -> ``(N, 28, 28)`` in [0, 1]."""
        return translate(self.g_ba, images, batch_size)


def load(out_dir: str | os.PathLike, device: str | None = None) -> CycleGAN:
    """The CycleGAN trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = cyclegan_task.cyclegan_run(out_dir, FRAMEWORK)
    model = CycleGAN(
        lr=config["lr"],
        beta1=config["beta1"],
        cycle_weight=config["cycle_weight"],
        identity_weight=config["identity_weight"],
        gan_loss=config["gan_loss"],
        filters=config["filters"],
        residual_blocks=config["residual_blocks"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    domain_a: np.ndarray, domain_b: np.ndarray, **settings: Unpack[cyclegan_task.CycleGanSettings]
) -> tuple[CycleGAN, dict]:
    """Train a CycleGAN on two unpaired sets of digits in [0, 1] (``(N, 28, 28)`` or ``(N, 1, 28, 28)``,
    sizes may differ) through the one loop; returns ``(model, history)``. Settings, defaults and the
    batches: :class:`companion.training.cyclegan_task.CycleGanConfig`; the history holds per-epoch
    means of the step metrics (:func:`companion.training.cyclegan_task.metric_names`) and timings."""
    s = cyclegan_task.cyclegan_settings(settings)
    a, b = cyclegan_task.check_domains(domain_a, domain_b, s.batch_size)
    model = s.gan or CycleGAN(
        lr=s.lr,
        beta1=s.beta1,
        cycle_weight=s.cycle_weight,
        identity_weight=s.identity_weight,
        gan_loss=s.gan_loss,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(model, s, cyclegan_task.GIVEN_MODEL_KEYS, "cyclegan.train")
    architecture = {"filters": model.filters, "residual_blocks": model.residual_blocks}
    history = cyclegan_task.fit_cyclegan(model.trainer(), a[:, None], b[:, None], s, architecture)
    return model, history
