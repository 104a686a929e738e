"""Pix2pix (Isola et al., 2017) on 28x28 digits in PyTorch, matching ``companion.tensorflow.pix2pix``.

Same networks, layer names, losses, train step and run folder as the Keras side (its docstring
draws the U-Net and the PatchGAN). Keras' ``padding="same"`` is symmetric for every layer here (the
4x4 stride-2 layers work on even sizes), so plain ``padding=1`` reproduces it (the 7x7 bottleneck
layers pad nothing); batch norm uses
Keras' epsilon 1e-3 and momentum 0.99 (PyTorch 0.01), LeakyReLU the paper's slope 0.2.

Tensors are channels first: images ``(N, 1, 28, 28)`` in [-1, 1] inside the models. The public
helpers (:func:`translate`, :meth:`Pix2Pix.patch_logits`, :func:`train`) take digits
``(N, 28, 28)`` (or ``(N, 1, 28, 28)``) in [0, 1] and return NumPy arrays, as on the Keras side.
Both networks start from Keras' initialisation (``companion.torch.init``).
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
from companion.training import pix2pix_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

L1_WEIGHT = pix2pix_task.L1_WEIGHT
FILTERS = pix2pix_task.FILTERS
DROPOUT = pix2pix_task.DROPOUT
LEAKY_SLOPE = pix2pix_task.LEAKY_SLOPE
BN_EPSILON = pix2pix_task.BN_EPSILON
BN_MOMENTUM = 0.01  # PyTorch weights the new batch by 0.01: Keras momentum 0.99
ADAM_EPSILON = pix2pix_task.ADAM_EPSILON
PATCH_GRID = pix2pix_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = pix2pix_task.PATCH_RECEPTIVE_FIELD
METRICS = pix2pix_task.METRICS


def _down(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """4x4 stride-2 convolution, 28 -> 14 -> 7 (Keras "same": one pixel of padding on each side)."""
    return nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)


def _up(in_channels: int, out_channels: int, bias: bool = True) -> nn.ConvTranspose2d:
    """4x4 stride-2 transposed convolution, 7 -> 14 -> 28 (Keras "same": one pixel cropped on each side)."""
    return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)


def _same(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 stride-1 convolution that keeps the size."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def _normalized(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class UNet(nn.Module):
    """The U-Net generator: images ``(N, 1, 28, 28)`` in [-1, 1] -> translations ``(N, 1, 28, 28)`` in [-1, 1]."""

    def __init__(self, filters: int = FILTERS, dropout: float = DROPOUT) -> None:
        super().__init__()
        pix2pix_task.check_architecture(filters, dropout)
        f = int(filters)
        self.rate = float(dropout)
        self.down1 = _down(1, f)  # 14x14xF, no batch norm (as in the paper)
        self.down2 = _down(f, 2 * f, bias=False)  # 7x7x2F
        self.bn_down2 = _normalized(2 * f)
        self.down3 = nn.Conv2d(2 * f, 4 * f, 7)  # 1x1x4F: the paper's innermost layer, no batch norm
        self.up3 = nn.ConvTranspose2d(4 * f, 2 * f, 7, bias=False)  # 7x7x2F
        self.bn_up3 = _normalized(2 * f)
        self.up2 = _up(4 * f, 2 * f, bias=False)  # concat(up3, down2) -> 14x14x2F
        self.bn_up2 = _normalized(2 * f)
        self.up1 = _up(3 * f, 1)  # concat(up2, down1) -> 28x28x1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        e1 = F.leaky_relu(self.down1(images), LEAKY_SLOPE)
        e2 = F.leaky_relu(self.bn_down2(self.down2(e1)), LEAKY_SLOPE)
        e3 = F.leaky_relu(self.down3(e2), LEAKY_SLOPE)
        h = F.relu(F.dropout(self.bn_up3(self.up3(e3)), self.rate, self.training))
        h = torch.cat([h, e2], dim=1)  # skip at 7x7
        h = F.relu(F.dropout(self.bn_up2(self.up2(h)), self.rate, self.training))
        return torch.tanh(self.up1(torch.cat([h, e1], dim=1)))  # skip at 14x14


class PatchDiscriminator(nn.Module):
    """The PatchGAN: ``(inputs, images)``, each ``(N, 1, 28, 28)`` in [-1, 1] -> logits ``(N, 1, 7, 7)``."""

    def __init__(self, filters: int = FILTERS) -> None:
        super().__init__()
        pix2pix_task.check_architecture(filters, 0.0)
        f = int(filters)
        self.patch1 = _down(2, f)  # 14x14xF
        self.patch2 = _down(f, 2 * f, bias=False)  # 7x7x2F
        self.bn_patch2 = _normalized(2 * f)
        self.patch_logits = _same(2 * f, 1)  # 7x7x1

    def forward(self, inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        h = torch.cat([inputs, images], dim=1)  # D judges the pair, not the image alone
        h = F.leaky_relu(self.patch1(h), LEAKY_SLOPE)
        h = F.leaky_relu(self.bn_patch2(self.patch2(h)), LEAKY_SLOPE)
        return self.patch_logits(h)


def build_unet(filters: int = FILTERS, dropout: float = DROPOUT, seed: int | None = None) -> UNet:
    """The U-Net generator: images ``(N, 1, 28, 28)`` in [-1, 1] -> translations ``(N, 1, 28, 28)`` in [-1, 1],
    with Keras' initialisation.

    ``filters`` (F) sets the widths F, 2F, 4F; ``dropout`` is the decoder's rate (0 turns it off).
    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds PyTorch first).
    Layers followed by batch norm carry no bias (BN's offset replaces it).
    """
    pix2pix_task.check_architecture(filters, dropout)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(UNet(filters, dropout))


def build_patch_discriminator(filters: int = FILTERS, seed: int | None = None) -> PatchDiscriminator:
    """The PatchGAN: ``(inputs, images)``, each ``(N, 1, 28, 28)`` in [-1, 1] -> logits ``(N, 1, 7, 7)``,
    one per 18x18 patch of the pair (> 0: "this patch of ``images`` is the real target of ``inputs``"),
    with Keras' initialisation.

    ``seed`` makes the initial weights repeatable (it reseeds PyTorch first).
    """
    pix2pix_task.check_architecture(filters, 0.0)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(PatchDiscriminator(filters))


def generator_loss(
    fake_logits: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, l1_weight: float = L1_WEIGHT
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, adversarial, l1)``: total = adversarial + ``l1_weight`` x l1.

    adversarial: the non-saturating loss, binary cross-entropy of D's patch logits on G's outputs
    against "real", averaged over every patch; l1: mean |targets - outputs| over every pixel, in the
    [-1, 1] range the networks work in (twice the error in [0, 1] pixels).
    """
    adversarial = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    l1 = torch.mean(torch.abs(targets - outputs))
    return adversarial + l1_weight * l1, adversarial, l1


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, real pairs -> 1 and generated pairs -> 0, each averaged over every patch.

    (The paper halves it to slow D down; Adam's steps do not depend on such a scale, so it is left whole.)
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    return real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


@torch.no_grad()
def translate(generator: nn.Module, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The generator's translations of ``inputs`` (digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]; eval mode (batch norm's running statistics, no dropout)."""
    x = tasks.to_data_range(as_digits(inputs, "inputs"), "tanh")[:, None]
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    parts = [
        generator(torch.from_numpy(x[i : i + batch_size]).to(device))[:, 0].cpu().numpy()
        for i in range(0, len(x), batch_size)
    ]
    generator.train(was_training)
    return tasks.to_unit_range(np.concatenate(parts), "tanh")


class Pix2Pix:
    """The U-Net generator, the PatchGAN discriminator, one Adam optimiser each, and the train step.

    ``adversarial=False`` makes the L1-only baseline: the step updates G on L1 alone and never
    touches D. ``filters`` and ``dropout`` choose the networks; ``seed`` makes the initial weights
    and dropout masks repeatable (it reseeds PyTorch's global generator; ``None`` leaves it alone).
    ``device``: see :func:`companion.torch.runtime.device`; both networks live there.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        l1_weight: float = L1_WEIGHT,
        adversarial: bool = True,
        filters: int = FILTERS,
        dropout: float = DROPOUT,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = pix2pix_task.Pix2PixConfig(lr=lr, beta1=beta1, l1_weight=l1_weight, adversarial=adversarial)
        self.l1_weight, self.adversarial = s.l1_weight, s.adversarial
        self.lr, self.beta1 = float(lr), float(beta1)
        self.filters, self.dropout = int(filters), float(dropout)
        self.device = runtime.device(device)
        self.generator = build_unet(filters, dropout, seed=seed).to(self.device)
        self.discriminator = build_patch_discriminator(filters, seed=None if seed is None else seed + 1).to(
            self.device
        )
        self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update from a batch of pairs ``(B, 1, 28, 28)`` in [-1, 1]; returns the step's ``g_l1``,
        ``g_adv`` and ``d_loss`` (``g_l1`` alone for the L1 baseline).

        Both gradients come from one forward pass (D before its update), as the Keras step's two tapes.
        """
        self.generator.train()
        self.discriminator.train()
        outputs = self.generator(inputs)
        if not self.adversarial:
            l1 = torch.mean(torch.abs(targets - outputs))
            self.g_optimizer.zero_grad(set_to_none=True)
            l1.backward()
            self.g_optimizer.step()
            return {"g_l1": l1.detach()}
        real_logits = self.discriminator(inputs, targets)
        fake_logits = self.discriminator(inputs, outputs)
        g_loss, g_adv, g_l1 = generator_loss(fake_logits, outputs, targets, self.l1_weight)
        d_loss = discriminator_loss(real_logits, fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        self.g_optimizer.step()
        self.d_optimizer.step()
        return {"g_l1": g_l1.detach(), "g_adv": g_adv.detach(), "d_loss": d_loss.detach()}

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda batch: self.train_step(batch["inputs"], batch["targets"]),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )

    def translate(self, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with this generator: ``(N, 28, 28)`` in [0, 1] from inputs in [0, 1]."""
        return translate(self.generator, inputs, batch_size)

    @torch.no_grad()
    def patch_logits(self, inputs: np.ndarray, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """D's verdicts ``(N, 7, 7)`` (logits, > 0 "real") on pairs of digits in [0, 1], eval mode."""
        x, y = pix2pix_task.check_pairs(inputs, images)
        was_training = self.discriminator.training
        self.discriminator.eval()
        parts = []
        for i in range(0, len(x), batch_size):
            batch = [torch.from_numpy(a[i : i + batch_size, None]).to(self.device) for a in (x, y)]
            parts.append(self.discriminator(*batch)[:, 0].cpu().numpy())
        self.discriminator.train(was_training)
        return np.concatenate(parts)


def load(out_dir: str | os.PathLike, device: str | None = None) -> Pix2Pix:
    """The pix2pix model (or L1 baseline) trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = pix2pix_task.pix2pix_run(out_dir, FRAMEWORK)
    model = Pix2Pix(
        lr=config["lr"],
        beta1=config["beta1"],
        l1_weight=config["l1_weight"],
        adversarial=config["adversarial"],
        filters=config["filters"],
        dropout=config["dropout"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    inputs: np.ndarray, targets: np.ndarray, **settings: Unpack[pix2pix_task.Pix2PixSettings]
) -> tuple[Pix2Pix, dict]:
    """Train pix2pix (or, with ``adversarial=False``, the L1 baseline) on paired digits in [0, 1]
    through the one loop; returns ``(model, history)``. Settings, defaults and behaviour:
    :class:`companion.training.pix2pix_task.Pix2PixConfig`; the history holds per-epoch means of
    ``g_l1``, ``g_adv`` and ``d_loss`` (``g_l1`` alone for the baseline) and timings."""
    s = pix2pix_task.pix2pix_settings(settings)
    x, y = pix2pix_task.check_pairs(inputs, targets)
    model = s.gan or Pix2Pix(
        lr=s.lr,
        beta1=s.beta1,
        l1_weight=s.l1_weight,
        adversarial=s.adversarial,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(model, s, pix2pix_task.GIVEN_MODEL_KEYS, "pix2pix.train")
    architecture = {"filters": model.filters, "dropout": model.dropout}
    history = pix2pix_task.fit_pix2pix(model.trainer(), x[:, None], y[:, None], s, architecture)
    return model, history
