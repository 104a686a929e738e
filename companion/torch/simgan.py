"""SimGAN (Shrivastava et al., 2017) on 28x28 digits in PyTorch, matching ``companion.tensorflow.simgan``.

Same networks, layer names, losses, train step and run folder as the Keras side (its docstring
draws the refiner and the local discriminator). Keras' ``padding="same"`` is symmetric for every
layer here (3x3 stride 1, and 4x4 stride 2 on even sizes), so plain ``padding=1`` reproduces it.

Tensors are channels first: images ``(N, 1, 28, 28)`` in [-1, 1] inside the models. The public
helpers (:func:`refine`, :meth:`SimGAN.patch_logits`, :func:`train`) take digits ``(N, 28, 28)``
(or ``(N, 1, 28, 28)``) in [0, 1] and return NumPy arrays, as on the Keras side. Both networks
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
from companion.training import simgan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

SELF_REGULARISATION = simgan_task.SELF_REGULARISATION
FILTERS = simgan_task.FILTERS
BLOCKS = simgan_task.BLOCKS
LEAKY_SLOPE = simgan_task.LEAKY_SLOPE
ADAM_EPSILON = simgan_task.ADAM_EPSILON
PATCH_GRID = simgan_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = simgan_task.PATCH_RECEPTIVE_FIELD
HISTORY_SIZE = simgan_task.HISTORY_SIZE
METRICS = simgan_task.METRICS


class Refiner(nn.Module):
    """The ResNet refiner: synthetic digits ``(N, 1, 28, 28)`` in [-1, 1] -> refined ``(N, 1, 28, 28)`` in [-1, 1]."""

    def __init__(self, filters: int = FILTERS, blocks: int = BLOCKS) -> None:
        super().__init__()
        simgan_task.check_architecture(filters, blocks)
        f = int(filters)
        self.blocks = int(blocks)
        self.refiner_in = nn.Conv2d(1, f, 3, padding=1)
        for i in range(1, self.blocks + 1):  # named as the Keras layers, so the bridge pairs them by name
            setattr(self, f"block{i}_conv1", nn.Conv2d(f, f, 3, padding=1))
            setattr(self, f"block{i}_conv2", nn.Conv2d(f, f, 3, padding=1))
        self.refiner_out = nn.Conv2d(f, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.refiner_in(images))
        for i in range(1, self.blocks + 1):
            r = getattr(self, f"block{i}_conv2")(F.relu(getattr(self, f"block{i}_conv1")(h)))
            h = F.relu(h + r)  # the block learns a change to its input
        return torch.tanh(self.refiner_out(h))


class LocalDiscriminator(nn.Module):
    """The local discriminator: digits ``(N, 1, 28, 28)`` in [-1, 1] -> patch logits ``(N, 1, 7, 7)``."""

    def __init__(self, filters: int = FILTERS) -> None:
        super().__init__()
        simgan_task.check_architecture(filters, 0)
        f = int(filters)
        self.local1 = nn.Conv2d(1, f, 4, stride=2, padding=1)  # 14x14xF
        self.local2 = nn.Conv2d(f, 2 * f, 4, stride=2, padding=1)  # 7x7x2F
        self.local_logits = nn.Conv2d(2 * f, 1, 3, padding=1)  # 7x7x1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.local1(images), LEAKY_SLOPE)
        h = F.leaky_relu(self.local2(h), LEAKY_SLOPE)
        return self.local_logits(h)


def build_refiner(filters: int = FILTERS, blocks: int = BLOCKS, seed: int | None = None) -> Refiner:
    """The ResNet refiner: synthetic digits ``(N, 1, 28, 28)`` in [-1, 1] -> refined ``(N, 1, 28, 28)``
    in [-1, 1], with Keras' initialisation.

    ``filters`` (F) is the width of every 3x3 convolution, ``blocks`` the number of residual blocks.
    ``seed`` makes the initial weights repeatable (it reseeds PyTorch first).
    """
    simgan_task.check_architecture(filters, blocks)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(Refiner(filters, blocks))


def build_local_discriminator(filters: int = FILTERS, seed: int | None = None) -> LocalDiscriminator:
    """The local discriminator: digits ``(N, 1, 28, 28)`` in [-1, 1] -> logits ``(N, 1, 7, 7)``, one per
    18x18 patch (> 0: "this patch is from a real digit"), with Keras' initialisation.

    ``seed`` makes the initial weights repeatable (it reseeds PyTorch first).
    """
    simgan_task.check_architecture(filters, 0)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(LocalDiscriminator(filters))


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    """Mean binary cross-entropy of every patch logit against ``label`` (1 real, 0 refined)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def refiner_loss(
    refined_logits: torch.Tensor,
    refined: torch.Tensor,
    synthetic: torch.Tensor,
    self_regularisation: float = SELF_REGULARISATION,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, adversarial, regularisation)``: total = adversarial + ``self_regularisation`` x regularisation.

    adversarial: the non-saturating loss, binary cross-entropy of D's patch logits on refined
    images against "real", averaged over every patch (the local adversarial loss); regularisation:
    mean |refined - synthetic| over every pixel, in the [-1, 1] range the networks work in.
    """
    adversarial = _bce(refined_logits, 1.0)
    regularisation = torch.mean(torch.abs(refined - synthetic))
    return adversarial + self_regularisation * regularisation, adversarial, regularisation


def discriminator_loss(
    real_logits: torch.Tensor,
    refined_logits: torch.Tensor,
    history_logits: torch.Tensor,
    history_weight: torch.Tensor,
) -> torch.Tensor:
    """Binary cross-entropy, real digits -> 1 and refined ones -> 0, each averaged over every patch.

    With ``history_weight`` 1 the refined side is the first half of the new refined batch plus the
    equally many history images (the paper's buffer); with 0 (buffer still empty, or no buffer) it
    is the whole new refined batch.
    """
    half = len(history_logits)
    mixed = 0.5 * (_bce(refined_logits[:half], 0.0) + _bce(history_logits, 0.0))
    weight = torch.as_tensor(history_weight, dtype=mixed.dtype, device=mixed.device).reshape(())
    return _bce(real_logits, 1.0) + weight * mixed + (1.0 - weight) * _bce(refined_logits, 0.0)


@torch.no_grad()
def refine(refiner: nn.Module, synthetic: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The refiner's output for ``synthetic`` digits (``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]."""
    x = tasks.to_data_range(as_digits(synthetic, "synthetic"), "tanh")[:, None]
    device = next(refiner.parameters()).device
    parts = [
        refiner(torch.from_numpy(x[i : i + batch_size]).to(device))[:, 0].cpu().numpy()
        for i in range(0, len(x), batch_size)
    ]
    return tasks.to_unit_range(np.concatenate(parts), "tanh")


class SimGAN:
    """The refiner, the local discriminator, one Adam optimiser each, and the train step.

    ``filters`` and ``blocks`` choose the networks; ``seed`` makes the initial weights repeatable
    (it reseeds PyTorch's global generator; ``None`` leaves it alone). ``device``: see
    :func:`companion.torch.runtime.device`; both networks live there.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        self_regularisation: float = SELF_REGULARISATION,
        filters: int = FILTERS,
        blocks: int = BLOCKS,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = simgan_task.SimganConfig(lr=lr, beta1=beta1, self_regularisation=self_regularisation)
        simgan_task.check_architecture(filters, blocks)
        self.lr, self.beta1, self.self_regularisation = (
            float(s.lr),
            float(s.beta1),
            float(s.self_regularisation),
        )
        self.filters, self.blocks = int(filters), int(blocks)
        self.device = runtime.device(device)
        self.refiner = build_refiner(filters, blocks, seed=seed).to(self.device)
        self.discriminator = build_local_discriminator(filters, seed=None if seed is None else seed + 1).to(
            self.device
        )
        self.r_optimizer = make_adam(self.refiner, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)

    def train_step(
        self, synthetic: torch.Tensor, real: torch.Tensor, history: torch.Tensor, history_weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One update from ``synthetic`` and ``real`` batches ``(B, 1, 28, 28)`` and ``B / 2`` ``history``
        images, all in [-1, 1], ``history_weight`` ``(1,)`` (0 ignores the history); returns ``r_adv``,
        ``r_reg``, ``d_loss`` and ``refined``, the batch's refined images.

        Both gradients come from one forward pass (D before its update), as the Keras step's two tapes.
        """
        refined = self.refiner(synthetic)
        refined_logits = self.discriminator(refined)
        real_logits = self.discriminator(real)
        history_logits = self.discriminator(history)
        r_loss, r_adv, r_reg = refiner_loss(refined_logits, refined, synthetic, self.self_regularisation)
        d_loss = discriminator_loss(real_logits, refined_logits, history_logits, history_weight)
        r_params, d_params = list(self.refiner.parameters()), list(self.discriminator.parameters())
        r_grads = torch.autograd.grad(r_loss, r_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((r_params, r_grads), (d_params, d_grads)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        self.r_optimizer.step()
        self.d_optimizer.step()
        return {
            "r_adv": r_adv.detach(),
            "r_reg": r_reg.detach(),
            "d_loss": d_loss.detach(),
            "refined": refined.detach(),
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda b: self.train_step(b["synthetic"], b["real"], b["history"], b["history_weight"]),
            models={"refiner": self.refiner, "discriminator": self.discriminator},
            optimizers={"refiner": self.r_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )

    def refine(self, synthetic: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`refine` with this refiner: ``(N, 28, 28)`` in [0, 1] from synthetic digits in [0, 1]."""
        return refine(self.refiner, synthetic, batch_size)

    @torch.no_grad()
    def patch_logits(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """D's verdicts ``(N, 7, 7)`` (logits, > 0 "real") on digits in [0, 1]."""
        x = tasks.to_data_range(as_digits(images), "tanh")[:, None]
        parts = [
            self.discriminator(torch.from_numpy(x[i : i + batch_size]).to(self.device))[:, 0].cpu().numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)


def load(out_dir: str | os.PathLike, device: str | None = None) -> SimGAN:
    """The SimGAN trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = simgan_task.simgan_run(out_dir, FRAMEWORK)
    model = SimGAN(
        lr=config["lr"],
        beta1=config["beta1"],
        self_regularisation=config["self_regularisation"],
        filters=config["filters"],
        blocks=config["blocks"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    synthetic: np.ndarray, real: np.ndarray, **settings: Unpack[simgan_task.SimganSettings]
) -> tuple[SimGAN, dict]:
    """Train SimGAN on unpaired synthetic and real digits in [0, 1] through the one loop; returns
    ``(model, history)``. Settings, defaults and behaviour: :class:`companion.training.simgan_task.SimganConfig`;
    the history holds per-epoch means of ``r_adv``, ``r_reg`` and ``d_loss`` and timings."""
    s = simgan_task.simgan_settings(settings)
    x, y = simgan_task.check_domains(synthetic, real)
    model = s.gan or SimGAN(
        lr=s.lr, beta1=s.beta1, self_regularisation=s.self_regularisation, device=s.device, seed=s.seed
    )
    tasks.check_given_model(model, s, simgan_task.GIVEN_MODEL_KEYS, "simgan.train")
    architecture = {"filters": model.filters, "blocks": model.blocks}
    history = simgan_task.fit_simgan(
        model.trainer(), x[:, None], y[:, None], s, architecture, to_host=lambda t: t.cpu().numpy()
    )
    return model, history
