"""The DCGAN chapter: the DCGAN of the TensorFlow tutorial, in Keras 3 with a ``tf.GradientTape`` train step.

Generator: noise (N, 100) -> Dense 7*7*256 (no bias) -> BN -> LeakyReLU -> reshape (7, 7, 256)
-> ConvT 128 5x5 stride 1 -> BN -> LeakyReLU -> ConvT 64 5x5 stride 2 -> BN -> LeakyReLU
-> ConvT 1 5x5 stride 2, tanh: images (N, 28, 28, 1) in [-1, 1]. Two options, for the chapter's
ablations: ``batch_norm=False`` drops the three BN layers (the dense layer and the first two
ConvTs then get the biases BN made redundant), ``output="sigmoid"`` draws images in [0, 1].

Discriminator: images (N, 28, 28, 1) in the generator's range -> Conv 64 5x5 stride 2 -> LeakyReLU -> Dropout 0.3
-> Conv 128 5x5 stride 2 -> LeakyReLU -> Dropout 0.3 -> flatten -> Dense 1: logits (N, 1).

``companion.torch.dcgan`` builds the same networks with the same layer names, so
``companion.bridge`` copies weights both ways, and the same :func:`train` loop with the same
run folder layout (``run.json``, ``history.json``, ``frames.npy``, ``probes/``, ``training.gif`` and the
checkpoints), so that a run can be interrupted and resumed.
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.settings import quiet_native_stderr
from companion.tensorflow import runtime, training
from companion.tensorflow.training import FRAMEWORK, Trainer, make_adam
from companion.training import tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError
from companion.training.run_folder import latest_epoch
from companion.validation import check_images, check_positive

NOISE_DIM, N_FIXED, N_PROBE = tasks.DCGAN_NOISE_DIM, tasks.N_FIXED, tasks.N_PROBE
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")
KERNEL = 5
LEAKY_SLOPE = 0.3  # the tutorial's LeakyReLU(); Keras 3's layer default, set explicitly on both sides
BN_EPSILON = 1e-3  # Keras default; PyTorch's is 1e-5
BN_MOMENTUM = 0.99  # Keras keeps 99% of the running statistics per step (PyTorch momentum=0.01)
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default, passed to PyTorch's Adam too
probe_samples = tasks.probe_samples


def make_generator(
    noise_dim: int = NOISE_DIM, seed: int | None = None, batch_norm: bool = True, output: str = "tanh"
) -> keras.Model:
    """Noise ``(N, noise_dim)`` -> images ``(N, 28, 28, 1)`` in [-1, 1] (tanh) or [0, 1] (``output="sigmoid"``).

    ``batch_norm=False`` leaves out the batch norm layers. ``seed`` makes the initial weights
    repeatable (it reseeds Keras' global generator first).
    """
    check_positive("noise_dim", noise_dim, integer=True)
    tasks.check_dcgan_architecture(batch_norm, output)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    # A layer followed by batch norm needs no bias (BN's offset replaces it); without BN it gets one back.
    conv = {"kernel_size": KERNEL, "padding": "same", "use_bias": not batch_norm}
    bn = {"epsilon": BN_EPSILON, "momentum": BN_MOMENTUM}

    def normalized(name: str) -> list[keras.layers.Layer]:
        return [keras.layers.BatchNormalization(name=name, **bn)] if batch_norm else []

    return keras.Sequential(
        [
            keras.Input(shape=(noise_dim,)),
            keras.layers.Dense(7 * 7 * 256, use_bias=not batch_norm, name="project"),
            *normalized("bn0"),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Reshape((7, 7, 256)),
            keras.layers.Conv2DTranspose(128, strides=1, name="deconv1", **conv),  # 7x7x128
            *normalized("bn1"),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Conv2DTranspose(64, strides=2, name="deconv2", **conv),  # 14x14x64
            *normalized("bn2"),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Conv2DTranspose(
                1, strides=2, activation=output, name="deconv3", **{**conv, "use_bias": False}
            ),
        ],
        name="generator",
    )


def make_discriminator(dropout: float = DROPOUT, seed: int | None = None) -> keras.Model:
    """Images ``(N, 28, 28, 1)`` in the generator's range -> one logit per image ``(N, 1)`` (real > 0 > fake).

    ``seed`` makes the initial weights and the dropout masks' stream repeatable.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    conv = {"kernel_size": KERNEL, "strides": 2, "padding": "same"}
    seeds = (None, None) if seed is None else (seed, seed + 1)
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(64, name="conv1", **conv),  # 14x14x64
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Dropout(dropout, seed=seeds[0]),
            keras.layers.Conv2D(128, name="conv2", **conv),  # 7x7x128
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Dropout(dropout, seed=seeds[1]),
            keras.layers.Flatten(),  # channels last: (7, 7, 128) -> 6272
            keras.layers.Dense(1, name="logit"),
        ],
        name="discriminator",
    )


def gan_losses(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch.

    D wants real -> 1 and fake -> 0; G wants D to call its fakes real (the non-saturating loss).
    """
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
    g_loss = bce(tf.ones_like(fake_logits), fake_logits)
    return g_loss, d_loss


class DCGAN:
    """Generator, discriminator, one Adam optimiser each, and the train step.

    ``batch_norm`` and ``output`` choose the generator (:func:`make_generator`); the data range follows
    ``output``, and :meth:`generate` and :meth:`discriminate` take and give [0, 1] either way.
    ``jit_compile=True`` compiles the step with XLA; off by default because it made the step slower
    on the CPUs measured (``benchmarks/dcgan_speed.py``). ``seed`` makes the initial weights and the
    dropout masks repeatable; ``None`` leaves the global random state alone. ``device``: see
    :func:`companion.tensorflow.runtime.device`.
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
        with tf.device(self.device):
            self.generator = make_generator(noise_dim, seed=seed, batch_norm=batch_norm, output=output)
            self.discriminator = make_discriminator(dropout, seed=None if seed is None else seed + 1)
            # Optimiser slots exist from the start, so a checkpoint restores into them directly.
            self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._compiled = tf.function(self._train_step, jit_compile=jit_compile)

    def train_step(self, images: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of D and G from one forward pass (compiled): images ``(B, 28, 28, 1)`` in the data range."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(images, noise)

    def _train_step(self, images: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of D and G from one forward pass, as in the TF tutorial (two tapes)."""
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(noise, training=True)
            real_logits = self.discriminator(images, training=True)
            fake_logits = self.discriminator(fake, training=True)
            g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),  # D(x): 1 means "sure it is real"
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),  # D(G(z)) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda batch: self._train_step(batch["real"], batch["noise"]),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
            compile=self.jit_compile,
        )

    def generate(self, noise: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Images ``(N, 28, 28)`` in [0, 1] from finite noise ``(N, noise_dim)`` (inference mode)."""
        noise = check_images(noise, name="noise", value_range=(-np.inf, np.inf), shape=(self.noise_dim,))
        with tf.device(self.device):
            parts = [
                self.generator(noise[i : i + batch_size], training=False).numpy()
                for i in range(0, len(noise), batch_size)
            ]
        return tasks.to_unit_range(np.concatenate(parts)[..., 0], self.output)

    def discriminate(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Logits ``(N,)`` for images ``(N, 28, 28)`` in [0, 1] (inference mode)."""
        x = tasks.to_data_range(check_images(images, name="images", shape=(28, 28)), self.output)
        with tf.device(self.device):
            parts = [
                self.discriminator(x[i : i + batch_size, ..., None], training=False).numpy()
                for i in range(0, len(x), batch_size)
            ]
        return np.concatenate(parts)[:, 0]


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
    x = tasks.check_dcgan_images(images, s.output)[..., None]
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
