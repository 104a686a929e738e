"""The blog posts' other two GANs, in PyTorch ("Training GANs on MNIST").

``companion.tensorflow.blog_gans`` mirrors this module name for name with the same settings; its
docstring says which details are the blog posts' and which are ours.

**The convolutional GAN.** The Keras code trains it with ``train_on_batch`` and a toggled
``trainable``; :func:`conv_gan_round` is the same round written the PyTorch way: fakes from G in
eval mode (Keras' ``predict_on_batch``), one D update on real images and one on the fakes, then a
G update through D in which only G's optimiser steps. To give the Keras outputs from copied
weights, the layers copy Keras' details: ``padding="same"`` of a stride-2 convolution (pad 1 before
and 2 after on 28 and 14 pixels, 2 and 2 on 7), batch norm epsilon 1e-3 and momentum 0.1 (Keras
0.9 counts the other way round), nearest-neighbour upsampling, and flattening channels last.

**The fully connected GAN of the posts' PyTorch code**: the chapter's MLP GAN with ``nn.Sigmoid()``
after D's logit and ``BCELoss`` on its probabilities, at learning rate 1e-4. ``BCELoss`` clamps each log
at -100, and its gradient divides by ``max(p (1 - p), 1e-12)``: below a logit of about -27.6 the
generator's gradient shrinks, and once the float32 sigmoid rounds to 0 (about -88.7) it is 0.
"""

from __future__ import annotations

import math
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.torch import gan, runtime
from companion.torch.init import initialize
from companion.torch.training import Trainer
from companion.training import tasks
from companion.validation import InputError, check_positive

# the blog posts' facts
CONV_FILTERS = (64, 256, 256)
CONV_DROPOUT = 0.4
CONV_NOISE_DIM = 32
CONV_BATCH_SIZE = 128
CONV_LEARNING_RATE = 4e-4
CONV_STEPS = 2000  # the posts' "EPOCHS = 2000": single batches
BN_MOMENTUM = 0.1  # PyTorch: the weight of the new batch (Keras' momentum 0.9)
PROBABILITY_LEARNING_RATE = 1e-4  # the posts' PyTorch FC GAN
# ours: the usual choices of Keras GAN code of the time
KERNEL = 5
LEAKY_SLOPE = 0.2
GENERATOR_CHANNELS = (64, 32, 16)  # 7x7x64, then 14x14x32 and 28x28x16 after each upsampling
CONV_BETA_1 = 0.5
BN_EPSILON = 1e-3  # Keras' default
FEEDBACK_FORMS = ("logits", "sigmoid", "probability")  # what D's last output is: see generator_feedback
GanRun = tasks.GanRun


# --------------------------------------------------------------------------- the convolutional GAN


class _SameConv(nn.Conv2d):
    """A stride-2 convolution with Keras' ``padding="same"``: the output has ceil(n / 2) pixels, and an
    odd total padding puts the extra pixel after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + KERNEL - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvGenerator(nn.Module):
    """Uniform noise (N, noise_dim) -> images (N, 1, 28, 28) in [0, 1]; layers as in
    :func:`build_conv_generator`."""

    def __init__(self, noise_dim: int = CONV_NOISE_DIM) -> None:
        super().__init__()
        first, middle, last = GENERATOR_CHANNELS
        self.first = first
        self.project = nn.Linear(noise_dim, 7 * 7 * first)
        self.bn0 = nn.BatchNorm1d(7 * 7 * first, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv1 = nn.ConvTranspose2d(first, middle, KERNEL, padding=KERNEL // 2)  # stride 1: same size
        self.bn1 = nn.BatchNorm2d(middle, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv2 = nn.ConvTranspose2d(middle, last, KERNEL, padding=KERNEL // 2)
        self.bn2 = nn.BatchNorm2d(last, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.pixels = nn.ConvTranspose2d(last, 1, KERNEL, padding=KERNEL // 2)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.project(noise)))
        h = h.view(-1, 7, 7, self.first).permute(
            0, 3, 1, 2
        )  # read the dense output channels last, as Keras does
        h = F.relu(self.bn1(self.deconv1(F.interpolate(h, scale_factor=2, mode="nearest"))))
        h = F.relu(self.bn2(self.deconv2(F.interpolate(h, scale_factor=2, mode="nearest"))))
        return torch.sigmoid(self.pixels(h))


class ConvDiscriminator(nn.Module):
    """Images (N, 1, 28, 28) in [0, 1] -> D(x), a probability (N, 1); layers as in
    :func:`build_conv_discriminator`."""

    def __init__(self, dropout: float = CONV_DROPOUT) -> None:
        super().__init__()
        self.rate = dropout
        channels = (1, *CONV_FILTERS)
        self.conv1, self.conv2, self.conv3 = (
            _SameConv(channels[i], channels[i + 1], KERNEL, stride=2) for i in range(3)
        )
        self.probability = nn.Linear(4 * 4 * CONV_FILTERS[-1], 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = images
        for conv in (self.conv1, self.conv2, self.conv3):
            h = F.dropout(F.leaky_relu(conv(h), LEAKY_SLOPE), self.rate, self.training)
        return torch.sigmoid(self.probability(h.permute(0, 2, 3, 1).flatten(1)))  # flatten channels last


def build_conv_generator(noise_dim: int = CONV_NOISE_DIM) -> ConvGenerator:
    """Uniform noise (N, noise_dim) -> images (N, 1, 28, 28) in [0, 1]: Linear to 7x7x64, then twice
    nearest upsampling + 5x5 transposed convolution (32, then 16 channels), each with batch norm and
    ReLU, and a 5x5 transposed convolution to one channel with a sigmoid; Keras' initialisation."""
    check_positive("noise_dim", noise_dim, integer=True)
    return initialize(ConvGenerator(noise_dim))


def build_conv_discriminator(dropout: float = CONV_DROPOUT) -> ConvDiscriminator:
    """Images (N, 1, 28, 28) in [0, 1] -> D(x), a probability (N, 1): three 5x5 stride-2 convolutions
    (64, 256, 256 filters; 28 -> 14 -> 7 -> 4), each with LeakyReLU(0.2) and dropout, then Linear(1)
    with a sigmoid; Keras' initialisation."""
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout must be a rate in [0, 1), got {dropout!r}")
    return initialize(ConvDiscriminator(dropout))


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)  # also drops gradients another network's update left here
    loss.backward()
    optimizer.step()
    return loss.detach()


def _bce(probabilities: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy(probabilities, torch.full_like(probabilities, label))  # nn.BCELoss


def conv_gan_round(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    real: torch.Tensor | np.ndarray,
    d_noise: torch.Tensor | np.ndarray,
    g_noise: torch.Tensor | np.ndarray,
) -> dict[str, torch.Tensor]:
    """One round as the Keras code trains it, written the PyTorch way; ``optimizers`` is
    ``(g_optimizer, d_optimizer)`` from :func:`gan.make_optimizers`.

    Fakes come from G in eval mode (batch norm on its running statistics, as Keras'
    ``predict_on_batch``). D takes one update on real images (label 1) and one on the fakes (label 0),
    then G one update with its fakes labelled 1: the loss flows through D, but only G's optimiser
    steps, so D is frozen. Returns 0-d tensors ``d_loss`` (both D updates) and ``g_loss``.
    """
    device = next(generator.parameters()).device
    real, d_noise, g_noise = (
        torch.as_tensor(a, dtype=torch.float32, device=device) for a in (real, d_noise, g_noise)
    )
    g_optimizer, d_optimizer = optimizers
    with gan.torch_eval_mode(generator):
        fake = generator(d_noise)
    d_loss = _update(d_optimizer, _bce(discriminator(real), 1.0))
    d_loss = d_loss + _update(d_optimizer, _bce(discriminator(fake), 0.0))
    g_loss = _update(g_optimizer, _bce(discriminator(generator(g_noise)), 1.0))
    return {"d_loss": d_loss, "g_loss": g_loss}


def train_conv_gan(
    images: np.ndarray,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    batch_size: int = CONV_BATCH_SIZE,
    learning_rate: float = CONV_LEARNING_RATE,
    beta1: float = CONV_BETA_1,
    noise_dim: int = CONV_NOISE_DIM,
    seed: int = 0,
    fixed_noise: np.ndarray | None = None,
    log_every: int = 1,
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    device: str | None = None,
) -> GanRun:
    """Train the convolutional GAN with :func:`conv_gan_round` through the one loop, on images in [0, 1]
    (flat (N, 784) or (N, 1, 28, 28)).

    Each epoch draws a fresh shuffle and runs at most ``steps_per_epoch`` batches, so ``epochs *
    steps_per_epoch`` counts the posts' single-batch "epochs". ``history`` holds per-epoch ``d_loss``,
    ``g_loss``, ``d_real``/``d_fake`` (D's mean outputs on a fixed probe batch after the epoch) and
    ``d_change``/``g_change`` (the largest change of any D / G weight in the epoch), as on the Keras
    side; ``samples`` are flat, (n, 784). Noise from U(-1, 1).
    """
    target = runtime.device(device)
    generator = (generator or build_conv_generator(noise_dim)).to(target)
    discriminator = (discriminator or build_conv_discriminator()).to(target)
    s = tasks.GanConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        beta1=beta1,
        from_logits=False,
        noise_dim=noise_dim,
        noise_distribution="uniform",
        steps_per_epoch=steps_per_epoch,
        seed=seed,
        fixed_noise=fixed_noise,
        log_every=log_every,
        discriminator=discriminator,
    )
    x = tasks.check_gan_images(images, batch_size).reshape(-1, 1, 28, 28)
    optimizers = gan.make_optimizers(generator, discriminator, learning_rate, None, beta1)
    trainer = Trainer(
        lambda batch: conv_gan_round(
            generator, discriminator, optimizers, batch["real"], batch["d_noise"], batch["g_noise"]
        ),
        models={"generator": generator, "discriminator": discriminator},
        optimizers={"generator": optimizers[0], "discriminator": optimizers[1]},
        device=target,
    )
    probe_real = x[:batch_size]
    probe_noise = tasks.sample_latent(batch_size, noise_dim, seed=seed + 2, distribution="uniform")

    def probe() -> dict[str, float]:
        fakes = gan.generate(generator, probe_noise).reshape(probe_real.shape)
        return {
            "d_real": float(gan.discriminate(discriminator, probe_real, from_logits=False).mean()),
            "d_fake": float(gan.discriminate(discriminator, fakes, from_logits=False).mean()),
        }

    history, samples = tasks.train_gan(
        trainer,
        lambda noise: gan.generate(generator, noise),
        x,
        s,
        config={"model": "conv_generator-keras-idiom", "toggle": True},
        monitor=tasks.WeightChanges({"d": discriminator, "g": generator}, gan.weight_snapshot, probe),
    )
    return tasks.gan_result(generator, discriminator, history, samples)


# --------------------------------------------------------------------------- sigmoid + BCE on probabilities


def build_probability_discriminator(
    hidden: int = gan.HIDDEN, activation: str = "leaky_relu", init_std: float | None = None
) -> nn.Sequential:
    """The chapter's MLP discriminator followed by ``nn.Sigmoid()``: flat images (N, 784) -> D(x) (N, 1).
    Arguments as in :func:`gan.build_discriminator`; its weights are the inner module's (index 0)."""
    return nn.Sequential(gan.build_discriminator(hidden, activation, init_std), nn.Sigmoid())


def train_probability_gan(images: np.ndarray, **settings: Unpack[tasks.GanSettings]) -> GanRun:
    """:func:`gan.train_gan` the blog posts' PyTorch way: D ends in a sigmoid (default
    :func:`build_probability_discriminator`), the losses are ``BCELoss`` on its probabilities, and the
    learning rate defaults to 1e-4. Other settings as in :class:`tasks.GanConfig`."""
    if settings.get("from_logits", False) is not False:
        raise InputError(
            "train_probability_gan trains on probabilities; use gan.train_gan for from_logits=True"
        )
    settings = {"learning_rate": PROBABILITY_LEARNING_RATE, **settings, "from_logits": False}
    if settings.get("discriminator") is None:
        settings["discriminator"] = build_probability_discriminator()
    return gan.train_gan(images, **settings)


def generator_feedback(logits: np.ndarray, form: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """For each discriminator logit on a fake: the generator's non-saturating loss and its derivative
    with respect to the logit, as :func:`gan.generator_loss` computes them from D's last output.

    ``form``: ``"logits"``, the logit itself; ``"sigmoid"``, the float32 probability of ``nn.Sigmoid()``
    (the posts' D), fed to ``BCELoss``; ``"probability"``, the same probability computed elsewhere,
    which ``BCELoss`` treats the same way (PyTorch never recovers the logit). Returns two (N,) arrays.
    """
    values = _check_feedback(logits, form)
    losses, gradients = [], []
    for value in values:
        logit = torch.tensor([[value]], requires_grad=True)
        output = logit if form == "logits" else torch.sigmoid(logit)
        loss = gan.generator_loss(output, "non_saturating", from_logits=form == "logits")
        loss.backward()
        losses.append(loss.item())
        gradients.append(float(logit.grad[0, 0]))  # type: ignore[index]
    return np.array(losses), np.array(gradients)


def _check_feedback(logits: np.ndarray, form: str) -> np.ndarray:
    if form not in FEEDBACK_FORMS:
        raise InputError(f"form must be one of {FEEDBACK_FORMS}, got {form!r}")
    values = np.asarray(logits, np.float32).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise InputError("logits must be a non-empty array of finite numbers")
    return values
