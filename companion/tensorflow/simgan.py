"""SimGAN (Shrivastava et al., 2017) on 28x28 digits in Keras 3: a refiner and a local discriminator.

Refiner, synthetic digits ``(N, 28, 28, 1)`` in [-1, 1] -> refined digits ``(N, 28, 28, 1)`` in [-1, 1]
(fully convolutional, every layer keeps 28x28): ``refiner_in`` Conv 3x3 (F) -> ReLU; ``blocks``
residual blocks, each ``block{i}_conv1`` Conv 3x3 (F) -> ReLU -> ``block{i}_conv2`` Conv 3x3 (F),
added to the block's input, -> ReLU; ``refiner_out`` Conv 1x1 (1) -> tanh.

Local discriminator, digits ``(N, 28, 28, 1)`` in [-1, 1] -> ``local1`` Conv 4x4 stride 2 (F) ->
LeakyReLU 0.2, 14x14 -> ``local2`` Conv 4x4 stride 2 (2F) -> LeakyReLU, 7x7 -> ``local_logits``
Conv 3x3 (1): a 7x7 grid of logits, each judging an 18x18 patch (:data:`PATCH_RECEPTIVE_FIELD`).
No batch norm: D sees real, refined and history images in separate passes, and statistics mixed
across them would differ from the ones it meets when judging.

``companion.torch.simgan`` builds the same networks with the same layer names, so
``companion.bridge`` copies weights both ways; the settings, the history buffer and the run
folder are shared in :mod:`companion.training.simgan_task`.
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
from companion.training import simgan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

SELF_REGULARISATION = simgan_task.SELF_REGULARISATION
FILTERS = simgan_task.FILTERS
BLOCKS = simgan_task.BLOCKS
LEAKY_SLOPE = simgan_task.LEAKY_SLOPE
ADAM_EPSILON = simgan_task.ADAM_EPSILON
PATCH_GRID = simgan_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = simgan_task.PATCH_RECEPTIVE_FIELD
HISTORY_SIZE = simgan_task.HISTORY_SIZE
METRICS = simgan_task.METRICS
_SAME = {"kernel_size": 3, "padding": "same"}
_DOWN = {"kernel_size": 4, "strides": 2, "padding": "same"}


def build_refiner(filters: int = FILTERS, blocks: int = BLOCKS, seed: int | None = None) -> keras.Model:
    """The ResNet refiner: synthetic digits ``(N, 28, 28, 1)`` in [-1, 1] -> refined ``(N, 28, 28, 1)`` in [-1, 1].

    ``filters`` (F) is the width of every 3x3 convolution, ``blocks`` the number of residual blocks.
    ``seed`` makes the initial weights repeatable (it reseeds Keras first).
    """
    simgan_task.check_architecture(filters, blocks)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    images = keras.Input(shape=(28, 28, 1))
    h = keras.layers.Conv2D(f, activation="relu", name="refiner_in", **_SAME)(images)
    for i in range(1, int(blocks) + 1):
        r = keras.layers.Conv2D(f, activation="relu", name=f"block{i}_conv1", **_SAME)(h)
        r = keras.layers.Conv2D(f, name=f"block{i}_conv2", **_SAME)(r)
        h = keras.layers.ReLU()(keras.layers.Add()([h, r]))  # the block learns a change to its input
    refined = keras.layers.Conv2D(1, 1, activation="tanh", name="refiner_out")(h)
    return keras.Model(images, refined, name="refiner")


def build_local_discriminator(filters: int = FILTERS, seed: int | None = None) -> keras.Model:
    """The local discriminator: digits ``(N, 28, 28, 1)`` in [-1, 1] -> logits ``(N, 7, 7, 1)``, one per
    18x18 patch (> 0: "this patch is from a real digit").

    ``seed`` makes the initial weights repeatable (it reseeds Keras first).
    """
    simgan_task.check_architecture(filters, 0)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    images = keras.Input(shape=(28, 28, 1))
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(
        keras.layers.Conv2D(f, name="local1", **_DOWN)(images)
    )
    h = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(
        keras.layers.Conv2D(2 * f, name="local2", **_DOWN)(h)
    )
    logits = keras.layers.Conv2D(1, name="local_logits", **_SAME)(h)
    return keras.Model(images, logits, name="local_discriminator")


def _bce(logits: tf.Tensor, label: float) -> tf.Tensor:
    """Mean binary cross-entropy of every patch logit against ``label`` (1 real, 0 refined)."""
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)
    )


def refiner_loss(
    refined_logits: tf.Tensor,
    refined: tf.Tensor,
    synthetic: tf.Tensor,
    self_regularisation: float = SELF_REGULARISATION,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(total, adversarial, regularisation)``: total = adversarial + ``self_regularisation`` x regularisation.

    adversarial: the non-saturating loss, binary cross-entropy of D's patch logits on refined
    images against "real", averaged over every patch (the local adversarial loss); regularisation:
    mean |refined - synthetic| over every pixel, in the [-1, 1] range the networks work in.
    """
    adversarial = _bce(refined_logits, 1.0)
    regularisation = tf.reduce_mean(tf.abs(refined - tf.cast(synthetic, refined.dtype)))
    return adversarial + self_regularisation * regularisation, adversarial, regularisation


def discriminator_loss(
    real_logits: tf.Tensor, refined_logits: tf.Tensor, history_logits: tf.Tensor, history_weight: tf.Tensor
) -> tf.Tensor:
    """Binary cross-entropy, real digits -> 1 and refined ones -> 0, each averaged over every patch.

    With ``history_weight`` 1 the refined side is the first half of the new refined batch plus the
    equally many history images (the paper's buffer); with 0 (buffer still empty, or no buffer) it
    is the whole new refined batch.
    """
    half = tf.shape(history_logits)[0]
    mixed = 0.5 * (_bce(refined_logits[:half], 0.0) + _bce(history_logits, 0.0))
    weight = tf.reshape(tf.cast(history_weight, mixed.dtype), [])
    return _bce(real_logits, 1.0) + weight * mixed + (1.0 - weight) * _bce(refined_logits, 0.0)


def refine(refiner: keras.Model, synthetic: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The refiner's output for ``synthetic`` digits (``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]."""
    x = tasks.to_data_range(as_digits(synthetic, "synthetic"), "tanh")[..., None]
    parts = [refiner(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return tasks.to_unit_range(np.concatenate(parts)[..., 0], "tanh")


class SimGAN:
    """The refiner, the local discriminator, one Adam optimiser each, and the train step.

    ``filters`` and ``blocks`` choose the networks; ``seed`` makes the initial weights repeatable
    (``None`` leaves Keras' global random state alone). ``device``: see
    :func:`companion.tensorflow.runtime.device`.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        self_regularisation: float = SELF_REGULARISATION,
        filters: int = FILTERS,
        blocks: int = BLOCKS,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = simgan_task.SimganConfig(lr=lr, beta1=beta1, self_regularisation=self_regularisation)
        simgan_task.check_architecture(filters, blocks)
        self.lr, self.beta1, self.self_regularisation = (
            float(s.lr),
            float(s.beta1),
            float(s.self_regularisation),
        )
        self.filters, self.blocks = int(filters), int(blocks)
        self.device = runtime.device(device)
        with tf.device(self.device):
            self.refiner = build_refiner(filters, blocks, seed=seed)
            self.discriminator = build_local_discriminator(filters, seed=None if seed is None else seed + 1)
            # Optimiser slots exist from the start, so a checkpoint restores into them directly.
            self.r_optimizer = make_adam(self.refiner, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
            self.d_optimizer = make_adam(self.discriminator, lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self._compiled = tf.function(self._train_step)

    def train_step(
        self, synthetic: tf.Tensor, real: tf.Tensor, history: tf.Tensor, history_weight: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One update (compiled) from ``synthetic`` and ``real`` batches ``(B, 28, 28, 1)`` and ``B / 2``
        ``history`` images, all in [-1, 1], ``history_weight`` ``(1,)`` (0 ignores the history);
        returns ``r_adv``, ``r_reg``, ``d_loss`` and ``refined``, the batch's refined images."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(synthetic, real, history, history_weight)

    def _train_step(
        self, synthetic: tf.Tensor, real: tf.Tensor, history: tf.Tensor, history_weight: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One forward pass feeds both updates (D's verdicts before its update), as in the pix2pix step."""
        with tf.GradientTape() as r_tape, tf.GradientTape() as d_tape:
            refined = self.refiner(synthetic, training=True)
            refined_logits = self.discriminator(refined, training=True)
            real_logits = self.discriminator(real, training=True)
            history_logits = self.discriminator(history, training=True)
            r_loss, r_adv, r_reg = refiner_loss(refined_logits, refined, synthetic, self.self_regularisation)
            d_loss = discriminator_loss(real_logits, refined_logits, history_logits, history_weight)
        r_vars, d_vars = self.refiner.trainable_variables, self.discriminator.trainable_variables
        self.r_optimizer.apply_gradients(zip(r_tape.gradient(r_loss, r_vars), r_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        return {"r_adv": r_adv, "r_reg": r_reg, "d_loss": d_loss, "refined": refined}

    def trainer(self) -> Trainer:
        """The one loop's trainer around :meth:`train_step`."""
        return Trainer(
            lambda b: self._train_step(b["synthetic"], b["real"], b["history"], b["history_weight"]),
            models={"refiner": self.refiner, "discriminator": self.discriminator},
            optimizers={"refiner": self.r_optimizer, "discriminator": self.d_optimizer},
            device=self.device,
        )

    def refine(self, synthetic: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`refine` with this refiner: ``(N, 28, 28)`` in [0, 1] from synthetic digits in [0, 1]."""
        with tf.device(self.device):
            return refine(self.refiner, synthetic, batch_size)

    def patch_logits(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """D's verdicts ``(N, 7, 7)`` (logits, > 0 "real") on digits in [0, 1]."""
        x = tasks.to_data_range(as_digits(images), "tanh")[..., None]
        with tf.device(self.device):
            parts = [self.discriminator(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)[..., 0]


def load(out_dir: str | os.PathLike, device: str | None = None) -> SimGAN:
    """The SimGAN trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = simgan_task.simgan_run(out_dir, FRAMEWORK)
    model = SimGAN(
        lr=config["lr"],
        beta1=config["beta1"],
        self_regularisation=config["self_regularisation"],
        filters=config["filters"],
        blocks=config["blocks"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    synthetic: np.ndarray, real: np.ndarray, **settings: Unpack[simgan_task.SimganSettings]
) -> tuple[SimGAN, dict]:
    """Train SimGAN on unpaired synthetic and real digits in [0, 1] through the one loop; returns
    ``(model, history)``. Settings, defaults and behaviour: :class:`companion.training.simgan_task.SimganConfig`;
    the history holds per-epoch means of ``r_adv``, ``r_reg`` and ``d_loss`` and timings."""
    s = simgan_task.simgan_settings(settings)
    x, y = simgan_task.check_domains(synthetic, real)
    model = s.gan or SimGAN(
        lr=s.lr, beta1=s.beta1, self_regularisation=s.self_regularisation, device=s.device, seed=s.seed
    )
    tasks.check_given_model(model, s, simgan_task.GIVEN_MODEL_KEYS, "simgan.train")
    architecture = {"filters": model.filters, "blocks": model.blocks}
    history = simgan_task.fit_simgan(
        model.trainer(), x[..., None], y[..., None], s, architecture, to_host=lambda t: t.numpy()
    )
    return model, history
