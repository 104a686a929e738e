"""The VAE chapter: variational autoencoders in Keras 3, dense and convolutional, plain or conditional.

A :class:`VAE` holds an ``encoder`` (images -> mean and log-variance of q(z | x)) and a ``decoder``
(codes z -> one logit per pixel). ``companion.torch.vae`` builds the same networks with the same
layer names, so ``companion.bridge`` copies weights both ways. With ``n_classes`` > 0 the model is
conditional: a one-hot label joins the encoder's features and the code z.

Images lie in [0, 1], flat ``(N, 784)`` for the dense model and channels last ``(N, 28, 28, 1)``
for the convolutional one (``model.example_shape``). The likelihood is a Bernoulli per pixel on
the decoder's logits and the prior N(0, I); every loss is in nats per image. The framework-neutral
numerics live in :mod:`companion.theory.vae`, the training set-up in :mod:`companion.training.vae_task`.
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.noise import sample_latent
from companion.tensorflow import runtime
from companion.tensorflow.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.theory import vae as theory
from companion.training import vae_task
from companion.validation import check_images

KINDS = vae_task.KINDS
LATENT_SIZE = vae_task.LATENT_SIZE
PIXELS = 784
HIDDEN = 512  # the dense model's hidden layer, in the encoder and in the decoder
CONV_FILTERS = (32, 64)  # 28x28 -> 14x14x32 -> 7x7x64, as in the TensorFlow CVAE tutorial
_CONV = {"kernel_size": 3, "strides": 2, "padding": "same"}


def _encoder(kind: str, latent_size: int, n_classes: int, example_shape: tuple[int, ...]) -> keras.Model:
    images = keras.Input(shape=example_shape)
    inputs = [images]
    if kind == "dense":
        h = keras.layers.Dense(HIDDEN, activation="relu", name="encode_hidden")(images)
    else:
        c1, c2 = CONV_FILTERS
        h = keras.layers.Conv2D(c1, activation="relu", name="conv_1", **_CONV)(images)
        h = keras.layers.Conv2D(c2, activation="relu", name="conv_2", **_CONV)(h)
        h = keras.layers.Flatten()(h)
    if n_classes:
        onehot = keras.Input(shape=(n_classes,))
        inputs.append(onehot)
        h = keras.layers.Concatenate()([h, onehot])
    mean = keras.layers.Dense(latent_size, name="mean")(h)
    log_var = keras.layers.Dense(latent_size, name="log_var")(h)
    return keras.Model(inputs if n_classes else images, [mean, log_var], name="encoder")


def _decoder(kind: str, latent_size: int, n_classes: int) -> keras.Model:
    z = keras.Input(shape=(latent_size,))
    inputs = [z]
    h = z
    if n_classes:
        onehot = keras.Input(shape=(n_classes,))
        inputs.append(onehot)
        h = keras.layers.Concatenate()([z, onehot])
    if kind == "dense":
        h = keras.layers.Dense(HIDDEN, activation="relu", name="decode_hidden")(h)
        logits = keras.layers.Dense(PIXELS, name="logits")(h)
    else:
        c1, c2 = CONV_FILTERS
        h = keras.layers.Dense(7 * 7 * c2, activation="relu", name="expand")(h)
        h = keras.layers.Reshape((7, 7, c2))(h)
        h = keras.layers.Conv2DTranspose(c1, activation="relu", name="deconv_1", **_CONV)(h)
        logits = keras.layers.Conv2DTranspose(1, name="logits", **_CONV)(h)
    return keras.Model(inputs if n_classes else z, logits, name="decoder")


class VAE(keras.Model):
    """A VAE of ``kind`` ``"dense"`` or ``"conv"`` with a ``latent_size``-d code; ``n_classes`` > 0
    makes it conditional. Weights start from Keras' defaults (Glorot-uniform kernels, zero biases)."""

    def __init__(self, kind: str = "dense", latent_size: int = LATENT_SIZE, n_classes: int = 0) -> None:
        vae_task.check_architecture(kind, latent_size, n_classes)
        super().__init__(name=f"{kind}_{'c' if n_classes else ''}vae")
        self.kind, self.latent_size, self.n_classes = kind, int(latent_size), int(n_classes)
        self.example_shape: tuple[int, ...] = (PIXELS,) if kind == "dense" else (28, 28, 1)
        self.encoder = _encoder(kind, self.latent_size, self.n_classes, self.example_shape)
        self.decoder = _decoder(kind, self.latent_size, self.n_classes)

    def gaussian_parameters(
        self, x: tf.Tensor, onehot: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(mean, log_var)`` of q(z | x) for a batch of images (tensors)."""
        mean, log_var = self.encoder(x if onehot is None else [x, onehot])
        return mean, log_var

    def logits(self, z: tf.Tensor, onehot: tf.Tensor | None = None) -> tf.Tensor:
        """The decoder's pixel logits for a batch of codes (tensors), in the image layout."""
        return self.decoder(z if onehot is None else [z, onehot])

    def call(self, x: tf.Tensor, onehot: tf.Tensor | None = None) -> tf.Tensor:
        """Logits of the reconstruction decoded from the posterior mean (Keras models need a ``call``)."""
        mean, _ = self.gaussian_parameters(x, onehot)
        return self.logits(mean, onehot)


def build_vae(kind: str = "dense", latent_size: int = LATENT_SIZE, n_classes: int = 0) -> VAE:
    """Dense: 784 -> 512 ReLU -> (mean, log_var); decoder z -> 512 ReLU -> 784 logits.
    Conv: two 3x3 stride-2 convolutions (32, 64 filters, ReLU) -> (mean, log_var); decoder z -> 7x7x64
    ReLU -> two 3x3 stride-2 transposed convolutions (32 ReLU, then 1 logit channel), ``"same"`` padding.
    ``n_classes=10`` makes a conditional VAE."""
    return VAE(kind, latent_size, n_classes)


def reparameterise(mean: tf.Tensor, log_var: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """z = mean + exp(log_var / 2) * eps: a sample of q(z | x) that gradients flow through to
    ``mean`` and ``log_var`` (the randomness sits in ``eps`` ~ N(0, I))."""
    return mean + tf.exp(0.5 * log_var) * tf.cast(eps, mean.dtype)


def loss_terms(
    model: VAE, x: tf.Tensor, eps: tf.Tensor, onehot: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image ``(reconstruction, kl)`` tensors (N,), in nats: the Bernoulli negative
    log-likelihood of ``x`` at z = mean + exp(log_var / 2) * eps, and KL(q(z | x) || N(0, I))."""
    x = tf.cast(x, tf.float32)
    mean, log_var = model.gaussian_parameters(x, onehot)
    reconstruction = -_log_likelihood(model, x, reparameterise(mean, log_var, eps), onehot)
    kl = 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=1)
    return reconstruction, kl


def _log_likelihood(model: VAE, x: tf.Tensor, z: tf.Tensor, onehot: tf.Tensor | None) -> tf.Tensor:
    """log p(x | z) per image: minus the binary cross-entropy of the decoder's logits, summed over pixels."""
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=model.logits(z, onehot))
    return -tf.reduce_sum(tf.reshape(per_pixel, (tf.shape(x)[0], -1)), axis=1)


def _onehot(model: VAE, labels: object, n: int) -> np.ndarray | None:
    return vae_task.one_hot(vae_task.expand_labels(labels, n, model.n_classes), model.n_classes)


def _images(model: VAE, x: np.ndarray) -> np.ndarray:
    return check_images(x, name="x", shape=model.example_shape)


def _batches(function, model: VAE, arrays: list[np.ndarray | None], batch_size: int) -> list:
    """``function`` applied to tensors of successive batches of ``arrays`` (``None`` stays ``None``)."""
    outputs = []
    for i in range(0, len(arrays[0]), batch_size):  # type: ignore[arg-type]
        outputs.append(function(*[None if a is None else tf.constant(a[i : i + batch_size]) for a in arrays]))
    return outputs


def _numpy(tensors: list[tf.Tensor]) -> np.ndarray:
    return np.concatenate([t.numpy() for t in tensors])


def encode(
    model: VAE, x: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, log_var)`` of q(z | x) as NumPy arrays ``(N, latent_size)`` for images in [0, 1]."""
    x = _images(model, x)
    parts = _batches(model.gaussian_parameters, model, [x, _onehot(model, labels, len(x))], batch_size)
    return _numpy([m for m, _ in parts]), _numpy([v for _, v in parts])


def decode(model: VAE, z: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 1000) -> np.ndarray:
    """Pixel probabilities (the sigmoid of the logits) in the model's layout for codes ``z`` (N, latent).

    ``labels`` (conditional models): one digit per code, or one int for all of them.
    """
    z = check_images(z, name="z", value_range=(-np.inf, np.inf), shape=(model.latent_size,))

    def probabilities(codes: tf.Tensor, onehot: tf.Tensor | None) -> tf.Tensor:
        return tf.sigmoid(model.logits(codes, onehot))

    return _numpy(_batches(probabilities, model, [z, _onehot(model, labels, len(z))], batch_size))


def reconstruct(model: VAE, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """``decode`` of the posterior mean of each image: the model's reconstruction, shaped like ``x``."""
    mean, _ = encode(model, x, labels)
    return decode(model, mean, labels)


def sample(model: VAE, n: int, labels: np.ndarray | int | None = None, seed: int = 0) -> np.ndarray:
    """``n`` new images, pixel probabilities in the model's layout, decoded from z ~ N(0, I) drawn by
    NumPy with ``seed`` (the same codes in both frameworks). A conditional model needs ``labels``:
    one digit for all, or one per sample."""
    z = sample_latent(n, model.latent_size, seed=seed)
    return decode(model, z, vae_task.expand_labels(labels, int(n), model.n_classes))


def elbo_terms(
    model: VAE, x: np.ndarray, eps: np.ndarray, labels: np.ndarray | None = None, beta: float = 1.0
) -> dict[str, float]:
    """Means over the images of ``reconstruction`` (-log p(x | z)), ``kl``, ``elbo`` =
    -(reconstruction + kl) and ``loss`` = reconstruction + beta * kl, in nats per image, with the
    given noise ``eps`` (N, latent) in z = mean + exp(log_var / 2) * eps."""
    x = _images(model, x)
    eps = vae_task.check_eps(eps, len(x), model.latent_size)
    beta = vae_task.check_beta(beta)

    def terms(*batch: tf.Tensor) -> tuple[float, float]:
        reconstruction, kl = loss_terms(model, batch[0], batch[1], batch[2])
        sums = (tf.reduce_sum(tf.cast(t, tf.float64)) for t in (reconstruction, kl))
        return tuple(float(s) for s in sums)  # type: ignore[return-value]

    sums = np.sum(_batches(terms, model, [x, eps, _onehot(model, labels, len(x))], 1000), axis=0)
    return vae_task.summary(float(sums[0]) / len(x), float(sums[1]) / len(x), beta)


def iwae_bound(
    model: VAE, x: np.ndarray, k: int, labels: np.ndarray | None = None, seed: int = 0, batch_size: int = 100
) -> float:
    """Mean over images of the importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x) on
    log p(x), in nats, with z_i from NumPy seeded ``seed``; it rises with k (k = 1: the ELBO in expectation)."""
    x = _images(model, x)
    onehot = _onehot(model, labels, len(x))

    def posterior(images: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        parts = _batches(model.gaussian_parameters, model, [images, rows], len(images))
        return _numpy([m for m, _ in parts]), _numpy([v for _, v in parts])

    def log_likelihood(images: np.ndarray, z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        parts = _batches(lambda *batch: _log_likelihood(model, *batch), model, [images, z, rows], 20_000)
        return _numpy(parts)

    return vae_task.iwae_bound(posterior, log_likelihood, x, onehot, k, seed, batch_size)


def kl_per_unit(model: VAE, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Mean KL(q(z_j | x) || N(0, 1)) of each latent unit j over the images ``x``, NumPy (latent_size,):
    units near 0 carry no information about x (posterior collapse)."""
    mean, log_var = encode(model, x, labels)
    return theory.gaussian_kl_per_unit(mean, log_var).mean(axis=0)


def count_parameters(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(w.numpy().size for w in model.trainable_weights))


# --------------------------------------------------------------------------- training


def vae_step(model: VAE, optimizer: keras.optimizers.Optimizer):
    """The train step: one Adam step on the batch mean of reconstruction + beta * KL, with the
    batch's ``eps`` and this epoch's KL weight ``beta`` drawn on the host."""

    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            reconstruction, kl = loss_terms(model, batch["images"], batch["eps"], batch.get("onehot"))
            reconstruction, kl = tf.reduce_mean(reconstruction), tf.reduce_mean(kl)
            loss = reconstruction + batch["beta"][0] * kl
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return {"loss": loss, "reconstruction": reconstruction, "kl": kl}

    return step


def _side(model: VAE) -> vae_task.VaeSide:
    def trainer(learning_rate: float, device: str | None) -> Trainer:
        optimizer = make_adam(model, learning_rate, **vae_task.VAE_ADAM)
        return Trainer(
            vae_step(model, optimizer), models={"vae": model}, optimizers={"adam": optimizer}, device=device
        )

    return vae_task.VaeSide(
        FRAMEWORK,
        model.kind,
        model.latent_size,
        model.n_classes,
        model.example_shape,
        trainer,
        lambda x, eps, labels, beta: elbo_terms(model, x, eps, labels, beta),
    )


def fit_vae(
    model: VAE,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    **settings: Unpack[vae_task.VaeSettings],
) -> dict[str, list]:
    """Train ``model`` through the one loop; the settings (epochs=10, batch_size=128,
    learning_rate=1e-3, beta=1.0, warmup_epochs=0, seed=0, out_dir, checkpoint_every, overwrite,
    log_every, device) and the returned history are those of :func:`companion.training.vae_task.fit_vae`."""
    return vae_task.fit_vae(_side(model), x_train, x_val, y_train, y_val, **settings)


def load_vae(out_dir: str | os.PathLike, device: str | None = None) -> VAE:
    """The VAE trained into run folder ``out_dir``, with the weights of its latest checkpoint."""
    config, folder = vae_task.vae_run(out_dir, FRAMEWORK)
    with tf.device(runtime.device(device)):
        model = build_vae(config["kind"], config["latent_size"], config["n_classes"])
    load_weights(folder, {"vae": model}, device)
    return model
