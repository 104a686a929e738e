"""Pix2pix (Isola et al., 2017) on 28x28 digits in Keras 3: a U-Net generator, a PatchGAN discriminator.

Generator (U-Net), images ``(N, 28, 28, 1)`` in [-1, 1] -> ``(N, 28, 28, 1)`` in [-1, 1]:

- encoder: ``down1`` Conv 4x4 stride 2 (F filters, no batch norm, as in the paper) -> LeakyReLU 0.2,
  14x14; ``down2`` Conv 4x4 stride 2 (2F) -> BN -> LeakyReLU, 7x7; ``down3`` Conv 7x7 "valid"
  (4F, no batch norm, as the paper's innermost layer) -> LeakyReLU, 1x1;
- decoder: ``up3`` ConvT 7x7 "valid" (2F) -> BN -> Dropout -> ReLU, 7x7; concat(up3, down2) ->
  ``up2`` ConvT 4x4 stride 2 (2F) -> BN -> Dropout -> ReLU, 14x14; concat(up2, down1) -> ``up1``
  ConvT 4x4 stride 2 (1) -> tanh, 28x28.

The 1x1 bottleneck lets every output pixel depend on the whole input (a hidden lower half must be
drawn from the top half); the skip connections hand the encoder's features at 7x7 and 14x14
straight to the decoder, so stroke positions need not squeeze through the bottleneck. Dropout in
the decoder is the paper's only noise; it is on while training and off in :func:`translate`.

Discriminator (PatchGAN): concat(input, target or output), ``(N, 28, 28, 2)`` -> ``patch1`` Conv
4x4 stride 2 (F) -> LeakyReLU -> ``patch2`` Conv 4x4 stride 2 (2F) -> BN -> LeakyReLU ->
``patch_logits`` Conv 3x3 (1): a 7x7 grid of logits, each judging an 18x18 patch of the pair
(:data:`PATCH_RECEPTIVE_FIELD`).

``companion.torch.pix2pix`` builds the same networks with the same layer names, so
``companion.bridge`` copies weights both ways; the settings, checks and run folder are shared in
:mod:`companion.training.pix2pix_task`.
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.image_pairs import as_digits
from companion.settings import quiet_native_stderr
from companion.tensorflow import runtime, training
from companion.tensorflow.training import FRAMEWORK, Trainer, make_adam
from companion.training import pix2pix_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

L1_WEIGHT = pix2pix_task.L1_WEIGHT
FILTERS = pix2pix_task.FILTERS
DROPOUT = pix2pix_task.DROPOUT
LEAKY_SLOPE = pix2pix_task.LEAKY_SLOPE
BN_EPSILON = pix2pix_task.BN_EPSILON
BN_MOMENTUM = 0.99  # Keras keeps 99% of the running statistics per step (PyTorch momentum=0.01)
ADAM_EPSILON = pix2pix_task.ADAM_EPSILON
PATCH_GRID = pix2pix_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = pix2pix_task.PATCH_RECEPTIVE_FIELD
METRICS = pix2pix_task.METRICS
_DOWN = {"kernel_size": 4, "strides": 2, "padding": "same"}
_SAME = {"kernel_size": 3, "strides": 1, "padding": "same"}


def _normalized(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _leaky(h: keras.KerasTensor) -> keras.KerasTensor:
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)


def build_unet(filters: int = FILTERS, dropout: float = DROPOUT, seed: int | None = None) -> keras.Model:
    """The U-Net generator: images ``(N, 28, 28, 1)`` in [-1, 1] -> translations ``(N, 28, 28, 1)`` in [-1, 1].

    ``filters`` (F) sets the widths F, 2F, 4F; ``dropout`` is the decoder's rate (0 turns it off).
    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds Keras first).
    Layers followed by batch norm carry no bias (BN's offset replaces it).
    """
    pix2pix_task.check_architecture(filters, dropout)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    seeds = (None, None) if seed is None else (seed, seed + 1)
    images = keras.Input(shape=(28, 28, 1))
    e1 = _leaky(keras.layers.Conv2D(f, name="down1", **_DOWN)(images))  # 14x14xF
    e2 = keras.layers.Conv2D(2 * f, use_bias=False, name="down2", **_DOWN)(e1)
    e2 = _leaky(_normalized("bn_down2")(e2))  # 7x7x2F
    # The paper's innermost layer: down to 1x1 (no batch norm), so every output pixel sees the whole input.
    e3 = _leaky(keras.layers.Conv2D(4 * f, 7, name="down3")(e2))  # 1x1x4F
    h = keras.layers.Conv2DTranspose(2 * f, 7, use_bias=False, name="up3")(e3)  # 7x7x2F
    h = keras.layers.ReLU()(keras.layers.Dropout(dropout, seed=seeds[0])(_normalized("bn_up3")(h)))
    h = keras.layers.Concatenate()([h, e2])  # skip at 7x7
    h = keras.layers.Conv2DTranspose(2 * f, use_bias=False, name="up2", **_DOWN)(h)  # 14x14x2F
    h = keras.layers.ReLU()(keras.layers.Dropout(dropout, seed=seeds[1])(_normalized("bn_up2")(h)))
    h = keras.layers.Concatenate()([h, e1])  # skip at 14x14
    outputs = keras.layers.Conv2DTranspose(1, activation="tanh", name="up1", **_DOWN)(h)  # 28x28x1
    return keras.Model(images, outputs, name="unet")


def build_patch_discriminator(filters: int = FILTERS, seed: int | None = None) -> keras.Model:
    """The PatchGAN: ``[inputs, images]``, each ``(N, 28, 28, 1)`` in [-1, 1] -> logits ``(N, 7, 7, 1)``,
    one per 18x18 patch of the pair (> 0: "this patch of ``images`` is the real target of ``inputs``").

    ``seed`` makes the initial weights repeatable (it reseeds Keras first).
    """
    pix2pix_task.check_architecture(filters, 0.0)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    inputs, images = keras.Input(shape=(28, 28, 1)), keras.Input(shape=(28, 28, 1))
    h = keras.layers.Concatenate()([inputs, images])  # D judges the pair, not the image alone
    h = _leaky(keras.layers.Conv2D(f, name="patch1", **_DOWN)(h))  # 14x14xF
    h = keras.layers.Conv2D(2 * f, use_bias=False, name="patch2", **_DOWN)(h)
    h = _leaky(_normalized("bn_patch2")(h))  # 7x7x2F
    logits = keras.layers.Conv2D(1, name="patch_logits", **_SAME)(h)  # 7x7x1
    return keras.Model([inputs, images], logits, name="patch_discriminator")


def generator_loss(
    fake_logits: tf.Tensor, outputs: tf.Tensor, targets: tf.Tensor, l1_weight: float = L1_WEIGHT
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(total, adversarial, l1)``: total = adversarial + ``l1_weight`` x l1.

    adversarial: the non-saturating loss, binary cross-entropy of D's patch logits on G's outputs
    against "real", averaged over every patch; l1: mean |targets - outputs| over every pixel, in the
    [-1, 1] range the networks work in (twice the error in [0, 1] pixels).
    """
    adversarial = tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake_logits), logits=fake_logits)
    )
    l1 = tf.reduce_mean(tf.abs(tf.cast(targets, outputs.dtype) - outputs))
    return adversarial + l1_weight * l1, adversarial, l1


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy, real pairs -> 1 and generated pairs -> 0, each averaged over every patch.

    (The paper halves it to slow D down; Adam's steps do not depend on such a scale, so it is left whole.)
    """
    real = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(real_logits), logits=real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake_logits), logits=fake_logits)
    return tf.reduce_mean(real) + tf.reduce_mean(fake)


def translate(generator: keras.Model, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The generator's translations of ``inputs`` (digits ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]; inference mode (batch norm's running statistics, no dropout)."""
    x = tasks.to_data_range(as_digits(inputs, "inputs"), "tanh")[..., None]
    parts = [generator(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return tasks.to_unit_range(np.concatenate(parts)[..., 0], "tanh")


class Pix2Pix:
    """The U-Net generator, the PatchGAN discriminator, one Adam optimiser each, and the train step.

    ``adversarial=False`` makes the L1-only baseline: the step updates G on L1 alone and never
    touches D. ``filters`` and ``dropout`` choose the networks; ``seed`` makes the initial weights
    and dropout masks repeatable (``None`` leaves Keras' global random state alone). ``device``: see
    :func:`companion.tensorflow.runtime.device`.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        l1_weight: float = L1_WEIGHT,
        adversarial: bool = True,
        filters: int = FILTERS,
        dropout: float = DROPOUT,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = pix2pix_task.Pix2PixConfig(lr=lr, beta1=beta1, l1_weight=l1_weight, adversarial=adversarial)
        self.l1_weight, self.adversarial = s.l1_weight, s.adversarial
        self.lr, self.beta1 = float(lr), float(beta1)
        self.filters, self.dropout = int(filters), float(dropout)
        self.device = runtime.device(device)
        with tf.device(self.device):
            self.generator = build_unet(filters, dropout, seed=seed)
            self.discriminator = build_patch_discriminator(filters, seed=None if seed is None else seed + 1)
            # Optimiser slots exist from the start, so a checkpoint restores into them directly.
            self.g_optimizer = make_adam(self.generator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._compiled = tf.function(self._train_step)

    def train_step(self, inputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update (compiled) from a batch of pairs ``(B, 28, 28, 1)`` in [-1, 1]; returns the step's
        ``g_l1``, ``g_adv`` and ``d_loss`` (``g_l1`` alone for the L1 baseline)."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(inputs, targets)

    def _train_step(self, inputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        """One forward pass feeds both updates, as in the TensorFlow pix2pix tutorial (two tapes)."""
        if not self.adversarial:
            with tf.GradientTape() as tape:
                l1 = tf.reduce_mean(tf.abs(targets - self.generator(inputs, training=True)))
            g_vars = self.generator.trainable_variables
            self.g_optimizer.apply_gradients(zip(tape.gradient(l1, g_vars), g_vars, strict=True))
            return {"g_l1": l1}
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            outputs = self.generator(inputs, training=True)
            real_logits = self.discriminator([inputs, targets], training=True)
            fake_logits = self.discriminator([inputs, outputs], training=True)
            g_loss, g_adv, g_l1 = generator_loss(fake_logits, outputs, targets, self.l1_weight)
            d_loss = discriminator_loss(real_logits, fake_logits)
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        return {"g_l1": g_l1, "g_adv": g_adv, "d_loss": d_loss}

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda batch: self._train_step(batch["inputs"], batch["targets"]),
            models={"generator": self.generator, "discriminator": self.discriminator},
            optimizers={"generator": self.g_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )

    def translate(self, inputs: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with this generator: ``(N, 28, 28)`` in [0, 1] from inputs in [0, 1]."""
        with tf.device(self.device):
            return translate(self.generator, inputs, batch_size)

    def patch_logits(self, inputs: np.ndarray, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """D's verdicts ``(N, 7, 7)`` (logits, > 0 "real") on pairs of digits in [0, 1], inference mode."""
        x, y = pix2pix_task.check_pairs(inputs, images)
        with tf.device(self.device):
            parts = [
                self.discriminator(
                    [x[i : i + batch_size, ..., None], y[i : i + batch_size, ..., None]]
                ).numpy()
                for i in range(0, len(x), batch_size)
            ]
        return np.concatenate(parts)[..., 0]


def load(out_dir: str | os.PathLike, device: str | None = None) -> Pix2Pix:
    """The pix2pix model (or L1 baseline) trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = pix2pix_task.pix2pix_run(out_dir, FRAMEWORK)
    model = Pix2Pix(
        lr=config["lr"],
        beta1=config["beta1"],
        l1_weight=config["l1_weight"],
        adversarial=config["adversarial"],
        filters=config["filters"],
        dropout=config["dropout"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    inputs: np.ndarray, targets: np.ndarray, **settings: Unpack[pix2pix_task.Pix2PixSettings]
) -> tuple[Pix2Pix, dict]:
    """Train pix2pix (or, with ``adversarial=False``, the L1 baseline) on paired digits in [0, 1]
    through the one loop; returns ``(model, history)``. Settings, defaults and behaviour:
    :class:`companion.training.pix2pix_task.Pix2PixConfig`; the history holds per-epoch means of
    ``g_l1``, ``g_adv`` and ``d_loss`` (``g_l1`` alone for the baseline) and timings."""
    s = pix2pix_task.pix2pix_settings(settings)
    x, y = pix2pix_task.check_pairs(inputs, targets)
    model = s.gan or Pix2Pix(
        lr=s.lr,
        beta1=s.beta1,
        l1_weight=s.l1_weight,
        adversarial=s.adversarial,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(model, s, pix2pix_task.GIVEN_MODEL_KEYS, "pix2pix.train")
    architecture = {"filters": model.filters, "dropout": model.dropout}
    history = pix2pix_task.fit_pix2pix(model.trainer(), x[..., None], y[..., None], s, architecture)
    return model, history
