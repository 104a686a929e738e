"""The GAN chapters, in PyTorch: an MLP GAN for MNIST and a 1-d toy GAN.

``companion.tensorflow.gan`` mirrors this module name for name with the same hyperparameters.

The MNIST recipe: noise 128 -> 256 -> 784 pixels (sigmoid, in [0, 1]) for the generator,
784 -> 256 -> 1 logit for the discriminator, Adam (lr 2e-4, beta_1 0.5), batches of 100.
Losses are computed from logits (``binary_cross_entropy_with_logits``), never as ``log(sigmoid)``,
so a confident discriminator gives a large finite loss instead of ``log(0) = -inf``. The losses and
steps also take ``from_logits=False``, for a discriminator that ends in a sigmoid: ``BCELoss`` on
probabilities, the form of the blog posts this course grew from (``companion.torch.blog_gans``
measures what it costs).

Freezing, the PyTorch way: the discriminator step feeds ``generator(noise).detach()``, so no
gradient reaches the generator; the generator step back-propagates through the discriminator
(filling its ``.grad``) but only the generator's optimiser steps, and the discriminator's
optimiser clears those gradients before its next step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.theory import toy
from companion.torch import runtime
from companion.torch.init import Model, initialize
from companion.torch.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.training import tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.validation import check_positive

_DEFAULTS = tasks.GanConfig(epochs=1)
NOISE_DIM, HIDDEN, IMAGE_DIM = _DEFAULTS.noise_dim, 256, tasks.MNIST_PIXELS
LEARNING_RATE, BETA_1, EPSILON = _DEFAULTS.learning_rate, tasks.GAN_BETA_1, tasks.GAN_EPSILON
BATCH_SIZE = _DEFAULTS.batch_size
LEAKY_SLOPE = 0.2
VARIANTS = tasks.VARIANTS
TOY_HIDDEN, TOY_BATCH_SIZE = 32, 256
TOY_D_LEARNING_RATE = 1e-2  # fitting D with G fixed: fast, then a tenth of it to settle
TOY_GAN_LEARNING_RATE = 2e-3
GanRun = tasks.GanRun


# --------------------------------------------------------------------------- models


def _hidden_activation(x: torch.Tensor, activation: str) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE) if activation == "leaky_relu" else F.relu(x)


class Generator(nn.Module):
    """Noise (N, noise_dim) -> flat images (N, 784) in [0, 1]; ``activation`` in the hidden layer."""

    def __init__(
        self, noise_dim: int = NOISE_DIM, hidden: int = HIDDEN, activation: str = "leaky_relu"
    ) -> None:
        super().__init__()
        tasks.check_gan_architecture(activation, None)
        self.activation = activation
        self.hidden = nn.Linear(noise_dim, hidden)
        self.pixels = nn.Linear(hidden, IMAGE_DIM)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.pixels(_hidden_activation(self.hidden(noise), self.activation)))


class Discriminator(nn.Module):
    """Flat images (N, 784) in [0, 1] -> one logit each (N, 1); D(x) = sigmoid(logit)."""

    def __init__(self, hidden: int = HIDDEN, activation: str = "leaky_relu") -> None:
        super().__init__()
        tasks.check_gan_architecture(activation, None)
        self.activation = activation
        self.hidden = nn.Linear(IMAGE_DIM, hidden)
        self.logit = nn.Linear(hidden, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logit(_hidden_activation(self.hidden(images), self.activation))


def _start(model: Model, init_std: float | None) -> Model:
    """Keras' default start (Glorot-uniform kernels, zero biases) or, with ``init_std``, kernels drawn
    from N(0, init_std^2) and zero biases."""
    if init_std is None:
        return initialize(model)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, float(init_std))
                nn.init.zeros_(layer.bias)
    return model


def build_generator(
    noise_dim: int = NOISE_DIM,
    hidden: int = HIDDEN,
    activation: str = "leaky_relu",
    init_std: float | None = None,
) -> Generator:
    """The MNIST generator: noise -> Linear(hidden) -> LeakyReLU(0.2) -> Linear(784) -> sigmoid.

    ``activation="relu"`` puts plain ReLU in the hidden layer; ``init_std`` draws every kernel from
    N(0, init_std^2) with zero biases instead of Glorot-uniform (the blog posts this course grew from:
    ReLU and 0.01).
    """
    tasks.check_gan_architecture(activation, init_std)
    check_positive("noise_dim", noise_dim, integer=True)
    check_positive("hidden", hidden, integer=True)
    return _start(Generator(noise_dim, hidden, activation), init_std)


def build_discriminator(
    hidden: int = HIDDEN, activation: str = "leaky_relu", init_std: float | None = None
) -> Discriminator:
    """The MNIST discriminator: 784 -> Linear(hidden) -> LeakyReLU(0.2) -> Linear(1) logit.

    ``activation`` and ``init_std`` as in :func:`build_generator`.
    """
    tasks.check_gan_architecture(activation, init_std)
    check_positive("hidden", hidden, integer=True)
    return _start(Discriminator(hidden, activation), init_std)


def make_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    learning_rate: float = LEARNING_RATE,
    d_learning_rate: float | None = None,
    beta1: float = BETA_1,
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """One Adam per network, ``(g_optimizer, d_optimizer)``: each only ever steps its own parameters.

    ``d_learning_rate`` (default: ``learning_rate``) lets the discriminator learn at another pace;
    ``beta1`` is Adam's first-moment decay for both (the book's 0.5; Adam's default and the blog
    posts' value is 0.9).
    """
    d_learning_rate = learning_rate if d_learning_rate is None else d_learning_rate
    check_positive("learning_rate", learning_rate)
    check_positive("d_learning_rate", d_learning_rate)
    tasks.check_beta1(beta1)
    return (
        make_adam(generator, learning_rate, beta_1=float(beta1), epsilon=EPSILON),
        make_adam(discriminator, d_learning_rate, beta_1=float(beta1), epsilon=EPSILON),
    )


# --------------------------------------------------------------------------- losses


def _bce(outputs: torch.Tensor, label: float, from_logits: bool = True) -> torch.Tensor:
    labels = torch.full_like(outputs, label)
    if from_logits:
        return F.binary_cross_entropy_with_logits(outputs, labels)
    return F.binary_cross_entropy(outputs, labels)  # BCELoss: clamps each log at -100


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, from_logits: bool = True
) -> torch.Tensor:
    """``BCE(real, 1) + BCE(fake, 0)`` from logits, each a batch mean: ``-V(D, G)`` on this batch.

    D minimises it, i.e. ascends ``V = E[log D(x)] + E[log(1 - D(G(z)))]``; log 4 when D says 0.5 everywhere.
    ``from_logits=False``: D's outputs are probabilities (``BCELoss``).
    """
    return _bce(real_logits, 1.0, from_logits) + _bce(fake_logits, 0.0, from_logits)


def generator_loss(
    fake_logits: torch.Tensor, variant: str = "non_saturating", from_logits: bool = True
) -> torch.Tensor:
    """The generator's loss on D's logits for fakes, a batch mean.

    ``"saturating"``: ``E[log(1 - D(G(z)))]``, the term of V that G descends (``= -softplus(logit)``).
    ``"non_saturating"``: ``-E[log D(G(z))]``, i.e. G *maximises* ``log D(G(z))`` (``= softplus(-logit)``).
    ``from_logits=False``: D's outputs are probabilities.
    """
    if variant == "non_saturating":
        return _bce(fake_logits, 1.0, from_logits)
    if variant == "saturating":
        return -_bce(fake_logits, 0.0, from_logits)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


# --------------------------------------------------------------------------- one step of the game


def discriminator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    noise: torch.Tensor,
    from_logits: bool = True,
) -> dict[str, torch.Tensor]:
    """One update of D with G frozen; returns ``d_loss``, ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z))."""
    fake = generator(noise).detach()  # detach: D's loss cannot send gradients into G
    real_out, fake_out = discriminator(real), discriminator(fake)
    loss = discriminator_loss(real_out, fake_out, from_logits)
    d_optimizer.zero_grad(set_to_none=True)  # also drops D gradients left by the last G step
    loss.backward()
    d_optimizer.step()
    if from_logits:
        real_out, fake_out = torch.sigmoid(real_out), torch.sigmoid(fake_out)
    return {
        "d_loss": loss.detach(),
        "d_real": real_out.mean().detach(),
        "d_fake": fake_out.mean().detach(),
    }


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    noise: torch.Tensor,
    variant: str = "non_saturating",
    from_logits: bool = True,
) -> dict[str, torch.Tensor]:
    """One update of G with D frozen (D's gradients are computed but only G's optimiser steps)."""
    loss = generator_loss(discriminator(generator(noise)), variant, from_logits)
    g_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    g_optimizer.step()
    return {"g_loss": loss.detach()}


def train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    d_noise: torch.Tensor,
    g_noise: torch.Tensor,
    variant: str = "non_saturating",
    from_logits: bool = True,
) -> dict[str, torch.Tensor]:
    """One round of the game: a D step on ``real`` and ``G(d_noise)``, then a G step on ``G(g_noise)``.

    Returns 0-d tensors ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` (D's mean outputs during its step).
    """
    metrics = discriminator_step(generator, discriminator, d_optimizer, real, d_noise, from_logits)
    metrics.update(generator_step(generator, discriminator, g_optimizer, g_noise, variant, from_logits))
    return metrics


# --------------------------------------------------------------------------- training through the one loop


@contextmanager
def torch_eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (batch norm on its running statistics, no dropout) and without
    gradients, as Keras' ``training=False``; its previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def generate(generator: nn.Module, noise: np.ndarray) -> np.ndarray:
    """Generator outputs for NumPy noise (N, noise_dim), in inference mode, as flat images (N, 784) in [0, 1]."""
    device = next(generator.parameters()).device
    with torch_eval_mode(generator):
        images = generator(torch.as_tensor(noise, dtype=torch.float32, device=device)).cpu().numpy()
    return images.reshape(len(images), -1)


def discriminate(discriminator: nn.Module, x: np.ndarray, from_logits: bool = True) -> np.ndarray:
    """D(x) = sigmoid(logit) for a NumPy batch (images in D's input layout, or toy points (N, 1)),
    in inference mode; returns (N,). ``from_logits=False``: D already outputs probabilities."""
    device = next(discriminator.parameters()).device
    with torch_eval_mode(discriminator):
        outputs = discriminator(torch.as_tensor(x, dtype=torch.float32, device=device))
    return (torch.sigmoid(outputs) if from_logits else outputs).cpu().numpy().reshape(-1)


def gan_step(
    generator,
    discriminator,
    g_optimizer,
    d_optimizer,
    variant: str = "non_saturating",
    from_logits: bool = True,
):
    """:func:`train_step` on a batch from the loop (``real``, ``d_noise``, ``g_noise``)."""

    def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return train_step(
            generator,
            discriminator,
            g_optimizer,
            d_optimizer,
            batch["real"],
            batch["d_noise"],
            batch["g_noise"],
            variant,
            from_logits,
        )

    return step


def train_gan(images: np.ndarray, **settings: Unpack[tasks.GanSettings]) -> GanRun:
    """Train the MNIST MLP GAN on flat images (N, 784) in [0, 1] through the one loop; returns a
    :class:`GanRun`. Settings, defaults and behaviour: :class:`companion.training.tasks.GanConfig`."""
    s = tasks.gan_settings(settings)
    x = tasks.check_gan_images(images, s.batch_size)
    device = runtime.device(s.device)
    generator = (s.generator or build_generator(s.noise_dim)).to(device)
    discriminator = (s.discriminator or build_discriminator()).to(device)
    g_opt, d_opt = make_optimizers(generator, discriminator, s.learning_rate, s.d_learning_rate, s.beta1)
    trainer = Trainer(
        gan_step(generator, discriminator, g_opt, d_opt, s.variant, s.from_logits),
        models={"generator": generator, "discriminator": discriminator},
        optimizers={"generator": g_opt, "discriminator": d_opt},
        device=device,
    )
    history, samples = tasks.train_gan(trainer, lambda noise: generate(generator, noise), x, s)
    return tasks.gan_result(generator, discriminator, history, samples)


def load_gan(out_dir: str | os.PathLike, device: str | None = None) -> GanRun:
    """The MLP GAN trained into run folder ``out_dir`` (latest checkpoint) as a :class:`GanRun`
    whose ``history`` is the saved one and ``samples`` the fixed-noise grids kept with it."""
    return tasks.load_gan(
        out_dir,
        FRAMEWORK,
        lambda config: (build_generator(config["noise_dim"]), build_discriminator()),
        lambda folder, models: load_weights(folder, models, device),
    )


def weight_snapshot(model: nn.Module) -> list[np.ndarray]:
    """Copies of every weight of ``model`` (parameters and float buffers such as batch-norm statistics,
    not batch counters), to compare before and after a step."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values() if t.is_floating_point()]


max_abs_change = tasks.max_abs_change


# --------------------------------------------------------------------------- the 1-d toy


def _numpy_step(generator, discriminator, g_opt, d_opt, variant: str):
    """:func:`train_step` for NumPy batches, returning float metrics (what ``toy.play_toy_game`` calls)."""
    device = next(generator.parameters()).device

    def step(real: np.ndarray, d_noise: np.ndarray, g_noise: np.ndarray) -> dict[str, float]:
        real_t, d_noise_t, g_noise_t = (torch.from_numpy(a).to(device) for a in (real, d_noise, g_noise))
        metrics = train_step(generator, discriminator, g_opt, d_opt, real_t, d_noise_t, g_noise_t, variant)
        return {name: float(value) for name, value in metrics.items()}

    return step


def build_toy_discriminator(hidden: int = TOY_HIDDEN) -> nn.Sequential:
    """Points (N, 1) -> logits (N, 1): 1 -> hidden -> hidden -> 1 with tanh, smooth enough to draw D(x)."""
    return initialize(
        nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
    )


def build_toy_generator(scale: float = 1.0, shift: float = 0.0) -> nn.Linear:
    """The affine generator ``G(z) = scale * z + shift`` as a 1 -> 1 linear layer, (N, 1) -> (N, 1)."""
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(scale)
        layer.bias.fill_(shift)
    return layer


def toy_generator_params(generator: nn.Module) -> tuple[float, float]:
    """``(scale, shift)`` of the affine toy generator."""
    weight, bias = generator.state_dict()["weight"], generator.state_dict()["bias"]
    return float(weight.reshape(())), float(bias.reshape(()))


def train_toy_discriminator(
    discriminator: nn.Module,
    generator: nn.Module,
    *,
    steps: int,
    batch_size: int = TOY_BATCH_SIZE,
    learning_rate: float = TOY_D_LEARNING_RATE,
    seed: int = 0,
    device: str | None = None,
) -> list[float]:
    """Fit D with G held fixed (fresh samples every step); returns the D loss of every step.

    The learning rate drops to a tenth for the last 40% of the steps so D settles near D*.
    """
    check_positive("steps", steps, integer=True)
    target = runtime.device(device)
    discriminator.to(target)
    generator.to(target)
    optimizer = torch.optim.Adam(
        discriminator.parameters(), lr=learning_rate, betas=(BETA_1, 0.999), eps=EPSILON
    )
    rng, losses = np.random.default_rng(seed), []
    for step in range(steps):
        if step == int(0.6 * steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate / 10
        real = torch.from_numpy(toy.sample_data(batch_size, rng)).to(target)
        noise = torch.from_numpy(toy.sample_noise(batch_size, rng)).to(target)
        metrics = discriminator_step(generator, discriminator, optimizer, real, noise)
        losses.append(float(metrics["d_loss"]))
        if not np.isfinite(losses[-1]):
            raise TrainingFailed(f"the toy discriminator diverged at step {step}; lower the learning rate")
    return losses


def train_toy_gan(
    discriminator: nn.Module,
    generator: nn.Module,
    *,
    steps: int,
    batch_size: int = TOY_BATCH_SIZE,
    learning_rate: float = TOY_GAN_LEARNING_RATE,
    variant: str = "non_saturating",
    record_every: int = 50,
    snapshot_steps: tuple[int, ...] = (),
    n_snapshot: int = 2000,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, list]:
    """Play the 1-d game: alternate one D step and one G step for ``steps`` rounds.

    Returns lists recorded every ``record_every`` rounds (and at 0): ``step``, ``scale``, ``shift``,
    ``jsd`` (exact, from :mod:`companion.theory.toy`), ``d_real`` and ``d_fake`` (mean D outputs on fresh
    batches), plus ``snapshots``: ``(step, samples)`` pairs of ``n_snapshot`` generated points
    (float32 (n,)) at each step listed in ``snapshot_steps``.
    """
    tasks.check_variant(variant)
    discriminator.to(runtime.device(device))
    generator.to(runtime.device(device))
    kwargs: dict[str, Any] = {"lr": learning_rate, "betas": (BETA_1, 0.999), "eps": EPSILON}
    g_opt = torch.optim.Adam(generator.parameters(), **kwargs)
    d_opt = torch.optim.Adam(discriminator.parameters(), **kwargs)
    return toy.play_toy_game(
        _numpy_step(generator, discriminator, g_opt, d_opt, variant),
        lambda noise: generate(generator, noise),
        lambda x: discriminate(discriminator, x),
        lambda: toy_generator_params(generator),
        steps=steps,
        batch_size=batch_size,
        record_every=record_every,
        snapshot_steps=snapshot_steps,
        n_snapshot=n_snapshot,
        seed=seed,
    )
