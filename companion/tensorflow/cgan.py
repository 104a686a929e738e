"""The conditional GAN chapter: a small label-conditioned DCGAN in Keras 3, with a ``tf.GradientTape`` step.

Generator: noise ``(N, noise_dim)`` and a label's one-hot (or soft) vector ``(N, n_classes)``,
concatenated -> Dense 7*7*64 (no bias) -> BN -> LeakyReLU -> reshape (7, 7, 64) -> ConvT 32 4x4
stride 2 -> BN -> LeakyReLU -> ConvT 1 4x4 stride 2, tanh: images ``(N, 28, 28, 1)`` in [-1, 1].

Discriminator: images ``(N, 28, 28, 1)`` in [-1, 1] with the label as ``n_classes`` constant feature
maps stacked onto the image channel (28x28x11) -> Conv 32 4x4 stride 2 -> LeakyReLU -> Dropout 0.3 ->
Conv 64 4x4 stride 2 -> LeakyReLU -> Dropout 0.3 -> flatten -> Dense 1: logits ``(N, 1)``.
The label enters at the input, not just before the final dense layer: there it would only add a
per-digit constant to the logit, and D could not judge whether an image matches its label.

``n_classes=0`` builds the unconditional twin: the same layers without the label inputs.
``companion.torch.cgan`` builds the same networks with the same layer names (``companion.bridge``
copies weights both ways) and trains through the same loop and run folder (:mod:`companion.training.cgan_task`).
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.noise import sample_latent
from companion.settings import quiet_native_stderr
from companion.tensorflow import runtime, training
from companion.tensorflow.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.training import cgan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError
from companion.validation import check_images, check_positive

N_CLASSES, NOISE_DIM, N_PER_CLASS = cgan_task.N_CLASSES, cgan_task.NOISE_DIM, cgan_task.N_PER_CLASS
METRICS = cgan_task.METRICS
G_FILTERS = (64, 32)  # channels at 7x7 and 14x14: small enough to train in minutes on two CPU cores
D_FILTERS = (32, 64)  # channels at 14x14 and 7x7
KERNEL = 4  # with stride 2, Keras' "same" padding is one pixel on each side: PyTorch's padding=1
LEAKY_SLOPE = 0.2  # the DCGAN paper's
BN_EPSILON = 1e-3  # Keras default; PyTorch's is 1e-5
BN_MOMENTUM = 0.99  # Keras keeps 99% of the running statistics per step (PyTorch momentum=0.01)
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default, passed to PyTorch's Adam too


def build_cgan_generator(n_classes: int = N_CLASSES, noise_dim: int = NOISE_DIM) -> keras.Model:
    """Noise ``(N, noise_dim)`` and labels ``(N, n_classes)`` -> images ``(N, 28, 28, 1)`` in [-1, 1];
    ``n_classes=0``: noise only (the unconditional twin). Call it as ``model([noise, onehot])``
    (conditional) or ``model(noise)``."""
    n_classes = cgan_task.check_n_classes(n_classes)
    check_positive("noise_dim", noise_dim, integer=True)
    c1, c2 = G_FILTERS
    same = {"kernel_size": KERNEL, "strides": 2, "padding": "same"}
    bn = {"epsilon": BN_EPSILON, "momentum": BN_MOMENTUM}
    noise = keras.Input(shape=(int(noise_dim),), name="noise")
    inputs, h = [noise], noise
    if n_classes:
        onehot = keras.Input(shape=(n_classes,), name="onehot")
        inputs.append(onehot)
        h = keras.layers.Concatenate()([noise, onehot])
    # Layers followed by batch norm need no bias: BN's offset replaces it.
    h = keras.layers.Dense(7 * 7 * c1, use_bias=False, name="project")(h)
    h = keras.layers.BatchNormalization(name="bn0", **bn)(h)
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)
    h = keras.layers.Reshape((7, 7, c1))(h)
    h = keras.layers.Conv2DTranspose(c2, use_bias=False, name="deconv1", **same)(h)  # 14x14
    h = keras.layers.BatchNormalization(name="bn1", **bn)(h)
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)
    images = keras.layers.Conv2DTranspose(1, activation="tanh", name="deconv2", **same)(h)  # 28x28
    model = keras.Model(inputs if n_classes else noise, images, name="generator")
    model.n_classes, model.noise_dim = n_classes, int(noise_dim)
    return model


def build_cgan_discriminator(n_classes: int = N_CLASSES, dropout: float = DROPOUT) -> keras.Model:
    """Images ``(N, 28, 28, 1)`` in [-1, 1] and labels ``(N, n_classes)`` -> one logit per image
    ``(N, 1)`` (real and matching its label > 0 > fake); ``n_classes=0``: images only.
    Call it as ``model([images, onehot])`` (conditional) or ``model(images)``."""
    n_classes = cgan_task.check_n_classes(n_classes)
    c1, c2 = D_FILTERS
    same = {"kernel_size": KERNEL, "strides": 2, "padding": "same"}
    images = keras.Input(shape=(28, 28, 1), name="images")
    inputs, h = [images], images
    if n_classes:
        onehot = keras.Input(shape=(n_classes,), name="onehot")
        inputs.append(onehot)
        # The label as n_classes constant 28x28 maps next to the pixels: 28x28x(1 + n_classes).
        maps = keras.layers.UpSampling2D(size=28)(keras.layers.Reshape((1, 1, n_classes))(onehot))
        h = keras.layers.Concatenate()([images, maps])
    h = keras.layers.Conv2D(c1, name="conv1", **same)(h)  # 14x14
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)
    h = keras.layers.Dropout(dropout)(h)
    h = keras.layers.Conv2D(c2, name="conv2", **same)(h)  # 7x7
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)
    h = keras.layers.Dropout(dropout)(h)
    logits = keras.layers.Dense(1, name="logit")(keras.layers.Flatten()(h))  # channels-last flattening
    model = keras.Model(inputs if n_classes else images, logits, name="discriminator")
    model.n_classes = n_classes
    return model


def _run(model: keras.Model, x: tf.Tensor, onehot: tf.Tensor | None, training: bool) -> tf.Tensor:
    """A generator or discriminator on ``x``, with the labels when it takes them."""
    return model(x if onehot is None else [x, onehot], training=training)


def gan_losses(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch. D wants real -> 1
    and fake -> 0; G wants D to call its fakes real (the non-saturating loss)."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
    g_loss = bce(tf.ones_like(fake_logits), fake_logits)
    return g_loss, d_loss


class CGAN:
    """A conditional GAN (``n_classes`` > 0) or its unconditional twin (``n_classes=0``): generator,
    discriminator, one Adam optimiser each (lr 2e-4, beta_1 0.5, epsilon 1e-7) and the train step.

    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds Keras' global
    generator); ``None`` leaves the global state alone. ``device``: see :func:`companion.tensorflow.runtime.device`.
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
            keras.utils.set_random_seed(seed)
        with tf.device(self.device):
            self.generator = build_cgan_generator(n_classes, noise_dim)
            self.discriminator = build_cgan_discriminator(n_classes, dropout)
            self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._compiled = tf.function(self._train_step)

    def train_step(
        self, images: tf.Tensor, noise: tf.Tensor, onehot: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """One update of D and G (compiled): images ``(B, 28, 28, 1)`` in [-1, 1], noise ``(B, noise_dim)``,
        the real images' one-hot labels ``(B, n_classes)`` (``None`` for the twin)."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(images, noise, onehot)

    def _train_step(
        self, images: tf.Tensor, noise: tf.Tensor, onehot: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        """D and G both updated from ONE forward pass (two tapes, as the DCGAN chapter's step).

        The fakes are drawn for the real batch's labels, and D judges every image with its label.
        """
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = _run(self.generator, noise, onehot, training=True)
            real_logits = _run(self.discriminator, images, onehot, training=True)
            fake_logits = _run(self.discriminator, fake, onehot, training=True)
            g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),  # D(x, y): 1 means "sure it is real"
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),  # D(G(z, y), y) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around the train step."""
        return Trainer(
            lambda batch: self._train_step(batch["real"], batch["noise"], batch.get("onehot")),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )


def generate(
    generator: keras.Model, noise: np.ndarray, labels: object = None, batch_size: int = 500
) -> np.ndarray:
    """Images ``(N, 28, 28)`` in [0, 1] (inference mode) from finite noise ``(N, noise_dim)`` and
    ``labels``: one digit for all, integers ``(N,)`` or (soft) label vectors ``(N, n_classes)``;
    ``None``: digits 0, 1, ..., 9, 0, ... in turn (the only choice for the unconditional twin)."""
    noise = check_images(noise, name="noise", value_range=(-np.inf, np.inf), shape=(generator.noise_dim,))
    onehot = cgan_task.expand_labels(labels, len(noise), generator.n_classes)
    parts = []
    for i in range(0, len(noise), batch_size):
        rows = None if onehot is None else onehot[i : i + batch_size]
        parts.append(_run(generator, noise[i : i + batch_size], rows, training=False).numpy())
    return (np.concatenate(parts)[..., 0] + 1.0) / 2.0  # tanh's [-1, 1] -> [0, 1]


def discriminate(
    discriminator: keras.Model, images: np.ndarray, labels: object = None, batch_size: int = 500
) -> np.ndarray:
    """Logits ``(N,)`` (inference mode) for images ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1],
    each judged with its label (integers ``(N,)`` or label vectors; ``None`` for the twin)."""
    x = cgan_task.check_cgan_images(images)[..., None]
    onehot = cgan_task.judged_labels(labels, len(x), discriminator.n_classes)
    parts = []
    for i in range(0, len(x), batch_size):
        rows = None if onehot is None else onehot[i : i + batch_size]
        parts.append(_run(discriminator, x[i : i + batch_size], rows, training=False).numpy())
    return np.concatenate(parts)[:, 0]


def sample(gan_or_generator: CGAN | keras.Model, n: int, label: object = None, seed: int = 0) -> np.ndarray:
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
    """Train on digits ``(N, 28, 28)`` (or ``(N, 28, 28, 1)``) in [0, 1] and their labels through the
    one loop; returns ``(gan, history)``. The history holds per-epoch means of ``g_loss``, ``d_loss``,
    ``d_real`` and ``d_fake`` and timings. Settings, defaults and behaviour:
    :class:`companion.training.cgan_task.CganConfig` (``n_classes=0``: the unconditional twin, which
    ignores the labels)."""
    s = cgan_task.cgan_settings(settings)
    x = cgan_task.check_cgan_images(images)[..., None]
    onehot = cgan_task.check_training_labels(labels, len(x), s.n_classes)
    gan = s.gan or CGAN(n_classes=s.n_classes, lr=s.lr, beta1=s.beta1, device=s.device, seed=s.seed)
    tasks.check_given_model(gan, s, ("n_classes",), "cgan.train")

    def grid(noise: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return generate(gan.generator, noise, rows)

    history = cgan_task.train_cgan(gan.trainer(), grid, x, onehot, gan.noise_dim, s)
    return gan, history
