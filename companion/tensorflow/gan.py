"""The GAN chapters, in TensorFlow / Keras 3: an MLP GAN for MNIST and a 1-d toy GAN.

``companion.torch.gan`` mirrors this module name for name with the same hyperparameters.

The MNIST recipe: noise 128 -> 256 -> 784 pixels (sigmoid, in [0, 1]) for the generator,
784 -> 256 -> 1 logit for the discriminator, Adam (lr 2e-4, beta_1 0.5), batches of 100.
Losses are computed from logits (``sigmoid_cross_entropy_with_logits``), never as ``log(sigmoid)``,
so a confident discriminator gives a large finite loss instead of ``log(0) = -inf``. The losses and
steps also take ``from_logits=False``, for a discriminator that ends in a sigmoid: Keras' binary
cross-entropy on probabilities, the form of the blog posts this course grew from (Keras finds the
logit behind a sigmoid's output and uses it; ``companion.tensorflow.blog_gans`` shows both cases).

Freezing, the ``GradientTape`` way: each step differentiates its loss with respect to one
network's ``trainable_variables`` only and applies those gradients with that network's own
optimiser, so the other network cannot move. The old Keras idiom (a combined model compiled
after ``discriminator.trainable = False``) is here too, as :func:`train_gan_keras_idiom`, because
Keras 3 reads ``trainable`` at a different moment than the Keras 2 code it comes from assumed
(the chapter "Training GANs on MNIST" measures what happens). PyTorch has no such idiom;
``companion.torch.blog_gans.conv_gan_round`` writes the same round as an explicit loop.
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.settings import quiet_native_stderr
from companion.tensorflow import runtime
from companion.tensorflow.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.tensorflow.training import HARMLESS_NATIVE_LOGS as _NATIVE_LOGS
from companion.theory import toy
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


def _hidden_activation(activation: str) -> keras.layers.Layer:
    return keras.layers.LeakyReLU(LEAKY_SLOPE) if activation == "leaky_relu" else keras.layers.ReLU()


def _dense(
    units: int, name: str, init_std: float | None, activation: str | None = None
) -> keras.layers.Dense:
    """Dense with Keras' default start (Glorot-uniform kernel, zero bias) or, with ``init_std``,
    a kernel drawn from N(0, init_std^2) and a zero bias."""
    if init_std is None:
        return keras.layers.Dense(units, activation=activation, name=name)
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.RandomNormal(stddev=float(init_std)),
        bias_initializer="zeros",
        name=name,
    )


def build_generator(
    noise_dim: int = NOISE_DIM,
    hidden: int = HIDDEN,
    activation: str = "leaky_relu",
    init_std: float | None = None,
) -> keras.Model:
    """The MNIST generator: noise (N, noise_dim) -> Dense(hidden) -> LeakyReLU(0.2) -> Dense(784) -> sigmoid.

    ``activation="relu"`` puts plain ReLU in the hidden layer; ``init_std`` draws every kernel from
    N(0, init_std^2) with zero biases instead of Glorot-uniform (the blog posts this course grew from:
    ReLU and 0.01).
    """
    tasks.check_gan_architecture(activation, init_std)
    check_positive("noise_dim", noise_dim, integer=True)
    check_positive("hidden", hidden, integer=True)
    return keras.Sequential(
        [
            keras.Input(shape=(noise_dim,)),
            _dense(hidden, "hidden", init_std),
            _hidden_activation(activation),
            _dense(IMAGE_DIM, "pixels", init_std, activation="sigmoid"),
        ],
        name="generator",
    )


def build_discriminator(
    hidden: int = HIDDEN, activation: str = "leaky_relu", init_std: float | None = None
) -> keras.Model:
    """The MNIST discriminator: flat images (N, 784) -> Dense(hidden) -> LeakyReLU(0.2) -> one logit (N, 1).

    ``activation`` and ``init_std`` as in :func:`build_generator`.
    """
    tasks.check_gan_architecture(activation, init_std)
    check_positive("hidden", hidden, integer=True)
    return keras.Sequential(
        [
            keras.Input(shape=(IMAGE_DIM,)),
            _dense(hidden, "hidden", init_std),
            _hidden_activation(activation),
            _dense(1, "logit", init_std),
        ],
        name="discriminator",
    )


def _adam(learning_rate: float, model: keras.Model, beta1: float = BETA_1) -> keras.optimizers.Adam:
    return make_adam(model, learning_rate, beta_1=beta1, epsilon=EPSILON)


def make_optimizers(
    generator: keras.Model,
    discriminator: keras.Model,
    learning_rate: float = LEARNING_RATE,
    d_learning_rate: float | None = None,
    beta1: float = BETA_1,
) -> tuple[keras.optimizers.Adam, keras.optimizers.Adam]:
    """One Adam per network, ``(g_optimizer, d_optimizer)``: each only ever updates its own variables.

    ``d_learning_rate`` (default: ``learning_rate``) lets the discriminator learn at another pace;
    ``beta1`` is Adam's first-moment decay for both (the book's 0.5; Adam's default and the blog
    posts' value is 0.9).
    """
    d_learning_rate = learning_rate if d_learning_rate is None else d_learning_rate
    check_positive("learning_rate", learning_rate)
    check_positive("d_learning_rate", d_learning_rate)
    tasks.check_beta1(beta1)
    return _adam(learning_rate, generator, beta1), _adam(d_learning_rate, discriminator, beta1)


# --------------------------------------------------------------------------- losses


def _bce(outputs: tf.Tensor, label: float, from_logits: bool = True) -> tf.Tensor:
    labels = tf.fill(tf.shape(outputs), label)
    if from_logits:
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, outputs))
    # Keras uses the logit behind a sigmoid's output if it finds one; it clips other probabilities to
    # [1e-7, 1 - 1e-7], and no gradient flows from a clipped one
    return tf.reduce_mean(keras.losses.binary_crossentropy(labels, outputs))


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor, from_logits: bool = True) -> tf.Tensor:
    """``BCE(real, 1) + BCE(fake, 0)`` from logits, each a batch mean: ``-V(D, G)`` on this batch.

    D minimises it, i.e. ascends ``V = E[log D(x)] + E[log(1 - D(G(z)))]``; log 4 when D says 0.5 everywhere.
    ``from_logits=False``: D's outputs are probabilities (Keras' binary cross-entropy: from the logit
    when they come straight from a sigmoid, else clipped to [1e-7, 1 - 1e-7]).
    """
    return _bce(real_logits, 1.0, from_logits) + _bce(fake_logits, 0.0, from_logits)


def generator_loss(
    fake_logits: tf.Tensor, variant: str = "non_saturating", from_logits: bool = True
) -> tf.Tensor:
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


@tf.function
def discriminator_step(
    generator: keras.Model,
    discriminator: keras.Model,
    d_optimizer: keras.optimizers.Optimizer,
    real: tf.Tensor,
    noise: tf.Tensor,
    from_logits: bool = True,
) -> dict[str, tf.Tensor]:
    """One update of D with G frozen; returns ``d_loss``, ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z))."""
    fake = generator(noise, training=True)  # outside the tape: no gradient can reach G
    with tf.GradientTape() as tape:
        real_out = discriminator(real, training=True)
        fake_out = discriminator(fake, training=True)
        loss = discriminator_loss(real_out, fake_out, from_logits)
    grads = tape.gradient(loss, discriminator.trainable_variables)
    d_optimizer.apply_gradients(zip(grads, discriminator.trainable_variables, strict=True))
    probability = tf.sigmoid if from_logits else tf.identity
    return {
        "d_loss": loss,
        "d_real": tf.reduce_mean(probability(real_out)),
        "d_fake": tf.reduce_mean(probability(fake_out)),
    }


@tf.function
def generator_step(
    generator: keras.Model,
    discriminator: keras.Model,
    g_optimizer: keras.optimizers.Optimizer,
    noise: tf.Tensor,
    variant: str = "non_saturating",
    from_logits: bool = True,
) -> dict[str, tf.Tensor]:
    """One update of G with D frozen: the gradient is taken with respect to G's variables only."""
    with tf.GradientTape() as tape:
        fake_out = discriminator(generator(noise, training=True), training=True)
        loss = generator_loss(fake_out, variant, from_logits)
    grads = tape.gradient(loss, generator.trainable_variables)
    g_optimizer.apply_gradients(zip(grads, generator.trainable_variables, strict=True))
    return {"g_loss": loss}


def train_step(
    generator: keras.Model,
    discriminator: keras.Model,
    g_optimizer: keras.optimizers.Optimizer,
    d_optimizer: keras.optimizers.Optimizer,
    real: tf.Tensor,
    d_noise: tf.Tensor,
    g_noise: tf.Tensor,
    variant: str = "non_saturating",
    from_logits: bool = True,
) -> dict[str, tf.Tensor]:
    """One round of the game: a D step on ``real`` and ``G(d_noise)``, then a G step on ``G(g_noise)``.

    Returns 0-d tensors ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` (D's mean outputs during its step).
    """
    metrics = dict(discriminator_step(generator, discriminator, d_optimizer, real, d_noise, from_logits))
    metrics.update(generator_step(generator, discriminator, g_optimizer, g_noise, variant, from_logits))
    return metrics


# --------------------------------------------------------------------------- training through the one loop


def generate(generator: keras.Model, noise: np.ndarray) -> np.ndarray:
    """Generator outputs for NumPy noise (N, noise_dim), in inference mode, as flat images (N, 784) in [0, 1]."""
    images = generator(tf.convert_to_tensor(noise, tf.float32), training=False).numpy()
    return images.reshape(len(images), -1)


def discriminate(discriminator: keras.Model, x: np.ndarray, from_logits: bool = True) -> np.ndarray:
    """D(x) = sigmoid(logit) for a NumPy batch (images in D's input layout, or toy points (N, 1)),
    in inference mode; returns (N,). ``from_logits=False``: D already outputs probabilities."""
    outputs = discriminator(tf.convert_to_tensor(x, tf.float32), training=False)
    return (tf.sigmoid(outputs) if from_logits else outputs).numpy().reshape(-1)


def gan_step(
    generator,
    discriminator,
    g_optimizer,
    d_optimizer,
    variant: str = "non_saturating",
    from_logits: bool = True,
):
    """:func:`train_step` on a batch from the loop (``real``, ``d_noise``, ``g_noise``)."""

    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
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
    with tf.device(runtime.device(s.device)):
        generator = s.generator or build_generator(s.noise_dim)
        discriminator = s.discriminator or build_discriminator()
        g_opt, d_opt = make_optimizers(generator, discriminator, s.learning_rate, s.d_learning_rate, s.beta1)
    trainer = Trainer(
        gan_step(generator, discriminator, g_opt, d_opt, s.variant, s.from_logits),
        models={"generator": generator, "discriminator": discriminator},
        optimizers={"generator": g_opt, "discriminator": d_opt},
        device=s.device,
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


# --------------------------------------------------------------------------- the old Keras idiom


def keras_combined_model(
    generator: keras.Model,
    discriminator: keras.Model,
    learning_rate: float = LEARNING_RATE,
    beta1: float = BETA_1,
    from_logits: bool = True,
) -> keras.Model:
    """The Keras 2 blog recipe, line for line: compile D, set ``D.trainable = False``, compile ``D(G(z))``.

    Keras 2 fixed a model's trainable weights when it was *compiled*, so D kept learning through
    its own ``train_on_batch`` while the combined model left it alone. Keras 3 reads ``trainable``
    when a model's train function is first traced (its first ``train_on_batch``) and keeps that
    choice until the next ``compile``; "Training GANs on MNIST" measures what this recipe then does.
    Both models use Adam (``learning_rate``, ``beta1``) and binary cross-entropy, on logits or, with
    ``from_logits=False``, on the probabilities of a D that ends in a sigmoid.
    TensorFlow only: PyTorch freezes with ``detach()`` and one optimiser per network instead.
    """
    check_positive("learning_rate", learning_rate)
    tasks.check_beta1(beta1)
    loss = keras.losses.BinaryCrossentropy(from_logits=from_logits)
    discriminator.compile(
        optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta1, epsilon=EPSILON), loss=loss
    )
    discriminator.trainable = False
    noise = keras.Input(shape=generator.input_shape[1:])
    combined = keras.Model(noise, discriminator(generator(noise)), name="combined")
    combined.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1=beta1, epsilon=EPSILON), loss=loss)
    return combined


def keras_idiom_step(
    generator: keras.Model,
    discriminator: keras.Model,
    combined: keras.Model,
    real: np.ndarray,
    d_noise: np.ndarray,
    g_noise: np.ndarray,
    toggle: bool = False,
) -> dict[str, float]:
    """One round as the blog code wrote it: ``train_on_batch`` on real (label 1), on fakes (label 0),
    then on the combined model with fakes labelled 1 (the non-saturating generator loss).

    ``toggle=True`` adds the common patch of setting ``discriminator.trainable`` to True before
    D's calls and to False before the combined call.
    """
    n = len(real)
    with quiet_native_stderr(_NATIVE_LOGS):  # logged when a conv D's train function is traced
        fake = generator.predict_on_batch(d_noise)
        if toggle:
            discriminator.trainable = True
        d_real = discriminator.train_on_batch(real, np.ones((n, 1), np.float32))
        d_fake = discriminator.train_on_batch(fake, np.zeros((n, 1), np.float32))
        if toggle:
            discriminator.trainable = False
        g_loss = combined.train_on_batch(g_noise, np.ones((n, 1), np.float32))
    return {"d_loss": float(d_real) + float(d_fake), "g_loss": float(g_loss)}


class _KerasIdiomTrainer:
    """The loop's trainer for the Keras idiom: the step runs ``train_on_batch`` on NumPy batches."""

    framework = FRAMEWORK

    def __init__(self, generator, discriminator, combined, toggle: bool) -> None:
        self.device = runtime.device()
        self.generator, self.discriminator, self.combined, self.toggle = (
            generator,
            discriminator,
            combined,
            toggle,
        )
        self.arrays: dict[str, np.ndarray] = {}

    def upload(self, arrays) -> None:
        self.arrays = dict(arrays)

    def step(self, index: np.ndarray, inputs) -> dict[str, float]:
        real = self.arrays["real"][index]
        return keras_idiom_step(
            self.generator,
            self.discriminator,
            self.combined,
            real,
            inputs["d_noise"],
            inputs["g_noise"],
            self.toggle,
        )

    def to_floats(self, values) -> dict[str, float]:
        return {name: float(value) for name, value in values.items()}

    def save_state(self, folder) -> None:
        raise NotImplementedError("the Keras idiom is a demonstration; it keeps no checkpoints")

    load_state = save_state


def train_gan_keras_idiom(
    images: np.ndarray,
    *,
    epochs: int,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    beta1: float = BETA_1,
    from_logits: bool = True,
    noise_dim: int = NOISE_DIM,
    noise_distribution: str = "normal",
    steps_per_epoch: int | None = None,
    seed: int = 0,
    fixed_noise: np.ndarray | None = None,
    toggle: bool = False,
    log_every: int = 1,
    generator: keras.Model | None = None,
    discriminator: keras.Model | None = None,
) -> GanRun:
    """Train with :func:`keras_combined_model` and ``train_on_batch`` through the one loop (same data
    order and noise as :func:`train_gan` for the same ``seed``). ``history`` holds per-epoch
    ``d_loss``, ``g_loss``, ``d_real``/``d_fake`` (D's mean outputs on a fixed probe batch after the
    epoch) and ``d_change``/``g_change``: the largest absolute change of any D / G weight in the epoch.

    The MLP GAN by default; given ``generator`` and ``discriminator`` any pair whose D takes the
    generator's output (the images are reshaped to D's input). The other settings as in
    :class:`companion.training.tasks.GanConfig`.
    """
    s = tasks.GanConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        beta1=beta1,
        from_logits=from_logits,
        noise_dim=noise_dim,
        noise_distribution=noise_distribution,
        steps_per_epoch=steps_per_epoch,
        seed=seed,
        fixed_noise=fixed_noise,
        log_every=log_every,
        discriminator=discriminator,
    )
    generator = generator or build_generator(noise_dim)
    discriminator = discriminator or build_discriminator()
    x = tasks.check_gan_images(images, batch_size).reshape(-1, *discriminator.input_shape[1:])
    combined = keras_combined_model(generator, discriminator, learning_rate, beta1, from_logits)
    probe_real = x[:batch_size]
    probe_noise = tasks.sample_latent(batch_size, noise_dim, seed=seed + 2, distribution=noise_distribution)

    def probe() -> dict[str, float]:
        fakes = generate(generator, probe_noise).reshape(probe_real.shape)
        return {
            "d_real": float(discriminate(discriminator, probe_real, from_logits).mean()),
            "d_fake": float(discriminate(discriminator, fakes, from_logits).mean()),
        }

    history, samples = tasks.train_gan(
        _KerasIdiomTrainer(generator, discriminator, combined, toggle),
        lambda noise: generate(generator, noise),
        x,
        s,
        config={"model": f"{generator.name}-keras-idiom", "toggle": toggle},
        monitor=tasks.WeightChanges({"d": discriminator, "g": generator}, weight_snapshot, probe),
    )
    return tasks.gan_result(generator, discriminator, history, samples)


def weight_snapshot(model: keras.Model) -> list[np.ndarray]:
    """Copies of every weight of ``model`` (trainable or not), to compare before and after a step."""
    return [w.numpy().copy() for w in model.weights]


max_abs_change = tasks.max_abs_change


# --------------------------------------------------------------------------- the 1-d toy


def _numpy_step(generator, discriminator, g_opt, d_opt, variant: str):
    """:func:`train_step` for NumPy batches, returning float metrics (what ``toy.play_toy_game`` calls)."""

    def step(real: np.ndarray, d_noise: np.ndarray, g_noise: np.ndarray) -> dict[str, float]:
        real_t, d_noise_t, g_noise_t = (tf.convert_to_tensor(a) for a in (real, d_noise, g_noise))
        metrics = train_step(generator, discriminator, g_opt, d_opt, real_t, d_noise_t, g_noise_t, variant)
        return {name: float(value) for name, value in metrics.items()}

    return step


def build_toy_discriminator(hidden: int = TOY_HIDDEN) -> keras.Model:
    """Points (N, 1) -> logits (N, 1): 1 -> hidden -> hidden -> 1 with tanh, smooth enough to draw D(x)."""
    return keras.Sequential(
        [
            keras.Input(shape=(1,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(1),
        ],
        name="toy_discriminator",
    )


def build_toy_generator(scale: float = 1.0, shift: float = 0.0) -> keras.Model:
    """The affine generator ``G(z) = scale * z + shift`` as a 1 -> 1 Dense layer, (N, 1) -> (N, 1)."""
    return keras.Sequential(
        [
            keras.Input(shape=(1,)),
            keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.Constant(scale),
                bias_initializer=keras.initializers.Constant(shift),
            ),
        ],
        name="toy_generator",
    )


def toy_generator_params(generator: keras.Model) -> tuple[float, float]:
    """``(scale, shift)`` of the affine toy generator."""
    kernel, bias = generator.layers[-1].get_weights()
    return float(kernel.reshape(())), float(bias.reshape(()))


def train_toy_discriminator(
    discriminator: keras.Model,
    generator: keras.Model,
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
    optimizer = _adam(learning_rate, discriminator)
    rng, losses = np.random.default_rng(seed), []
    for step in range(steps):
        if step == int(0.6 * steps):
            optimizer.learning_rate = learning_rate / 10  # a variable: no retracing
        with tf.device(runtime.device(device)):
            real = tf.convert_to_tensor(toy.sample_data(batch_size, rng))
            noise = tf.convert_to_tensor(toy.sample_noise(batch_size, rng))
            metrics = discriminator_step(generator, discriminator, optimizer, real, noise)
        losses.append(float(metrics["d_loss"]))
        if not np.isfinite(losses[-1]):
            raise TrainingFailed(f"the toy discriminator diverged at step {step}; lower the learning rate")
    return losses


def train_toy_gan(
    discriminator: keras.Model,
    generator: keras.Model,
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
    g_opt, d_opt = _adam(learning_rate, generator), _adam(learning_rate, discriminator)
    with tf.device(runtime.device(device)):
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
