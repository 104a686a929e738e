"""The conditional GAN chapter: a small label-conditioned DCGAN in PyTorch, matching ``companion.tensorflow.cgan``.

Same networks, layer names, hyperparameters, train step and run folder as the Keras side, so that
weights copied with ``companion.bridge`` give the same outputs. Four Keras details are copied:
4x4 stride-2 convolutions with ``padding="same"`` pad one pixel on each side (``padding=1``, here
for the transposed ones too); batch norm uses epsilon 1e-3 and momentum 0.01 (Keras' 0.99); the
generator reads its dense output as (7, 7, 64) and the discriminator flattens its features channels
last, as Keras does, so dense kernels copy without reordering.

Tensors are channels first inside the models: images ``(N, 1, 28, 28)`` in [-1, 1]; the label's
``n_classes`` constant maps are stacked onto the image channel (``(N, 1 + n_classes, 28, 28)``).
The CGAN keeps both networks and its batches channels last in memory, for speed on CPUs. The public helpers (:func:`generate`, :func:`discriminate`, :func:`sample`, :func:`train`) take and
return ``(N, 28, 28)`` arrays in [0, 1], as on the Keras side. Both networks start from Keras'
initialisation (``companion.torch.init``).
"""

from __future__ import annotations

import os
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.noise import sample_latent
from companion.torch import runtime
from companion.torch.init import initialize
from companion.torch.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.training import cgan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError
from companion.validation import check_images, check_positive

N_CLASSES, NOISE_DIM, N_PER_CLASS = cgan_task.N_CLASSES, cgan_task.NOISE_DIM, cgan_task.N_PER_CLASS
METRICS = cgan_task.METRICS
G_FILTERS = (64, 32)  # channels at 7x7 and 14x14: small enough to train in minutes on two CPU cores
D_FILTERS = (32, 64)  # channels at 14x14 and 7x7
KERNEL = 4  # with stride 2, Keras' "same" padding is one pixel on each side: padding=1 here
LEAKY_SLOPE = 0.2  # the DCGAN paper's
BN_EPSILON = 1e-3  # Keras default (PyTorch's own is 1e-5)
BN_MOMENTUM = 0.01  # PyTorch weights the new batch by 0.01: Keras momentum 0.99
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default


class CganGenerator(nn.Module):
    """Noise ``(N, noise_dim)`` and labels ``(N, n_classes)`` -> images ``(N, 1, 28, 28)`` in [-1, 1];
    ``n_classes=0``: noise only (the unconditional twin)."""

    def __init__(self, n_classes: int = N_CLASSES, noise_dim: int = NOISE_DIM) -> None:
        super().__init__()
        self.n_classes = cgan_task.check_n_classes(n_classes)
        check_positive("noise_dim", noise_dim, integer=True)
        self.noise_dim = int(noise_dim)
        c1, c2 = G_FILTERS
        # Layers followed by batch norm need no bias: BN's offset replaces it.
        self.project = nn.Linear(self.noise_dim + self.n_classes, 7 * 7 * c1, bias=False)
        self.bn0 = nn.BatchNorm1d(7 * 7 * c1, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv1 = nn.ConvTranspose2d(c1, c2, KERNEL, stride=2, padding=1, bias=False)  # 14x14
        self.bn1 = nn.BatchNorm2d(c2, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv2 = nn.ConvTranspose2d(c2, 1, KERNEL, stride=2, padding=1)  # 28x28

    def forward(self, noise: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = noise if onehot is None else torch.cat([noise, onehot], dim=1)
        h = F.leaky_relu(self.bn0(self.project(h)), LEAKY_SLOPE)
        h = h.view(len(h), 7, 7, G_FILTERS[0]).permute(0, 3, 1, 2)  # read channels last, as Keras does
        h = F.leaky_relu(self.bn1(self.deconv1(h)), LEAKY_SLOPE)
        return torch.tanh(self.deconv2(h))


class CganDiscriminator(nn.Module):
    """Images ``(N, 1, 28, 28)`` in [-1, 1] and labels ``(N, n_classes)`` -> one logit per image
    ``(N, 1)``; ``n_classes=0``: images only. The label enters as constant maps next to the pixels."""

    def __init__(self, n_classes: int = N_CLASSES, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.n_classes = cgan_task.check_n_classes(n_classes)
        c1, c2 = D_FILTERS
        self.conv1 = nn.Conv2d(1 + self.n_classes, c1, KERNEL, stride=2, padding=1)  # 14x14
        self.conv2 = nn.Conv2d(c1, c2, KERNEL, stride=2, padding=1)  # 7x7
        self.logit = nn.Linear(7 * 7 * c2, 1)
        self.rate = dropout

    def dropout(self, h: torch.Tensor) -> torch.Tensor:
        """``F.dropout``, with the mask drawn by ``rand_like``: ``bernoulli_`` is slower on CPUs."""
        if not self.training or self.rate == 0.0:
            return h
        return h * (torch.rand_like(h) >= self.rate) / (1.0 - self.rate)

    def forward(self, images: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = images
        if onehot is not None:
            maps = onehot[:, :, None, None].expand(-1, -1, *images.shape[2:])
            h = torch.cat([images, maps], dim=1)
        h = self.dropout(F.leaky_relu(self.conv1(h), LEAKY_SLOPE))
        h = self.dropout(F.leaky_relu(self.conv2(h), LEAKY_SLOPE))
        return self.logit(h.permute(0, 2, 3, 1).flatten(1))  # flatten channels last, as Keras does


def build_cgan_generator(n_classes: int = N_CLASSES, noise_dim: int = NOISE_DIM) -> CganGenerator:
    """Noise ``(N, noise_dim)`` and labels ``(N, n_classes)`` -> images ``(N, 1, 28, 28)`` in [-1, 1],
    with Keras' initialisation; ``n_classes=0``: noise only. Call it as ``model(noise, onehot)``."""
    return initialize(CganGenerator(n_classes, noise_dim))


def build_cgan_discriminator(n_classes: int = N_CLASSES, dropout: float = DROPOUT) -> CganDiscriminator:
    """Images ``(N, 1, 28, 28)`` in [-1, 1] and labels ``(N, n_classes)`` -> logits ``(N, 1)``, with
    Keras' initialisation; ``n_classes=0``: images only. Call it as ``model(images, onehot)``."""
    return initialize(CganDiscriminator(n_classes, dropout))


def gan_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch. D wants real -> 1
    and fake -> 0; G wants D to call its fakes real (the non-saturating loss)."""
    bce = F.binary_cross_entropy_with_logits
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    return g_loss, d_loss


class CGAN:
    """A conditional GAN (``n_classes`` > 0) or its unconditional twin (``n_classes=0``): generator,
    discriminator, one Adam optimiser each (lr 2e-4, beta_1 0.5, epsilon 1e-7) and the train step.

    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds PyTorch's global
    generator); ``None`` leaves the global state alone. ``device``: see :func:`companion.torch.runtime.device`.
    """

    def __init__(
        self,
        *,
        n_classes: int = N_CLASSES,
        noise_dim: int = NOISE_DIM,
        lr: float = 2e-4,
        beta1: float = 0.5,
        dropout: float = DROPOUT,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr)
        self.n_classes, self.noise_dim = cgan_task.check_n_classes(n_classes), int(noise_dim)
        self.device = runtime.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.generator = build_cgan_generator(n_classes, noise_dim).to(self.device)
        self.discriminator = build_cgan_discriminator(n_classes, dropout).to(self.device)
        # Channels last: a training step ran about 1.2x faster on a CPU (35 vs 43 ms, batch 64, one thread).
        for model in (self.generator, self.discriminator):
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
        self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)

    def train_step(
        self, images: torch.Tensor, noise: torch.Tensor, onehot: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One update of D and G from ONE forward pass, as the Keras side's two tapes: images
        ``(B, 1, 28, 28)`` in [-1, 1], noise ``(B, noise_dim)``, the real images' one-hot labels
        ``(B, n_classes)`` (``None`` for the twin). The fakes are drawn for the real batch's labels.
        """
        self.generator.train()
        self.discriminator.train()
        fake = self.generator(noise, onehot)
        real_logits = self.discriminator(images, onehot)
        fake_logits = self.discriminator(fake, onehot)
        g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        # Each loss's gradient for its own network only (D's before its update), then both steps.
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        self.g_optimizer.step()
        self.d_optimizer.step()
        return {
            "g_loss": g_loss.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),  # D(x, y): 1 means "sure it is real"
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),  # D(G(z, y), y) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around the train step."""
        return Trainer(
            lambda batch: self.train_step(
                batch["real"].contiguous(memory_format=torch.channels_last),
                batch["noise"],
                batch.get("onehot"),
            ),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate(
    generator: CganGenerator, noise: np.ndarray, labels: object = None, batch_size: int = 500
) -> np.ndarray:
    """Images ``(N, 28, 28)`` in [0, 1] (eval mode) from finite noise ``(N, noise_dim)`` and
    ``labels``: one digit for all, integers ``(N,)`` or (soft) label vectors ``(N, n_classes)``;
    ``None``: digits 0, 1, ..., 9, 0, ... in turn (the only choice for the unconditional twin)."""
    noise = check_images(noise, name="noise", value_range=(-np.inf, np.inf), shape=(generator.noise_dim,))
    onehot = cgan_task.expand_labels(labels, len(noise), generator.n_classes)
    device, was_training = _device(generator), generator.training
    generator.eval()
    parts = []
    for i in range(0, len(noise), batch_size):
        rows = None if onehot is None else torch.from_numpy(onehot[i : i + batch_size]).to(device)
        parts.append(
            generator(torch.from_numpy(noise[i : i + batch_size]).to(device), rows)[:, 0].cpu().numpy()
        )
    generator.train(was_training)
    return (np.concatenate(parts) + 1.0) / 2.0  # tanh's [-1, 1] -> [0, 1]


@torch.no_grad()
def discriminate(
    discriminator: CganDiscriminator, images: np.ndarray, labels: object = None, batch_size: int = 500
) -> np.ndarray:
    """Logits ``(N,)`` (eval mode) for images ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1], each
    judged with its label (integers ``(N,)`` or label vectors; ``None`` for the twin)."""
    x = cgan_task.check_cgan_images(images)[:, None]
    onehot = cgan_task.judged_labels(labels, len(x), discriminator.n_classes)
    device, was_training = _device(discriminator), discriminator.training
    discriminator.eval()
    parts = []
    for i in range(0, len(x), batch_size):
        rows = None if onehot is None else torch.from_numpy(onehot[i : i + batch_size]).to(device)
        parts.append(
            discriminator(torch.from_numpy(x[i : i + batch_size]).to(device), rows)[:, 0].cpu().numpy()
        )
    discriminator.train(was_training)
    return np.concatenate(parts)


def sample(gan_or_generator: CGAN | CganGenerator, n: int, label: object = None, seed: int = 0) -> np.ndarray:
    """``n`` images ``(n, 28, 28)`` in [0, 1] from noise drawn by NumPy with ``seed`` (the same in both
    frameworks). ``label``: one digit for all, integers ``(n,)``, (soft) vectors ``(n, n_classes)``,
    or ``None``: digits 0, 1, ..., 9, 0, ... in turn (the twin takes ``None`` only)."""
    generator = gan_or_generator.generator if isinstance(gan_or_generator, CGAN) else gan_or_generator
    check_positive("n", n, integer=True)
    return generate(generator, sample_latent(int(n), generator.noise_dim, seed=seed), label)


def load(out_dir: str | os.PathLike, device: str | None = None) -> CGAN:
    """The conditional GAN (or twin) trained into run folder ``out_dir``, with its latest checkpoint's weights."""
    config, folder = cgan_task.cgan_run(out_dir, FRAMEWORK)
    gan = CGAN(
        n_classes=config["n_classes"],
        noise_dim=config["noise_dim"],
        lr=config["lr"],
        beta1=config["beta1"],
        device=device,
    )
    load_weights(folder, {"generator": gan.generator, "discriminator": gan.discriminator}, device)
    return gan


def train(
    images: np.ndarray, labels: np.ndarray | None = None, **settings: Unpack[cgan_task.CganSettings]
) -> tuple[CGAN, dict]:
    """Train on digits ``(N, 28, 28)`` (or ``(N, 1, 28, 28)``) in [0, 1] and their labels through the
    one loop; returns ``(gan, history)``. The history holds per-epoch means of ``g_loss``, ``d_loss``,
    ``d_real`` and ``d_fake`` and timings. Settings, defaults and behaviour:
    :class:`companion.training.cgan_task.CganConfig` (``n_classes=0``: the unconditional twin, which
    ignores the labels)."""
    s = cgan_task.cgan_settings(settings)
    x = cgan_task.check_cgan_images(images)[:, None]
    onehot = cgan_task.check_training_labels(labels, len(x), s.n_classes)
    gan = s.gan or CGAN(n_classes=s.n_classes, lr=s.lr, beta1=s.beta1, device=s.device, seed=s.seed)
    tasks.check_given_model(gan, s, ("n_classes",), "cgan.train")

    def grid(noise: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return generate(gan.generator, noise, rows)

    history = cgan_task.train_cgan(gan.trainer(), grid, x, onehot, gan.noise_dim, s)
    return gan, history
