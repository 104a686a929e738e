"""The anomaly detection chapter in Keras 3: AnoGAN's latent inversion on the unconditional GAN.

:func:`train_normal_gan` trains the conditional GAN chapter's unconditional twin
(``companion.tensorflow.cgan`` with ``n_classes=0``) on every digit but a held-out one.
:func:`invert` then searches, for each test image, the noise vector whose generated image comes
closest, taking Adam steps on ``z`` with the GAN's weights fixed (both networks in inference
mode, so the images of a batch never affect each other), and scores the image by the final
objective (:mod:`companion.training.anomaly_task` gives the formula). The discrimination term
compares the discriminator's last convolutional features, read through :func:`feature_extractor`,
a sub-model that shares the discriminator's layers.

:func:`autoencoder_score` is the baseline that scores by a dense autoencoder's reconstruction
error. ``companion.torch.anomaly`` has the same functions; with weights copied by
``companion.bridge`` and the same seed both find the same ``z``.
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.settings import quiet_native_stderr
from companion.tensorflow import autoencoders, cgan, runtime, training
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
    """Train the unconditional GAN on digits ``(N, 28, 28)`` (or ``(N, 28, 28, 1)``) in [0, 1] whose
    ``labels`` are not ``holdout``; returns ``(gan, history)``. Settings: those of ``cgan.train``
    but ``n_classes``; with ``out_dir`` the held-out digit is stored in ``anomaly.json``."""
    return anomaly_task.train_normal_gan(cgan.train, images, labels, holdout, settings)


def load_normal_gan(out_dir: str | os.PathLike, device: str | None = None) -> tuple[cgan.CGAN, int]:
    """``(gan, holdout)``: the GAN :func:`train_normal_gan` trained into ``out_dir`` and the digit it never saw."""
    holdout = anomaly_task.saved_holdout(out_dir)
    return cgan.load(out_dir, device), holdout


def feature_extractor(discriminator: keras.Model) -> keras.Model:
    """Images ``(N, 28, 28, 1)`` in [-1, 1] -> the unconditional discriminator's features after its
    second convolution and LeakyReLU, ``(N, 7, 7, 64)``: a sub-model sharing the discriminator's layers."""
    if getattr(discriminator, "n_classes", None) != 0:
        raise InputError("feature_extractor needs the unconditional discriminator (built with n_classes=0)")
    names = [layer.name for layer in discriminator.layers]
    activation = discriminator.layers[names.index("conv2") + 1]  # conv2's LeakyReLU, before dropout
    return keras.Model(discriminator.inputs[0], activation.output, name="discriminator_features")


def discriminator_features(
    discriminator: keras.Model, images: np.ndarray, batch_size: int = 500
) -> np.ndarray:
    """The features of :func:`feature_extractor` (inference mode) for digits ``(N, 28, 28)`` or
    ``(N, 28, 28, 1)`` in [0, 1], flattened channels last: float32 ``(N, 3136)``."""
    model = feature_extractor(discriminator)
    x = anomaly_task.check_test_images(images)[..., None] * 2.0 - 1.0
    parts = [model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).reshape(len(x), -1)


def _objective(
    generator: keras.Model,
    features: keras.Model,
    z: tf.Tensor,
    x: tf.Tensor,
    target: tf.Tensor,
    lam: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per image: ``(objective, residual, discrimination, G(z) in [0, 1])`` for images ``x`` in [0, 1]
    whose features are ``target``."""
    fake = generator(z, training=False)
    fake01 = (fake + 1.0) / 2.0
    residual = tf.reduce_sum(tf.abs(x - fake01), axis=[1, 2, 3])
    discrimination = tf.reduce_sum(tf.abs(target - features(fake, training=False)), axis=[1, 2, 3])
    return (1.0 - lam) * residual + lam * discrimination, residual, discrimination, fake01


def _search(generator: keras.Model, features: keras.Model):
    """The compiled Adam step on ``z`` (the update written out, the same formula as the PyTorch side)."""
    beta1, beta2 = anomaly_task.ADAM_BETAS

    def step(z, m, v, t, x, target, lam, lr):
        with tf.GradientTape() as tape:
            tape.watch(z)
            objective = _objective(generator, features, z, x, target, lam)[0]
            total = tf.reduce_sum(objective)  # on the tape: each z's gradient is its own image's
        grad = tape.gradient(total, z)
        m = beta1 * m + (1.0 - beta1) * grad
        v = beta2 * v + (1.0 - beta2) * tf.square(grad)
        m_hat, v_hat = m / (1.0 - beta1**t), v / (1.0 - beta2**t)
        z = z - lr * m_hat / (tf.sqrt(v_hat) + anomaly_task.ADAM_EPSILON)
        return z, m, v, tf.reduce_mean(objective)

    return tf.function(step, reduce_retracing=True)


def invert(
    gan: cgan.CGAN,
    images: np.ndarray,
    steps: int = INVERSION_STEPS,
    lr: float = INVERSION_LR,
    feature_weight: float = FEATURE_WEIGHT,
    seed: int = 0,
    batch_size: int = INVERSION_BATCH,
) -> Inversion:
    """AnoGAN's latent search for digits ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1]: per image,
    ``steps`` Adam steps (learning rate ``lr``) on ``z`` from ``z_0`` drawn by NumPy with ``seed``,
    minimising ``(1 - feature_weight) * residual + feature_weight * discrimination``; ``batch_size``
    images at a time (the result does not depend on it). Returns an
    :class:`~companion.training.anomaly_task.Inversion` (``scores``: the final objective)."""
    anomaly_task.check_unconditional(gan)
    lam = anomaly_task.check_inversion(steps, lr, feature_weight, seed, batch_size)
    x01 = anomaly_task.check_test_images(images)[..., None]
    z0 = anomaly_task.start_latent(len(x01), gan.noise_dim, seed)
    features = feature_extractor(gan.discriminator)
    step = _search(gan.generator, features)
    lam_t, lr_t = tf.constant(lam, tf.float32), tf.constant(float(lr), tf.float32)
    parts, counts = [], []
    with tf.device(gan.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
        for i in range(0, len(x01), int(batch_size)):
            x = tf.constant(x01[i : i + int(batch_size)])
            target = features(x * 2.0 - 1.0, training=False)
            z = tf.constant(z0[i : i + int(batch_size)])
            m, v = tf.zeros_like(z), tf.zeros_like(z)
            history = []
            for t in range(1, int(steps) + 1):
                z, m, v, mean = step(z, m, v, tf.constant(float(t)), x, target, lam_t, lr_t)
                history.append(float(mean))
            objective, residual, discrimination, fake01 = _objective(
                gan.generator, features, z, x, target, lam_t
            )
            history.append(float(tf.reduce_mean(objective)))
            parts.append(
                {
                    "z": z.numpy(),
                    "reconstructions": fake01.numpy()[..., 0],
                    "objective": objective.numpy(),
                    "residual": residual.numpy(),
                    "discrimination": discrimination.numpy(),
                    "history": np.asarray(history),
                }
            )
            counts.append(len(x))
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
        keras.utils.set_random_seed(seed)
        with tf.device(runtime.device(device)):
            model = autoencoders.dense_autoencoder(code_size)
        autoencoders.fit_autoencoder(
            model, normal, epochs=epochs, batch_size=batch_size, seed=seed, device=device
        )
    shaped = x.reshape(len(x), *model.example_shape)
    with tf.device(runtime.device(device)):
        rebuilt = autoencoders.reconstruct(model, shaped).reshape(len(x), -1)
    return anomaly_task.reconstruction_error(x, rebuilt), model
