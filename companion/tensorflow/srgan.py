"""Super-resolution at MNIST scale in Keras 3: a CNN trained with MSE, and the same CNN trained as SRGAN.

Generator (SRGAN's shape, shrunk): a low-resolution digit ``(N, s, s, 1)`` (s = 7 for factor 4,
14 for factor 2) -> 3x3 conv (64, LeakyReLU) -> two residual blocks (3x3 conv LeakyReLU, 3x3 conv, added
back) plus a skip around both -> per factor 2: nearest-neighbour upsampling x2 and a 3x3 conv
(LeakyReLU) -> 3x3 conv to one channel, linear: ``(N, 28, 28, 1)``, trained towards [0, 1]
(:func:`upscale` clips). Linear, not a sigmoid: most target pixels are 0, so early training pushes
a sigmoid deep into saturation, where its gradient vanishes and the MSE network stays black for
ever (seen in PyTorch at seed 0: MSE stuck at 0.112 from the second epoch).

Discriminator (unconditional, as in SRGAN, DCGAN-like): a 28x28 digit in [0, 1] -> two 4x4
stride-2 convs (32, 64 filters, LeakyReLU 0.2) -> flatten -> Dense 1: one logit per image.

The generator's loss is the pixel MSE plus ``adversarial_weight`` times the non-saturating GAN
loss; with ``adversarial_weight=0`` no discriminator is built and the generator is the plain
MSE-trained CNN. ``companion.torch.srgan`` builds the same networks with the same layer names,
so ``companion.bridge`` copies weights both ways. Framework-neutral parts (checks, the loop, the
scores) live in :mod:`companion.training.srgan_task`; resampling in :mod:`companion.resampling`.
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
_SAME = {"kernel_size": 3, "padding": "same"}


def _leaky(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.leaky_relu(x, LEAKY_SLOPE)


def build_sr_generator(factor: int = 4) -> keras.Model:
    """Low-resolution digits ``(N, 28 / factor, 28 / factor, 1)`` -> ``(N, 28, 28, 1)``, a linear output
    trained towards [0, 1] (:func:`upscale` clips it)."""
    factor = srgan_task.check_factor(factor)
    size = srgan_task.low_res_size(factor)
    low_res = keras.Input(shape=(size, size, 1))
    head = keras.layers.Conv2D(FEATURES, activation=_leaky, name="head", **_SAME)(low_res)
    h = head
    for i in range(1, RESIDUAL_BLOCKS + 1):
        r = keras.layers.Conv2D(FEATURES, activation=_leaky, name=f"res{i}_a", **_SAME)(h)
        r = keras.layers.Conv2D(FEATURES, name=f"res{i}_b", **_SAME)(r)
        h = keras.layers.Add()([h, r])
    h = keras.layers.Add()([head, h])  # SRGAN's skip around the residual blocks
    for i, filters in enumerate(UP_FILTERS[: factor.bit_length() - 1], start=1):
        h = keras.layers.UpSampling2D(2, interpolation="nearest")(h)
        h = keras.layers.Conv2D(filters, activation=_leaky, name=f"up{i}", **_SAME)(h)
    image = keras.layers.Conv2D(1, name="to_image", **_SAME)(h)  # linear: see the module docstring
    return keras.Model(low_res, image, name="sr_generator")


def build_sr_discriminator() -> keras.Model:
    """28x28 digits ``(N, 28, 28, 1)`` in [0, 1] -> one logit per image ``(N, 1)`` (real > 0 > upscaled)."""
    conv = {"kernel_size": 4, "strides": 2, "padding": "same"}
    c1, c2 = D_FILTERS
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(c1, name="conv1", **conv),  # 14x14
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Conv2D(c2, name="conv2", **conv),  # 7x7
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Flatten(),  # channels last: (7, 7, 64) -> 3136
            keras.layers.Dense(1, name="logit"),
        ],
        name="sr_discriminator",
    )


def generator_loss(
    outputs: tf.Tensor, targets: tf.Tensor, fake_logits: tf.Tensor | None, adversarial_weight: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(loss, mse, adversarial)``: loss = MSE(outputs, targets) + adversarial_weight x adversarial,
    where adversarial is the non-saturating GAN loss -log sigmoid(D(G(x_low))), averaged over the batch
    (0 without ``fake_logits``)."""
    mse = tf.reduce_mean(tf.square(tf.cast(outputs, tf.float32) - tf.cast(targets, tf.float32)))
    if fake_logits is None:
        return mse, mse, tf.zeros_like(mse)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    adversarial = bce(tf.ones_like(fake_logits), fake_logits)
    return mse + adversarial_weight * adversarial, mse, adversarial


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy from logits, batch means: real digits -> 1, upscaled ones -> 0."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    return bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)


class SuperResolution:
    """Generator, discriminator (``None`` when ``adversarial_weight`` is 0), one Adam each, and the step.

    ``seed`` makes the initial weights repeatable (the generator's do not depend on whether there is
    a discriminator, so the MSE network and the SRGAN start alike); ``None`` leaves the global random
    state alone. ``device``: see :func:`companion.tensorflow.runtime.device`.
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
        self.discriminator: keras.Model | None = None
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        with tf.device(self.device):
            if seed is not None:
                keras.utils.set_random_seed(seed)
            self.generator = build_sr_generator(self.factor)
            self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            if self.adversarial_weight > 0:
                if seed is not None:
                    keras.utils.set_random_seed(seed + 1)
                self.discriminator = build_sr_discriminator()
                self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._compiled = tf.function(self._train_step)

    def train_step(self, low_res: tf.Tensor, high_res: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update (compiled) from ``low_res`` ``(B, s, s, 1)`` and ``high_res`` ``(B, 28, 28, 1)`` in [0, 1]."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(low_res, high_res)

    def _train_step(self, low_res: tf.Tensor, high_res: tf.Tensor) -> dict[str, tf.Tensor]:
        """One Adam step for G on MSE (+ weight x adversarial) and, with a D, one for D, both from one
        forward pass (D's verdicts before its update), as in the DCGAN chapter."""
        g_vars = self.generator.trainable_variables
        if self.discriminator is None or self.d_optimizer is None:
            with tf.GradientTape() as tape:
                outputs = self.generator(low_res, training=True)
                g_loss, mse, _ = generator_loss(outputs, high_res, None, 0.0)
            self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars, strict=True))
            return {"g_loss": g_loss, "mse": mse}
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            outputs = self.generator(low_res, training=True)
            real_logits = self.discriminator(high_res, training=True)
            fake_logits = self.discriminator(outputs, training=True)
            g_loss, mse, adversarial = generator_loss(outputs, high_res, fake_logits, self.adversarial_weight)
            d_loss = discriminator_loss(real_logits, fake_logits)
        d_vars = self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        return {
            "g_loss": g_loss,
            "mse": mse,
            "adversarial": adversarial,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),  # D(x) on real digits
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),  # D(G(x_low)) before this update
        }

    def trainer(self) -> Trainer:
        """The one loop's trainer around the step."""
        models = {"generator": self.generator}
        optimizers = {"generator": self.g_optimizer}
        if self.discriminator is not None and self.d_optimizer is not None:
            models["discriminator"] = self.discriminator
            optimizers["discriminator"] = self.d_optimizer
        return Trainer(
            lambda batch: self._train_step(batch["low_res"], batch["high_res"]),
            models=models,
            optimizers=optimizers,
            device=self.device,
        )


def upscale(generator: keras.Model, low_res: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """28x28 digits ``(N, 28, 28)`` in [0, 1] from low-resolution ones ((N, s, s) or (N, s, s, 1) in
    [0, 1], s = 28 / the generator's factor), in inference mode."""
    factor = srgan_task.HIGH_RES // int(generator.input_shape[1])
    x = srgan_task.check_low_res(low_res, factor)[..., None]
    check_positive("batch_size", batch_size, integer=True)
    parts = [generator(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.clip(np.concatenate(parts)[..., 0], 0.0, 1.0)  # the output layer is linear


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
    history = srgan_task.fit_srgan(model.trainer(), low[..., None], high[..., None], s)
    return model, history
