"""The DCGAN chapter: the DCGAN of the TensorFlow tutorial, in PyTorch, matching ``companion.tensorflow.dcgan``.

Same networks, layer names, hyperparameters, train step and run folder as the Keras side. To give
identical outputs from copied weights (``companion.bridge``), this side copies four Keras details:

- padding: Keras ``"same"`` with kernel 5 and stride 2 pads 1 pixel before and 2 after, so the
  convolutions pad explicitly with ``F.pad(x, (1, 2, 1, 2))``; the stride-2 transposed
  convolutions crop 1 pixel before and 2 after (``padding=1``, then drop the last row and column);
- batch norm: epsilon 1e-3 and momentum 0.01 (Keras 0.99 counts the other way round);
- LeakyReLU slope 0.3, the Keras layer's default that the tutorial relies on;
- channels-last flattening: G's dense output is read as (7, 7, 256) and D's features are
  flattened from (7, 7, 128), so the dense weights need no reordering.

Tensors are channels first: images ``(N, 1, 28, 28)`` in [-1, 1] inside the models (in [0, 1] for a
generator built with ``output="sigmoid"``; the discriminator stores them channels last in memory, for speed). The public helpers
(:meth:`DCGAN.generate`, :meth:`DCGAN.discriminate`, :func:`train`) take and return
``(N, 28, 28)`` arrays in [0, 1], as on the Keras side.

Both networks start from Keras' initialisation (Glorot-uniform kernels, zero biases;
``companion.torch.init``), so a recipe starts from the same weight distribution on both sides.

Two differences remain, both tiny and harmless for training: PyTorch updates a batch norm's
running variance with the unbiased batch variance, Keras with the biased one (a factor
N / (N - 1)), and Adam adds its epsilon after the bias correction in PyTorch, before it in Keras.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.torch import runtime
from companion.torch.init import initialize
from companion.torch.training import FRAMEWORK, Trainer, make_adam
from companion.training import tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError
from companion.training.run_folder import latest_epoch
from companion.validation import check_images, check_positive

NOISE_DIM, N_FIXED, N_PROBE = tasks.DCGAN_NOISE_DIM, tasks.N_FIXED, tasks.N_PROBE
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")
KERNEL = 5
LEAKY_SLOPE = 0.3  # the tutorial's Keras LeakyReLU() default, set explicitly on both sides
BN_EPSILON = 1e-3  # Keras default (PyTorch's own is 1e-5)
BN_MOMENTUM = 0.01  # PyTorch weights the new batch by 0.01: Keras momentum 0.99
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default
probe_samples = tasks.probe_samples


class SameConv(nn.Conv2d):
    """5x5 stride-2 convolution with Keras ``padding="same"``: 1 pixel before, 2 after."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, KERNEL, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (1, 2, 1, 2)))


class SameConvTranspose(nn.ConvTranspose2d):
    """5x5 transposed convolution (no bias unless asked) with Keras ``padding="same"``: output = stride * input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool = False) -> None:
        # Stride 1 crops 2 pixels on each side. Stride 2 must crop 1 before and 2 after:
        # padding=1 crops one on each side and forward() drops the last row and column.
        padding = 2 if stride == 1 else 1
        super().__init__(in_channels, out_channels, KERNEL, stride=stride, padding=padding, bias=bias)

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        y = super().forward(input, output_size)
        # contiguous(): batch norm's backward pass is several times slower on a strided view.
        return y[:, :, :-1, :-1].contiguous() if self.stride[0] == 2 else y


class Generator(nn.Module):
    """Noise ``(N, noise_dim)`` -> images ``(N, 1, 28, 28)`` in [-1, 1] (tanh) or [0, 1] (``output="sigmoid"``).

    ``batch_norm=False`` replaces the batch norm layers by identities.
    """

    def __init__(self, noise_dim: int = NOISE_DIM, batch_norm: bool = True, output: str = "tanh") -> None:
        super().__init__()
        check_positive("noise_dim", noise_dim, integer=True)
        tasks.check_dcgan_architecture(batch_norm, output)
        self.output = output
        # A layer followed by batch norm needs no bias (BN's offset replaces it); without BN it gets one back.
        bias = not batch_norm

        def normalized(norm: type[nn.BatchNorm1d | nn.BatchNorm2d], channels: int) -> nn.Module:
            return norm(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM) if batch_norm else nn.Identity()

        self.project = nn.Linear(noise_dim, 7 * 7 * 256, bias=bias)
        self.bn0 = normalized(nn.BatchNorm1d, 7 * 7 * 256)
        self.deconv1 = SameConvTranspose(256, 128, stride=1, bias=bias)  # 7x7x128
        self.bn1 = normalized(nn.BatchNorm2d, 128)
        self.deconv2 = SameConvTranspose(128, 64, stride=2, bias=bias)  # 14x14x64
        self.bn2 = normalized(nn.BatchNorm2d, 64)
        self.deconv3 = SameConvTranspose(64, 1, stride=2)  # 28x28x1

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.bn0(self.project(noise)), LEAKY_SLOPE)
        h = h.view(-1, 7, 7, 256).permute(0, 3, 1, 2)  # read the dense output channels last, as Keras does
        h = F.leaky_relu(self.bn1(self.deconv1(h)), LEAKY_SLOPE)
        h = F.leaky_relu(self.bn2(self.deconv2(h)), LEAKY_SLOPE)
        y = self.deconv3(h)
        return torch.tanh(y) if self.output == "tanh" else torch.sigmoid(y)


class Discriminator(nn.Module):
    """Images ``(N, 1, 28, 28)`` in the generator's range -> one logit per image ``(N, 1)`` (real > 0 > fake)."""

    def __init__(self, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.conv1 = SameConv(1, 64)  # 14x14x64
        self.conv2 = SameConv(64, 128)  # 7x7x128
        self.rate = dropout
        self.logit = nn.Linear(7 * 7 * 128, 1)

    def dropout(self, h: torch.Tensor) -> torch.Tensor:
        """``F.dropout``, with the mask drawn by ``rand_like``: ``bernoulli_`` is slower on CPUs."""
        if not self.training or self.rate == 0.0:
            return h
        return h * (torch.rand_like(h) >= self.rate) / (1.0 - self.rate)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.leaky_relu(self.conv1(images), LEAKY_SLOPE))
        h = self.dropout(F.leaky_relu(self.conv2(h), LEAKY_SLOPE))
        return self.logit(h.permute(0, 2, 3, 1).flatten(1))  # flatten channels last, as Keras does


def make_generator(
    noise_dim: int = NOISE_DIM, seed: int | None = None, batch_norm: bool = True, output: str = "tanh"
) -> Generator:
    """Noise ``(N, noise_dim)`` -> images ``(N, 1, 28, 28)`` in [-1, 1] (tanh) or [0, 1] (``output="sigmoid"``),
    with Keras' initialisation.

    ``batch_norm=False`` leaves out the batch norm layers. ``seed`` makes the initial weights
    repeatable (it reseeds PyTorch's global generator first).
    """
    tasks.check_dcgan_architecture(batch_norm, output)
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(Generator(noise_dim, batch_norm=batch_norm, output=output))


def make_discriminator(dropout: float = DROPOUT, seed: int | None = None) -> Discriminator:
    """Images ``(N, 1, 28, 28)`` in the generator's range -> one logit per image ``(N, 1)``, with Keras' initialisation.

    ``seed`` makes the initial weights and the dropout masks' stream repeatable.
    """
    if seed is not None:
        torch.manual_seed(seed)
    return initialize(Discriminator(dropout))


def gan_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch.

    D wants real -> 1 and fake -> 0; G wants D to call its fakes real (the non-saturating loss).
    """
    bce = F.binary_cross_entropy_with_logits
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    return g_loss, d_loss


class DCGAN:
    """Generator, discriminator, one Adam optimiser each, and the train step.

    ``batch_norm`` and ``output`` choose the generator (:func:`make_generator`); the data range follows
    ``output``, and :meth:`generate` and :meth:`discriminate` take and give [0, 1] either way.
    The discriminator runs channels last, which its convolutions like on CPUs; the generator stays
    channels first because PyTorch's channels-last batch norm was several times slower there.
    ``jit_compile=True`` wraps both networks in ``torch.compile`` (``benchmarks/dcgan_speed.py``
    measures it). ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds
    PyTorch's global generator); ``None`` leaves the global state alone. ``device``: see
    :func:`companion.torch.runtime.device`; both networks live there.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        noise_dim: int = NOISE_DIM,
        batch_norm: bool = True,
        output: str = "tanh",
        dropout: float = DROPOUT,
        jit_compile: bool = False,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr)
        tasks.check_dcgan_architecture(batch_norm, output)
        self.noise_dim = int(noise_dim)
        self.batch_norm, self.output = batch_norm, output
        self.device = runtime.device(device)
        self.jit_compile = bool(jit_compile)
        self.generator = make_generator(noise_dim, seed=seed, batch_norm=batch_norm, output=output).to(
            self.device
        )
        self.discriminator = make_discriminator(dropout, seed=None if seed is None else seed + 1).to(
            self.device
        )
        self.discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
        self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._g: Callable[..., torch.Tensor] = self.generator
        self._d: Callable[..., torch.Tensor] = self.discriminator
        if jit_compile:
            self._g, self._d = torch.compile(self.generator), torch.compile(self.discriminator)

    def train_step(self, images: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of D and G from one forward pass, as the TF tutorial's two tapes do.

        Both gradients come from the same forward pass (D before its update), so this matches
        the Keras step; the usual PyTorch recipe instead re-runs D after updating it.
        """
        self.generator.train()
        self.discriminator.train()
        fake = self._g(noise)
        real_logits = self._d(images)
        fake_logits = self._d(fake)
        g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for p, g in zip(params, grads):
                p.grad = g
        self.g_optimizer.step()
        self.d_optimizer.step()
        return {
            "g_loss": g_loss.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),  # D(x): 1 means "sure it is real"
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),  # D(G(z)) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            # The discriminator's convolutions are fastest on channels-last images.
            lambda batch: self.train_step(
                batch["real"].contiguous(memory_format=torch.channels_last), batch["noise"]
            ),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )

    @torch.no_grad()
    def generate(self, noise: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Images ``(N, 28, 28)`` in [0, 1] from finite noise ``(N, noise_dim)`` (eval mode)."""
        noise = check_images(noise, name="noise", value_range=(-np.inf, np.inf), shape=(self.noise_dim,))
        self.generator.eval()
        parts = [
            self.generator(torch.from_numpy(noise[i : i + batch_size]).to(self.device))[:, 0].cpu().numpy()
            for i in range(0, len(noise), batch_size)
        ]
        return tasks.to_unit_range(np.concatenate(parts), self.output)

    @torch.no_grad()
    def discriminate(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Logits ``(N,)`` for images ``(N, 28, 28)`` in [0, 1] (eval mode)."""
        x = tasks.to_data_range(check_images(images, name="images", shape=(28, 28)), self.output)
        self.discriminator.eval()
        parts = [
            self.discriminator(
                torch.from_numpy(x[i : i + batch_size, None]).to(
                    self.device, memory_format=torch.channels_last
                )
            )[:, 0]
            .cpu()
            .numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)


def saved_epoch(out_dir: str | os.PathLike) -> int:
    """The epoch of the latest complete checkpoint in ``out_dir`` (0 when there is none)."""
    return latest_epoch(out_dir)


def load(out_dir: str | os.PathLike, device: str | None = None) -> DCGAN:
    """The trained DCGAN saved in ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = tasks.dcgan_run(out_dir, FRAMEWORK)
    architecture = tasks.dcgan_architecture(config)
    gan = DCGAN(
        lr=config["lr"], beta1=config["beta1"], noise_dim=config["noise_dim"], device=device, **architecture
    )
    gan.trainer().load_state(folder, random_state=False)
    return gan


def train(images: np.ndarray, **settings: Unpack[tasks.DcganSettings]) -> tuple[DCGAN, dict]:
    """Train a DCGAN on digits in [0, 1] through the one loop; returns ``(gan, history)``.
    Settings, defaults and behaviour: :class:`companion.training.tasks.DcganConfig`."""
    s = tasks.dcgan_settings(settings)
    x = tasks.check_dcgan_images(images, s.output)[:, None]
    gan = s.gan or DCGAN(
        lr=s.lr,
        beta1=s.beta1,
        batch_norm=s.batch_norm,
        output=s.output,
        jit_compile=s.jit_compile,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(gan, s, tuple(tasks.DCGAN_ARCHITECTURE), "dcgan.train")
    history = tasks.train_dcgan(gan.trainer(), gan.generate, x, s)
    return gan, history
