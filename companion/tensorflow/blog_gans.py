"""The blog posts' other two GANs, in TensorFlow / Keras 3 ("Training GANs on MNIST").

``companion.torch.blog_gans`` mirrors this module name for name with the same settings.

**A convolutional GAN trained the Keras 2 way.** D is compiled, a combined model ``D(G(z))`` is
compiled after ``D.trainable = False``, and every round calls ``train_on_batch`` on D (real
images, then fakes) and on the combined model, with ``trainable`` toggled around the calls
(:func:`companion.tensorflow.gan.keras_idiom_step` with ``toggle=True``).

- The blog posts' facts: D has three convolutions of 64, 256 and 256 filters with stride 2 and
  dropout 0.4; G projects the noise to 7x7x64, upsamples and narrows to 16 filters, then to one
  channel; batch norm with momentum 0.9; Adam with learning rate 4e-4; 32-d uniform noise;
  batches of 128; ``EPOCHS = 2000``, which counts single batches, not passes over the data.
- Ours, the usual choices of Keras GAN code of the time where the posts' facts stop: 5x5 kernels,
  LeakyReLU(0.2) in D and ReLU in G, batch norm before the activation, ``UpSampling2D`` followed by
  a stride-1 ``Conv2DTranspose`` (64 -> 32 -> 16 -> 1 channels), a sigmoid output with data in
  [0, 1], D ending in a sigmoid with Keras' binary cross-entropy on its probability, noise from
  U(-1, 1), Adam's ``beta_1`` = 0.5 and Keras' default initialisation.

**The fully connected GAN of the posts' PyTorch code, and its Keras twin.** D ends in a sigmoid
and the losses are binary cross-entropy on its probability (Keras: ``BinaryCrossentropy()``; PyTorch:
``BCELoss``), at learning rate 1e-4. The networks are the chapter's MLP GAN, with a sigmoid after
D's logit; :func:`generator_feedback` shows what the probability form gives back to the generator.
Keras 3 quietly repairs this form: when a probability comes straight from a sigmoid, its binary
cross-entropy finds the logit behind it and computes the logit form, so the Keras twin trains exactly
as the logit GAN does. PyTorch's ``BCELoss`` has no such repair.
"""

from __future__ import annotations

from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.tensorflow import gan, runtime
from companion.training import tasks
from companion.validation import InputError, check_positive

# the blog posts' facts
CONV_FILTERS = (64, 256, 256)
CONV_DROPOUT = 0.4
CONV_NOISE_DIM = 32
CONV_BATCH_SIZE = 128
CONV_LEARNING_RATE = 4e-4
CONV_STEPS = 2000  # the posts' "EPOCHS = 2000": single batches
BN_MOMENTUM = 0.9  # Keras: the weight of the old moving statistics
PROBABILITY_LEARNING_RATE = 1e-4  # the posts' PyTorch FC GAN
# ours: the usual choices of Keras GAN code of the time
KERNEL = 5
LEAKY_SLOPE = 0.2
GENERATOR_CHANNELS = (64, 32, 16)  # 7x7x64, then 14x14x32 and 28x28x16 after each upsampling
CONV_BETA_1 = 0.5
BN_EPSILON = 1e-3  # Keras' default
FEEDBACK_FORMS = ("logits", "sigmoid", "probability")  # what D's last output is: see generator_feedback
GanRun = tasks.GanRun


# --------------------------------------------------------------------------- the convolutional GAN


def build_conv_generator(noise_dim: int = CONV_NOISE_DIM) -> keras.Model:
    """Uniform noise (N, noise_dim) -> images (N, 28, 28, 1) in [0, 1]: Dense to 7x7x64, then twice
    ``UpSampling2D`` + 5x5 ``Conv2DTranspose`` (32, then 16 channels), each with batch norm and ReLU,
    and a 5x5 ``Conv2DTranspose`` to one channel with a sigmoid."""
    check_positive("noise_dim", noise_dim, integer=True)
    first, *narrower = GENERATOR_CHANNELS

    def norm(name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)

    layers: list[keras.layers.Layer] = [
        keras.Input(shape=(noise_dim,)),
        keras.layers.Dense(7 * 7 * first, name="project"),
        norm("bn0"),
        keras.layers.ReLU(),
        keras.layers.Reshape((7, 7, first)),
    ]
    for i, channels in enumerate(narrower, start=1):
        layers += [
            keras.layers.UpSampling2D(),
            keras.layers.Conv2DTranspose(channels, KERNEL, padding="same", name=f"deconv{i}"),
            norm(f"bn{i}"),
            keras.layers.ReLU(),
        ]
    layers.append(
        keras.layers.Conv2DTranspose(1, KERNEL, padding="same", activation="sigmoid", name="pixels")
    )
    return keras.Sequential(layers, name="conv_generator")


def build_conv_discriminator(dropout: float = CONV_DROPOUT) -> keras.Model:
    """Images (N, 28, 28, 1) in [0, 1] -> D(x), a probability (N, 1): three 5x5 stride-2 convolutions
    (64, 256, 256 filters; 28 -> 14 -> 7 -> 4), each with LeakyReLU(0.2) and dropout, then Dense(1)
    with a sigmoid."""
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout must be a rate in [0, 1), got {dropout!r}")
    layers: list[keras.layers.Layer] = [keras.Input(shape=(28, 28, 1))]
    for i, filters in enumerate(CONV_FILTERS, start=1):
        layers += [
            keras.layers.Conv2D(filters, KERNEL, strides=2, padding="same", name=f"conv{i}"),
            keras.layers.LeakyReLU(LEAKY_SLOPE),
            keras.layers.Dropout(dropout),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid", name="probability")]
    return keras.Sequential(layers, name="conv_discriminator")


def conv_gan_round(
    generator: keras.Model,
    discriminator: keras.Model,
    combined: keras.Model,
    real: np.ndarray,
    d_noise: np.ndarray,
    g_noise: np.ndarray,
) -> dict[str, float]:
    """One round the blog posts' way: fakes from ``generator.predict_on_batch`` (batch norm on its
    moving statistics), ``train_on_batch`` on D for real images (label 1) and for the fakes (label 0)
    with ``D.trainable = True``, then on ``combined`` (from :func:`gan.keras_combined_model`) with
    the fakes labelled 1 and ``D.trainable = False``. Returns ``d_loss`` (both D calls) and ``g_loss``."""
    return gan.keras_idiom_step(generator, discriminator, combined, real, d_noise, g_noise, toggle=True)


def train_conv_gan(
    images: np.ndarray,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    batch_size: int = CONV_BATCH_SIZE,
    learning_rate: float = CONV_LEARNING_RATE,
    beta1: float = CONV_BETA_1,
    noise_dim: int = CONV_NOISE_DIM,
    seed: int = 0,
    fixed_noise: np.ndarray | None = None,
    log_every: int = 1,
    generator: keras.Model | None = None,
    discriminator: keras.Model | None = None,
    device: str | None = None,
) -> GanRun:
    """Train the convolutional GAN with :func:`conv_gan_round` through the one loop, on images in [0, 1]
    (flat (N, 784) or (N, 28, 28[, 1])).

    Each epoch draws a fresh shuffle and runs at most ``steps_per_epoch`` batches, so ``epochs *
    steps_per_epoch`` counts the posts' single-batch "epochs". ``history`` and ``samples`` as in
    :func:`gan.train_gan_keras_idiom` (samples flat, (n, 784)); noise from U(-1, 1).
    """
    with tf.device(runtime.device(device)):
        generator = generator or build_conv_generator(noise_dim)
        discriminator = discriminator or build_conv_discriminator()
        return gan.train_gan_keras_idiom(
            images,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            beta1=beta1,
            from_logits=False,
            noise_dim=noise_dim,
            noise_distribution="uniform",
            steps_per_epoch=steps_per_epoch,
            seed=seed,
            fixed_noise=fixed_noise,
            toggle=True,
            log_every=log_every,
            generator=generator,
            discriminator=discriminator,
        )


# --------------------------------------------------------------------------- sigmoid + BCE on probabilities


def build_probability_discriminator(
    hidden: int = gan.HIDDEN, activation: str = "leaky_relu", init_std: float | None = None
) -> keras.Model:
    """The chapter's MLP discriminator followed by a sigmoid: flat images (N, 784) -> D(x) (N, 1).
    Arguments as in :func:`gan.build_discriminator`; its weights are the inner model's."""
    return keras.Sequential(
        [
            keras.Input(shape=(gan.IMAGE_DIM,)),
            gan.build_discriminator(hidden, activation, init_std),
            keras.layers.Activation("sigmoid", name="probability"),
        ],
        name="probability_discriminator",
    )


def train_probability_gan(images: np.ndarray, **settings: Unpack[tasks.GanSettings]) -> GanRun:
    """:func:`gan.train_gan` the blog posts' PyTorch way: D ends in a sigmoid (default
    :func:`build_probability_discriminator`), the losses are binary cross-entropy on its probabilities,
    and the learning rate defaults to 1e-4. Other settings as in :class:`tasks.GanConfig`."""
    if settings.get("from_logits", False) is not False:
        raise InputError(
            "train_probability_gan trains on probabilities; use gan.train_gan for from_logits=True"
        )
    settings = {"learning_rate": PROBABILITY_LEARNING_RATE, **settings, "from_logits": False}
    if settings.get("discriminator") is None:
        with tf.device(runtime.device(settings.get("device"))):
            settings["discriminator"] = build_probability_discriminator()
    return gan.train_gan(images, **settings)


def generator_feedback(logits: np.ndarray, form: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """For each discriminator logit on a fake: the generator's non-saturating loss and its derivative
    with respect to the logit, as :func:`gan.generator_loss` computes them from D's last output.

    ``form``: ``"logits"``, the logit itself; ``"sigmoid"``, the probability of a Keras sigmoid activation
    (what a D ending in ``Dense(1, activation="sigmoid")`` outputs: Keras finds the logit behind it and
    uses the logit form); ``"probability"``, the same float32 probability without that link (computed
    elsewhere, or passed through any other op), which Keras clips to [1e-7, 1 - 1e-7].
    Returns two (N,) arrays.
    """
    values = _check_feedback(logits, form)
    losses, gradients = [], []
    for value in values:
        logit = tf.Variable([[value]])
        with tf.GradientTape() as tape:
            if form == "logits":
                output = logit
            elif form == "sigmoid":
                output = keras.activations.sigmoid(logit)  # caches the logit on its output
            else:
                output = tf.identity(tf.sigmoid(logit))  # no cached logit, and not a Sigmoid op
            loss = gan.generator_loss(output, "non_saturating", from_logits=form == "logits")
        losses.append(float(loss))
        gradients.append(float(tape.gradient(loss, logit)[0, 0]))
    return np.array(losses), np.array(gradients)


def _check_feedback(logits: np.ndarray, form: str) -> np.ndarray:
    if form not in FEEDBACK_FORMS:
        raise InputError(f"form must be one of {FEEDBACK_FORMS}, got {form!r}")
    values = np.asarray(logits, np.float32).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise InputError("logits must be a non-empty array of finite numbers")
    return values
