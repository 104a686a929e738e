"""CycleGAN (Zhu et al., 2017) on 28x28 digits in Keras 3: two ResNet translators, two PatchGANs.

Translator (one per direction), images ``(N, 28, 28, 1)`` in [-1, 1] -> ``(N, 28, 28, 1)`` in [-1, 1]:
``head`` Conv 7x7 (F) -> IN -> ReLU, 28x28; ``down`` Conv 4x4 stride 2 (2F) -> IN -> ReLU, 14x14;
``residual_blocks`` blocks ``res{i}_a`` Conv 3x3 -> IN -> ReLU -> ``res{i}_b`` Conv 3x3 -> IN, added
back; ``up`` ConvT 4x4 stride 2 (F) -> IN -> ReLU, 28x28; ``to_image`` Conv 7x7 (1) -> tanh. The
paper's shape (c7s1, downsampling, residual blocks, upsampling, c7s1) with one stride-2 step
instead of two, since a digit is only 28 pixels wide. The residual blocks start as the identity
plus a small change, which suits a translation that keeps most of the image.

Discriminator (PatchGAN on one image): ``patch1`` Conv 4x4 stride 2 (F) -> LeakyReLU 0.2 ->
``patch2`` Conv 4x4 stride 2 (2F) -> IN -> LeakyReLU -> ``patch_logits`` Conv 3x3 (1): a 7x7 grid of
scores, each judging an 18x18 patch through the convolutions (:data:`PATCH_RECEPTIVE_FIELD`; instance
norm adds the mean and spread of the whole image's features), as the pix2pix section's PatchGAN but
without an input image beside it (there is no paired input).

IN is instance normalisation without learned scale and offset, the paper's choice: every image is
normalised on its own, so training and inference compute the same thing and batch statistics
never mix the two domains. Here it is ``GroupNormalization`` with one group per channel and no
weights; PyTorch's ``InstanceNorm2d(affine=False)`` is the same function, with the same epsilon.
Convolutions followed by IN carry no bias (IN subtracts it again).

``companion.torch.cyclegan`` builds the same networks with the same layer names, so
``companion.bridge`` copies weights both ways; settings, checks, the unpaired batches and the run
folder are shared in :mod:`companion.training.cyclegan_task`.
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
from companion.training import cyclegan_task, tasks
from companion.training.guards import TrainingFailed as TrainingFailed  # re-exported for users of this module
from companion.training.run_folder import RunFolderError as RunFolderError

CYCLE_WEIGHT = cyclegan_task.CYCLE_WEIGHT
IDENTITY_WEIGHT = cyclegan_task.IDENTITY_WEIGHT
GAN_LOSS = cyclegan_task.GAN_LOSS
FILTERS = cyclegan_task.FILTERS
RESIDUAL_BLOCKS = cyclegan_task.RESIDUAL_BLOCKS
IN_EPSILON = cyclegan_task.IN_EPSILON
LEAKY_SLOPE = cyclegan_task.LEAKY_SLOPE
ADAM_EPSILON = cyclegan_task.ADAM_EPSILON
PATCH_GRID = cyclegan_task.PATCH_GRID
PATCH_RECEPTIVE_FIELD = cyclegan_task.PATCH_RECEPTIVE_FIELD
_DOWN = {"kernel_size": 4, "strides": 2, "padding": "same"}


def _conv(filters: int, kernel_size: int, name: str, **kwargs) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel_size, padding="same", name=name, **kwargs)


def _instance_norm(h: keras.KerasTensor) -> keras.KerasTensor:
    """Each image and channel normalised over its pixels, no learned scale or offset."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=IN_EPSILON, center=False, scale=False)(h)


def _leaky(h: keras.KerasTensor) -> keras.KerasTensor:
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(h)


def build_translator(
    filters: int = FILTERS, residual_blocks: int = RESIDUAL_BLOCKS, seed: int | None = None
) -> keras.Model:
    """A translator: images ``(N, 28, 28, 1)`` in [-1, 1] -> ``(N, 28, 28, 1)`` in [-1, 1] (tanh).

    ``filters`` (F) sets the widths F at 28x28 and 2F at 14x14, where ``residual_blocks`` blocks
    work. ``seed`` makes the initial weights repeatable (it reseeds Keras first).
    """
    cyclegan_task.check_architecture(filters, residual_blocks)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    images = keras.Input(shape=(28, 28, 1))
    h = keras.layers.ReLU()(_instance_norm(_conv(f, 7, "head", use_bias=False)(images)))  # 28x28xF
    h = keras.layers.Conv2D(2 * f, use_bias=False, name="down", **_DOWN)(h)
    h = keras.layers.ReLU()(_instance_norm(h))  # 14x14x2F
    for i in range(1, int(residual_blocks) + 1):
        r = keras.layers.ReLU()(_instance_norm(_conv(2 * f, 3, f"res{i}_a", use_bias=False)(h)))
        r = _instance_norm(_conv(2 * f, 3, f"res{i}_b", use_bias=False)(r))
        h = keras.layers.Add()([h, r])
    h = keras.layers.Conv2DTranspose(f, use_bias=False, name="up", **_DOWN)(h)
    h = keras.layers.ReLU()(_instance_norm(h))  # 28x28xF
    outputs = _conv(1, 7, "to_image", activation="tanh")(h)  # 28x28x1
    return keras.Model(images, outputs, name="translator")


def build_domain_discriminator(filters: int = FILTERS, seed: int | None = None) -> keras.Model:
    """A PatchGAN: images ``(N, 28, 28, 1)`` in [-1, 1] -> scores ``(N, 7, 7, 1)``, one per 18x18 patch
    (plus the whole image's feature statistics, through instance norm); high means "this patch comes
    from a real image of my domain". Raw scores: squared against 1/0 by LSGAN, logits for "bce".

    ``seed`` makes the initial weights repeatable (it reseeds Keras first).
    """
    cyclegan_task.check_architecture(filters, 0)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    f = int(filters)
    images = keras.Input(shape=(28, 28, 1))
    h = _leaky(keras.layers.Conv2D(f, name="patch1", **_DOWN)(images))  # 14x14xF, no norm (as in the paper)
    h = keras.layers.Conv2D(2 * f, use_bias=False, name="patch2", **_DOWN)(h)
    h = _leaky(_instance_norm(h))  # 7x7x2F
    scores = _conv(1, 3, "patch_logits")(h)  # 7x7x1
    return keras.Model(images, scores, name="domain_discriminator")


def generator_adversarial_loss(fake_scores: tf.Tensor, gan_loss: str = GAN_LOSS) -> tf.Tensor:
    """One generator's adversarial loss from D's patch scores on its outputs, averaged over every patch:
    ``"lsgan"`` mean (D(G(x)) - 1)^2; ``"bce"`` the non-saturating cross-entropy against "real"."""
    if cyclegan_task.check_gan_loss(gan_loss) == "lsgan":
        return tf.reduce_mean(tf.square(fake_scores - 1.0))
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake_scores), logits=fake_scores)
    )


def discriminator_loss(real_scores: tf.Tensor, fake_scores: tf.Tensor, gan_loss: str = GAN_LOSS) -> tf.Tensor:
    """One discriminator's loss, real images -> 1 and translations -> 0, each averaged over every patch:
    ``"lsgan"`` mean (D(y) - 1)^2 + mean D(G(x))^2; ``"bce"`` the binary cross-entropy of the scores
    as logits. (The paper halves it; Adam's steps do not depend on such a scale, so it is left whole.)"""
    if cyclegan_task.check_gan_loss(gan_loss) == "lsgan":
        return tf.reduce_mean(tf.square(real_scores - 1.0)) + tf.reduce_mean(tf.square(fake_scores))
    real = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(real_scores), logits=real_scores)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake_scores), logits=fake_scores)
    return tf.reduce_mean(real) + tf.reduce_mean(fake)


def translate(generator: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The translator's outputs for ``images`` (digits ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1]),
    as ``(N, 28, 28)`` in [0, 1]."""
    x = tasks.to_data_range(as_digits(images, "images"), "tanh")[..., None]
    parts = [generator(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return tasks.to_unit_range(np.concatenate(parts)[..., 0], "tanh")


class CycleGAN:
    """The translators ``g_ab`` (A -> B) and ``g_ba`` (B -> A), the discriminators ``d_a`` and ``d_b``,
    one Adam optimiser each, and the train step.

    ``cycle_weight`` and ``identity_weight`` weigh the cycle-consistency and identity L1 terms (0
    turns a term off); ``gan_loss`` is ``"lsgan"`` (the paper's) or ``"bce"``. ``filters`` and
    ``residual_blocks`` choose the networks; ``seed`` makes the initial weights repeatable (``None``
    leaves Keras' global random state alone). ``device``: see :func:`companion.tensorflow.runtime.device`.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        cycle_weight: float = CYCLE_WEIGHT,
        identity_weight: float = IDENTITY_WEIGHT,
        gan_loss: str = GAN_LOSS,
        filters: int = FILTERS,
        residual_blocks: int = RESIDUAL_BLOCKS,
        device: str | None = None,
        seed: int | None = None,
    ) -> None:
        s = cyclegan_task.CycleGanConfig(
            lr=lr, beta1=beta1, cycle_weight=cycle_weight, identity_weight=identity_weight, gan_loss=gan_loss
        )
        cyclegan_task.check_architecture(filters, residual_blocks)
        self.lr, self.beta1 = float(lr), float(beta1)
        self.cycle_weight, self.identity_weight = float(s.cycle_weight), float(s.identity_weight)
        self.gan_loss = s.gan_loss
        self.filters, self.residual_blocks = int(filters), int(residual_blocks)
        self.metrics = cyclegan_task.metric_names(self.cycle_weight, self.identity_weight)
        self.device = runtime.device(device)
        seeds = [None if seed is None else seed + i for i in range(4)]
        with tf.device(self.device):
            self.g_ab = build_translator(filters, residual_blocks, seed=seeds[0])
            self.g_ba = build_translator(filters, residual_blocks, seed=seeds[1])
            self.d_a = build_domain_discriminator(filters, seed=seeds[2])
            self.d_b = build_domain_discriminator(filters, seed=seeds[3])
            # Optimiser slots exist from the start, so a checkpoint restores into them directly.
            self.optimizers = {
                name: make_adam(getattr(self, name), lr, beta_1=beta1, epsilon=ADAM_EPSILON)
                for name in cyclegan_task.NETWORKS
            }
        self._compiled = tf.function(self._train_step)

    def _losses(self, a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """``(generators' total loss, discriminators' total loss, metrics)`` of one forward pass."""
        fake_b, fake_a = self.g_ab(a, training=True), self.g_ba(b, training=True)
        fake_b_scores, fake_a_scores = self.d_b(fake_b, training=True), self.d_a(fake_a, training=True)
        terms = {
            "g_adv": generator_adversarial_loss(fake_b_scores, self.gan_loss)
            + generator_adversarial_loss(fake_a_scores, self.gan_loss)
        }
        g_total = terms["g_adv"]
        if self.cycle_weight > 0:  # there and back again: A -> B -> A and B -> A -> B
            back_a, back_b = self.g_ba(fake_b, training=True), self.g_ab(fake_a, training=True)
            terms["cycle"] = tf.reduce_mean(tf.abs(back_a - a)) + tf.reduce_mean(tf.abs(back_b - b))
            g_total += self.cycle_weight * terms["cycle"]
        if self.identity_weight > 0:  # an image already in the target domain should pass unchanged
            same_b, same_a = self.g_ab(b, training=True), self.g_ba(a, training=True)
            terms["identity"] = tf.reduce_mean(tf.abs(same_b - b)) + tf.reduce_mean(tf.abs(same_a - a))
            g_total += self.identity_weight * terms["identity"]
        terms["d_a"] = discriminator_loss(self.d_a(a, training=True), fake_a_scores, self.gan_loss)
        terms["d_b"] = discriminator_loss(self.d_b(b, training=True), fake_b_scores, self.gan_loss)
        return g_total, terms["d_a"] + terms["d_b"], terms

    def train_step(self, images_a: tf.Tensor, images_b: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update (compiled) of all four networks from a batch of each domain, ``(B, 28, 28, 1)`` in
        [-1, 1] (unpaired: any two batches); returns the step's :data:`metrics`."""
        with tf.device(self.device), quiet_native_stderr(training.HARMLESS_NATIVE_LOGS):
            return self._compiled(images_a, images_b)

    def _train_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        """Both generators and both discriminators step from one forward pass (D's scores before its
        update), as the pix2pix step; the paper updates G first and D after, on the same fakes."""
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            g_total, d_total, terms = self._losses(a, b)
        for tape, loss, names in ((g_tape, g_total, ("g_ab", "g_ba")), (d_tape, d_total, ("d_a", "d_b"))):
            variables = [getattr(self, name).trainable_variables for name in names]
            grads = tape.gradient(loss, variables)
            for name, v, g in zip(names, variables, grads, strict=True):
                self.optimizers[name].apply_gradients(zip(g, v, strict=True))
        return terms

    def losses(self, images_a: np.ndarray, images_b: np.ndarray) -> dict[str, float]:
        """The step's :data:`metrics` on digits in [0, 1] (``(N, 28, 28)`` or ``(N, 28, 28, 1)``, one
        batch of each domain, any sizes), without updating anything."""
        a, b = (
            tasks.to_data_range(as_digits(x, name), "tanh")[..., None]
            for x, name in ((images_a, "images_a"), (images_b, "images_b"))
        )
        with tf.device(self.device):
            _, _, terms = self._losses(tf.constant(a), tf.constant(b))
        return {name: float(value) for name, value in terms.items()}

    def trainer(self) -> Trainer:
        """The one loop's trainer around the step."""
        return Trainer(
            lambda batch: self._train_step(batch["images_a"], batch["images_b"]),
            models={name: getattr(self, name) for name in cyclegan_task.NETWORKS},
            optimizers=self.optimizers,
            device=self.device,
        )

    def a_to_b(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with ``g_ab``: domain-A digits in [0, 1] -> ``(N, 28, 28)`` in [0, 1]."""
        with tf.device(self.device):
            return translate(self.g_ab, images, batch_size)

    def b_to_a(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """:func:`translate` with ``g_ba``: domain-B digits in [0, 1] -> ``(N, 28, 28)`` in [0, 1]."""
        with tf.device(self.device):
            return translate(self.g_ba, images, batch_size)


def load(out_dir: str | os.PathLike, device: str | None = None) -> CycleGAN:
    """The CycleGAN trained into ``out_dir`` by :func:`train` (latest checkpoint)."""
    config, folder = cyclegan_task.cyclegan_run(out_dir, FRAMEWORK)
    model = CycleGAN(
        lr=config["lr"],
        beta1=config["beta1"],
        cycle_weight=config["cycle_weight"],
        identity_weight=config["identity_weight"],
        gan_loss=config["gan_loss"],
        filters=config["filters"],
        residual_blocks=config["residual_blocks"],
        device=device,
    )
    model.trainer().load_state(folder, random_state=False)
    return model


def train(
    domain_a: np.ndarray, domain_b: np.ndarray, **settings: Unpack[cyclegan_task.CycleGanSettings]
) -> tuple[CycleGAN, dict]:
    """Train a CycleGAN on two unpaired sets of digits in [0, 1] (``(N, 28, 28)`` or ``(N, 28, 28, 1)``,
    sizes may differ) through the one loop; returns ``(model, history)``. Settings, defaults and the
    batches: :class:`companion.training.cyclegan_task.CycleGanConfig`; the history holds per-epoch
    means of the step metrics (:func:`companion.training.cyclegan_task.metric_names`) and timings."""
    s = cyclegan_task.cyclegan_settings(settings)
    a, b = cyclegan_task.check_domains(domain_a, domain_b, s.batch_size)
    model = s.gan or CycleGAN(
        lr=s.lr,
        beta1=s.beta1,
        cycle_weight=s.cycle_weight,
        identity_weight=s.identity_weight,
        gan_loss=s.gan_loss,
        device=s.device,
        seed=s.seed,
    )
    tasks.check_given_model(model, s, cyclegan_task.GIVEN_MODEL_KEYS, "cyclegan.train")
    architecture = {"filters": model.filters, "residual_blocks": model.residual_blocks}
    history = cyclegan_task.fit_cyclegan(model.trainer(), a[..., None], b[..., None], s, architecture)
    return model, history
