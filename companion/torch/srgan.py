"""Super-resolution at MNIST scale in PyTorch, matching ``companion.tensorflow.srgan``.

Same networks, layer names, losses, train step and run folder as the Keras side, so
``companion.bridge`` copies weights both ways and the two give the same outputs:

- every 3x3 stride-1 convolution pads one pixel on each side, which is Keras' ``"same"``; the
  discriminator's 4x4 stride-2 convolutions pad one pixel on each side too (Keras pads
  (k - s) / 2 = 1 before and after), so no explicit padding is needed;
- nearest-neighbour upsampling by 2 repeats each pixel 2x2 on both sides;
- the discriminator flattens its (64, 7, 7) features channels last, as Keras does, so the dense
  weights need no reordering.

Tensors are channels first: low-resolution digits ``(N, 1, s, s)`` (s = 28 / factor) and outputs
``(N, 1, 28, 28)``, linear (about [0, 1]). :func:`upscale` takes ``(N, s, s)`` or ``(N, 1, s, s)`` and
returns ``(N, 28, 28)``. Both networks start from Keras' initialisation (``companion.torch.init``).
"""

from __future__ import annotations

import os
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.torch import runtime
from companion.torch.init import initialize
from companion.torch.training import FRAMEWORK, Trainer, make_adam
from companion.training import srgan_task, tasks
from companion.validation import check_positive

FACTORS = srgan_task.FACTORS
ADVERSARIAL_WEIGHT = srgan_task.ADVERSARIAL_WEIGHT
ADAM_EPSILON = srgan_task.ADAM_EPSILON
FEATURES = 64  # channels of the low-resolution body
RESIDUAL_BLOCKS = 2
UP_FILTERS = (32, 32)  # channels after each x2 upsampling (the first only, for factor 2)
D_FILTERS = (32, 64)
LEAKY_SLOPE = 0.2  # the DCGAN paper's slope, set explicitly on both sides


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)  # Keras "same" at stride 1


class SrGenerator(nn.Module):
    """Low-resolution digits ``(N, 1, 28 / factor, 28 / factor)`` -> ``(N, 1, 28, 28)``, a linear output
    trained towards [0, 1] (:func:`upscale` clips it)."""

    def __init__(self, factor: int = 4) -> None:
        super().__init__()
        self.factor = srgan_task.check_factor(factor)
        layers = {"head": _conv3x3(1, FEATURES)}
        for i in range(1, RESIDUAL_BLOCKS + 1):
            layers[f"res{i}_a"] = _conv3x3(FEATURES, FEATURES)
            layers[f"res{i}_b"] = _conv3x3(FEATURES, FEATURES)
        channels = FEATURES
        self.stages = self.factor.bit_length() - 1  # one x2 upsampling per factor of 2
        for i, filters in enumerate(UP_FILTERS[: self.stages], start=1):
            layers[f"up{i}"] = _conv3x3(channels, filters)
            channels = filters
        layers["to_image"] = _conv3x3(channels, 1)
        self.layers = nn.ModuleDict(layers)

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        conv = self.layers
        head = F.leaky_relu(conv["head"](low_res), LEAKY_SLOPE)
        h = head
        for i in range(1, RESIDUAL_BLOCKS + 1):
            h = h + conv[f"res{i}_b"](F.leaky_relu(conv[f"res{i}_a"](h), LEAKY_SLOPE))
        h = head + h  # SRGAN's skip around the residual blocks
        for i in range(1, self.stages + 1):
            h = F.leaky_relu(conv[f"up{i}"](F.interpolate(h, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        return conv["to_image"](h)  # linear: a sigmoid here saturates and can freeze the MSE network at black


class SrDiscriminator(nn.Module):
    """28x28 digits ``(N, 1, 28, 28)`` in [0, 1] -> one logit per image ``(N, 1)`` (real > 0 > upscaled)."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2 = D_FILTERS
        self.conv1 = nn.Conv2d(1, c1, 4, stride=2, padding=1)  # 14x14
        self.conv2 = nn.Conv2d(c1, c2, 4, stride=2, padding=1)  # 7x7
        self.logit = nn.Linear(7 * 7 * c2, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(images), LEAKY_SLOPE)
        h = F.leaky_relu(self.conv2(h), LEAKY_SLOPE)
        return self.logit(h.permute(0, 2, 3, 1).flatten(1))  # flatten channels last, as Keras does


def build_sr_generator(factor: int = 4) -> SrGenerator:
    """Low-resolution digits ``(N, 1, 28 / factor, 28 / factor)`` -> ``(N, 1, 28, 28)`` (linear output),
    with Keras' initialisation."""
    return initialize(SrGenerator(factor))


def build_sr_discriminator() -> SrDiscriminator:
    """28x28 digits ``(N, 1, 28, 28)`` in [0, 1] -> one logit per image ``(N, 1)``, with Keras' initialisation."""
    return initialize(SrDiscriminator())


def generator_loss(
    outputs: torch.Tensor, targets: torch.Tensor, fake_logits: torch.Tensor | None, adversarial_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, mse, adversarial)``: loss = MSE(outputs, targets) + adversarial_weight x adversarial,
    where adversarial is the non-saturating GAN loss -log sigmoid(D(G(x_low))), averaged over the batch
    (0 without ``fake_logits``)."""
    mse = F.mse_loss(outputs, targets)
    if fake_logits is None:
        return mse, mse, torch.zeros_like(mse)
    adversarial = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return mse + adversarial_weight * adversarial, mse, adversarial


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from logits, batch means: real digits -> 1, upscaled ones -> 0."""
    bce = F.binary_cross_entropy_with_logits
    return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))


class SuperResolution:
    """Generator, discriminator (``None`` when ``adversarial_weight`` is 0), one Adam each, and the step.

    ``seed`` makes the initial weights repeatable (the generator's do not depend on whether there is
    a discriminator, so the MSE network and the SRGAN start alike); ``None`` leaves the global random
    state alone. ``device``: see :func:`companion.torch.runtime.device`; both networks live there.
    """

    def __init__(
        self,
        *,
        factor: int = 4,
        adversarial_weight: float = ADVERSARIAL_WEIGHT,
        lr: float = 2e-4,
        beta1: float = 0.5,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.factor = srgan_task.check_factor(factor)
        self.adversarial_weight = srgan_task.check_adversarial_weight(adversarial_weight)
        self.lr, self.beta1 = float(lr), float(beta1)
        check_positive("lr", lr)
        tasks.check_beta1(beta1)
        self.device = runtime.device(device)
        self.discriminator: SrDiscriminator | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None
        if seed is not None:
            torch.manual_seed(seed)
        self.generator = build_sr_generator(self.factor).to(self.device)
        # Channels last: the convolutions' backward pass is about twice as fast on CPUs.
        self.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
        self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        if self.adversarial_weight > 0:
            if seed is not None:
                torch.manual_seed(seed + 1)
            self.discriminator = build_sr_discriminator().to(self.device)
            self.discriminator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)

    def train_step(self, low_res: torch.Tensor, high_res: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step for G on MSE (+ weight x adversarial) and, with a D, one for D, both from one
        forward pass (D's verdicts before its update), as the Keras step's two tapes do.

        ``low_res`` ``(B, 1, s, s)`` and ``high_res`` ``(B, 1, 28, 28)`` in [0, 1], on the model's device.
        """
        self.generator.train()
        outputs = self.generator(low_res)
        if self.discriminator is None or self.d_optimizer is None:
            g_loss, mse, _ = generator_loss(outputs, high_res, None, 0.0)
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_optimizer.step()
            return {"g_loss": g_loss.detach(), "mse": mse.detach()}
        self.discriminator.train()
        real_logits = self.discriminator(high_res)
        fake_logits = self.discriminator(outputs)
        g_loss, mse, adversarial = generator_loss(outputs, high_res, fake_logits, self.adversarial_weight)
        d_loss = discriminator_loss(real_logits, fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        self.g_optimizer.step()
        self.d_optimizer.step()
        return {
            "g_loss": g_loss.detach(),
            "mse": mse.detach(),
            "adversarial": adversarial.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),  # D(x) on real digits
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),  # D(G(x_low)) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        models: dict[str, nn.Module] = {"generator": self.generator}
        optimizers: dict[str, torch.optim.Optimizer] = {"generator": self.g_optimizer}
        if self.discriminator is not None and self.d_optimizer is not None:
            models["discriminator"] = self.discriminator
            optimizers["discriminator"] = self.d_optimizer
        return Trainer(
            lambda batch: self.train_step(
                batch["low_res"].contiguous(memory_format=torch.channels_last),
                batch["high_res"].contiguous(memory_format=torch.channels_last),
            ),
            models=models,
            optimizers=optimizers,
            device=self.device,
        )


@torch.no_grad()
def upscale(generator: SrGenerator, low_res: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """28x28 digits ``(N, 28, 28)`` in [0, 1] from low-resolution ones ((N, s, s) or (N, 1, s, s) in
    [0, 1], s = 28 / the generator's factor), in eval mode."""
    x = srgan_task.check_low_res(low_res, generator.factor)[:, None]
    check_positive("batch_size", batch_size, integer=True)
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    parts = [
        generator(torch.from_numpy(x[i : i + batch_size]).to(device))[:, 0].cpu().numpy()
        for i in range(0, len(x), batch_size)
    ]
    generator.train(was_training)
    return np.clip(np.concatenate(parts), 0.0, 1.0)  # the output layer is linear


def load(out_dir: str | os.PathLike, device: str | None = None) -> SuperResolution:
    """The model trained into run folder ``out_dir`` by :func:`train`, with its latest checkpoint's weights."""
    config, folder = srgan_task.srgan_run(out_dir, FRAMEWORK)
    model = SuperResolution(
        factor=config["factor"],
        adversarial_weight=config["adversarial_weight"],
        lr=config["lr"],
        beta1=config["beta1"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    low_res: np.ndarray, high_res: np.ndarray, **settings: Unpack[srgan_task.SrganSettings]
) -> tuple[SuperResolution, dict]:
    """Train an upscaler on pairs (``low_res`` = ``downsample(high_res, factor)``, both in [0, 1]) through
    the one loop; returns ``(model, history)``. Settings, defaults and the history:
    :class:`companion.training.srgan_task.SrganConfig` and :func:`companion.training.srgan_task.fit_srgan`."""
    s = srgan_task.srgan_settings(settings)
    low, high = srgan_task.check_pair(low_res, high_res, s.factor)
    model = s.gan or SuperResolution(
        factor=s.factor,
        adversarial_weight=s.adversarial_weight,
        lr=s.lr,
        beta1=s.beta1,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(model, s, srgan_task.GIVEN_MODEL_KEYS, "srgan.train")
    history = srgan_task.fit_srgan(model.trainer(), low[:, None], high[:, None], s)
    return model, history
