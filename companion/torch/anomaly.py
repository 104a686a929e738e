"""The anomaly detection chapter in PyTorch: AnoGAN's latent inversion, matching ``companion.tensorflow.anomaly``.

:func:`train_normal_gan` trains the conditional GAN chapter's unconditional twin
(``companion.torch.cgan`` with ``n_classes=0``) on every digit but a held-out one. :func:`invert`
searches, for each test image, the noise vector whose generated image comes closest, with Adam
steps on ``z`` written out as on the Keras side (both networks in eval mode, weights fixed), and
scores the image by the final objective (:mod:`companion.training.anomaly_task`). The
discrimination term compares the discriminator's last convolutional features, read by
:class:`DiscriminatorFeatures` from the discriminator's own layers and laid out channels last, as
Keras returns them. :func:`autoencoder_score` is the reconstruction-error baseline.
"""

from __future__ import annotations

import os
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.torch import autoencoders, cgan, runtime
from companion.training import anomaly_task
from companion.training.anomaly_task import Inversion
from companion.validation import InputError

FEATURE_WEIGHT, INVERSION_STEPS, INVERSION_LR = (
    anomaly_task.FEATURE_WEIGHT,
    anomaly_task.INVERSION_STEPS,
    anomaly_task.INVERSION_LR,
)
INVERSION_BATCH = anomaly_task.INVERSION_BATCH


def train_normal_gan(
    images: np.ndarray, labels: np.ndarray, holdout: int, **settings: Unpack[anomaly_task.NormalGanSettings]
) -> tuple[cgan.CGAN, dict]:
    """Train the unconditional GAN on digits ``(N, 28, 28)`` (or ``(N, 1, 28, 28)``) in [0, 1] whose
    ``labels`` are not ``holdout``; returns ``(gan, history)``. Settings: those of ``cgan.train``
    but ``n_classes``; with ``out_dir`` the held-out digit is stored in ``anomaly.json``."""
    return anomaly_task.train_normal_gan(cgan.train, images, labels, holdout, settings)


def load_normal_gan(out_dir: str | os.PathLike, device: str | None = None) -> tuple[cgan.CGAN, int]:
    """``(gan, holdout)``: the GAN :func:`train_normal_gan` trained into ``out_dir`` and the digit it never saw."""
    holdout = anomaly_task.saved_holdout(out_dir)
    return cgan.load(out_dir, device), holdout


class DiscriminatorFeatures(nn.Module):
    """Images ``(N, 1, 28, 28)`` in [-1, 1] -> the unconditional discriminator's features after its
    second convolution and LeakyReLU, channels last ``(N, 7, 7, 64)`` as Keras returns them. Shares
    the discriminator's layers; dropout is left out, as in eval mode."""

    def __init__(self, discriminator: cgan.CganDiscriminator) -> None:
        super().__init__()
        if getattr(discriminator, "n_classes", None) != 0:
            raise InputError(
                "feature_extractor needs the unconditional discriminator (built with n_classes=0)"
            )
        self.discriminator = discriminator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        d = self.discriminator
        h = F.leaky_relu(d.conv1(images), cgan.LEAKY_SLOPE)
        return F.leaky_relu(d.conv2(h), cgan.LEAKY_SLOPE).permute(0, 2, 3, 1)


def feature_extractor(discriminator: cgan.CganDiscriminator) -> DiscriminatorFeatures:
    """Images ``(N, 1, 28, 28)`` in [-1, 1] -> the unconditional discriminator's features after its
    second convolution and LeakyReLU, ``(N, 7, 7, 64)``: a module sharing the discriminator's layers."""
    return DiscriminatorFeatures(discriminator)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def discriminator_features(
    discriminator: cgan.CganDiscriminator, images: np.ndarray, batch_size: int = 500
) -> np.ndarray:
    """The features of :func:`feature_extractor` (eval mode) for digits ``(N, 28, 28)`` or
    ``(N, 1, 28, 28)`` in [0, 1], flattened channels last: float32 ``(N, 3136)``."""
    model = feature_extractor(discriminator)
    x = torch.from_numpy(anomaly_task.check_test_images(images)[:, None] * 2.0 - 1.0)
    device = _device(discriminator)
    parts = [model(x[i : i + batch_size].to(device)).cpu().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).reshape(len(x), -1)


def _objective(
    generator: nn.Module,
    features: nn.Module,
    z: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: ``(objective, residual, discrimination, G(z) in [0, 1])`` for images ``x`` in [0, 1]
    whose features are ``target``."""
    fake = generator(z)
    fake01 = (fake + 1.0) / 2.0
    residual = (x - fake01).abs().sum(dim=(1, 2, 3))
    discrimination = (target - features(fake)).abs().sum(dim=(1, 2, 3))
    return (1.0 - lam) * residual + lam * discrimination, residual, discrimination, fake01


def _invert_batch(
    generator: nn.Module,
    features: nn.Module,
    z0: np.ndarray,
    x01: np.ndarray,
    steps: int,
    lr: float,
    lam: float,
) -> dict[str, np.ndarray]:
    """Adam on ``z`` for one batch, the update written out (the same formula as the Keras side)."""
    beta1, beta2 = anomaly_task.ADAM_BETAS
    device = _device(generator)
    x = torch.from_numpy(x01).to(device)
    with torch.no_grad():
        target = features(x * 2.0 - 1.0)
    z = torch.from_numpy(z0).to(device)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    history = []
    for t in range(1, steps + 1):
        z.requires_grad_(True)
        objective = _objective(generator, features, z, x, target, lam)[0]
        (grad,) = torch.autograd.grad(objective.sum(), z)
        with torch.no_grad():
            m = beta1 * m + (1.0 - beta1) * grad
            v = beta2 * v + (1.0 - beta2) * grad.square()
            m_hat, v_hat = m / (1.0 - beta1**t), v / (1.0 - beta2**t)
            z = z.detach() - lr * m_hat / (v_hat.sqrt() + anomaly_task.ADAM_EPSILON)
        history.append(float(objective.detach().mean()))
    with torch.no_grad():
        objective, residual, discrimination, fake01 = _objective(generator, features, z, x, target, lam)
    history.append(float(objective.mean()))
    return {
        "z": z.cpu().numpy(),
        "reconstructions": fake01[:, 0].cpu().numpy(),
        "objective": objective.cpu().numpy(),
        "residual": residual.cpu().numpy(),
        "discrimination": discrimination.cpu().numpy(),
        "history": np.asarray(history),
    }


def invert(
    gan: cgan.CGAN,
    images: np.ndarray,
    steps: int = INVERSION_STEPS,
    lr: float = INVERSION_LR,
    feature_weight: float = FEATURE_WEIGHT,
    seed: int = 0,
    batch_size: int = INVERSION_BATCH,
) -> Inversion:
    """AnoGAN's latent search for digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1]: per image,
    ``steps`` Adam steps (learning rate ``lr``) on ``z`` from ``z_0`` drawn by NumPy with ``seed``,
    minimising ``(1 - feature_weight) * residual + feature_weight * discrimination``; ``batch_size``
    images at a time (the result does not depend on it). Returns an
    :class:`~companion.training.anomaly_task.Inversion` (``scores``: the final objective)."""
    anomaly_task.check_unconditional(gan)
    lam = anomaly_task.check_inversion(steps, lr, feature_weight, seed, batch_size)
    x01 = anomaly_task.check_test_images(images)[:, None]
    z0 = anomaly_task.start_latent(len(x01), gan.noise_dim, seed)
    features = feature_extractor(gan.discriminator)
    modes = (gan.generator.training, gan.discriminator.training)
    gan.generator.eval()
    gan.discriminator.eval()
    try:
        parts, counts = [], []
        for i in range(0, len(x01), int(batch_size)):
            rows = slice(i, i + int(batch_size))
            parts.append(
                _invert_batch(gan.generator, features, z0[rows], x01[rows], int(steps), float(lr), lam)
            )
            counts.append(len(x01[rows]))
    finally:
        gan.generator.train(modes[0])
        gan.discriminator.train(modes[1])
    return anomaly_task.gather(parts, counts)


def autoencoder_score(
    images: np.ndarray,
    normal_images: np.ndarray | None = None,
    *,
    model: autoencoders.Autoencoder | None = None,
    code_size: int = anomaly_task.AE_CODE_SIZE,
    epochs: int = anomaly_task.AE_EPOCHS,
    batch_size: int = anomaly_task.AE_BATCH,
    seed: int = 0,
    device: str | None = None,
) -> tuple[np.ndarray, autoencoders.Autoencoder]:
    """``(scores (N,), model)``: each image's mean squared reconstruction error (pixels in [0, 1]) under
    an autoencoder of normal digits. With ``model=None`` a dense autoencoder (``code_size``, weights
    seeded by ``seed``) is first trained for ``epochs`` on ``normal_images`` (digits in [0, 1] in
    any 28x28 layout, without the held-out class); a given ``model`` is used as it is."""
    x = anomaly_task.autoencoder_inputs(images, seed)
    if model is None:
        normal = anomaly_task.autoencoder_training_images(normal_images)
        torch.manual_seed(seed)
        model = autoencoders.dense_autoencoder(code_size).to(runtime.device(device))
        autoencoders.fit_autoencoder(
            model, normal, epochs=epochs, batch_size=batch_size, seed=seed, device=device
        )
    rebuilt = autoencoders.reconstruct(model, x.reshape(len(x), *model.example_shape)).reshape(len(x), -1)
    return anomaly_task.reconstruction_error(x, rebuilt), model
