"""Chapters 2-3: autoencoders in Keras 3 -- dense, deeper dense and convolutional.

Every model is an :class:`Autoencoder` holding an ``encoder`` (images -> code) and a
``decoder`` (code -> images in [0, 1]). ``companion.torch.autoencoders`` builds the same
networks with the same layer names, so ``companion.bridge`` copies weights both ways.

Data layout: dense models take flat images ``(N, 784)``; the convolutional model takes
channels-last images ``(N, 28, 28, 1)``, as Keras expects. Pixels lie in [0, 1].
"""

from __future__ import annotations

import os
from typing import Unpack

import keras
import numpy as np
import tensorflow as tf

from companion.tensorflow import runtime
from companion.tensorflow.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.training import tasks
from companion.validation import check_images, check_positive

PIXELS = 784
DEEP_HIDDEN = (256, 128)
CONV_FILTERS = (16, 32)  # 28x28 -> 14x14x16 -> 7x7x32
KINDS = ("dense", "deep", "conv")


class Autoencoder(keras.Model):
    """``decoder(encoder(x))``; ``example_shape`` is the shape of one input image."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, *, kind: str) -> None:
        super().__init__(name=f"{kind}_autoencoder")
        self.kind = kind
        self.encoder = encoder
        self.decoder = decoder
        self.code_size = int(encoder.outputs[0].shape[-1])
        self.example_shape = tuple(int(d) for d in encoder.inputs[0].shape[1:])

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.decoder(self.encoder(x, training=training), training=training)


def _finish(encoder: keras.Model, decoder: keras.Model, kind: str) -> Autoencoder:
    model = Autoencoder(encoder, decoder, kind=kind)
    model(np.zeros((1, *model.example_shape), np.float32))  # build, so weights exist now
    return model


def dense_autoencoder(code_size: int = 32) -> Autoencoder:
    """The classic recipe: 784 -> ``code_size`` (ReLU) -> 784 (sigmoid).

    With ``code_size=32`` the code is 24.5 times smaller than the image.
    """
    check_positive("code_size", code_size, integer=True)
    encoder = keras.Sequential(
        [keras.Input(shape=(PIXELS,)), keras.layers.Dense(code_size, activation="relu", name="code")],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input(shape=(code_size,)),
            keras.layers.Dense(PIXELS, activation="sigmoid", name="reconstruction"),
        ],
        name="decoder",
    )
    return _finish(encoder, decoder, "dense")


def deep_autoencoder(code_size: int = 32) -> Autoencoder:
    """784 -> 256 -> 128 -> ``code_size`` -> 128 -> 256 -> 784, ReLU hidden layers.

    The code layer is linear, so codes may take any sign; the Autoencoders chapter's Exercise 2.2
    measures that at d = 2 a ReLU code does about as well (its bias moves the codes into the positive quarter).
    """
    check_positive("code_size", code_size, integer=True)
    h1, h2 = DEEP_HIDDEN
    encoder = keras.Sequential(
        [
            keras.Input(shape=(PIXELS,)),
            keras.layers.Dense(h1, activation="relu", name="encode_1"),
            keras.layers.Dense(h2, activation="relu", name="encode_2"),
            keras.layers.Dense(code_size, name="code"),
        ],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input(shape=(code_size,)),
            keras.layers.Dense(h2, activation="relu", name="decode_1"),
            keras.layers.Dense(h1, activation="relu", name="decode_2"),
            keras.layers.Dense(PIXELS, activation="sigmoid", name="reconstruction"),
        ],
        name="decoder",
    )
    return _finish(encoder, decoder, "deep")


def conv_autoencoder(code_size: int = 32) -> Autoencoder:
    """Two strided convolutions down to 7x7x32, a linear ``code_size`` code, and back.

    Kernels are 4x4 with stride 2: Keras ``padding="same"`` then pads one pixel on every
    side, exactly PyTorch's ``padding=1``, so both frameworks see the same windows.
    Input and output: ``(N, 28, 28, 1)`` in [0, 1].
    """
    check_positive("code_size", code_size, integer=True)
    c1, c2 = CONV_FILTERS
    conv = {"kernel_size": 4, "strides": 2, "padding": "same"}
    encoder = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(c1, activation="relu", name="conv_1", **conv),
            keras.layers.Conv2D(c2, activation="relu", name="conv_2", **conv),
            keras.layers.Flatten(),
            keras.layers.Dense(code_size, name="code"),
        ],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input(shape=(code_size,)),
            keras.layers.Dense(7 * 7 * c2, activation="relu", name="expand"),
            keras.layers.Reshape((7, 7, c2)),
            keras.layers.Conv2DTranspose(c1, activation="relu", name="deconv_1", **conv),
            keras.layers.Conv2DTranspose(1, activation="sigmoid", name="reconstruction", **conv),
        ],
        name="decoder",
    )
    return _finish(encoder, decoder, "conv")


def build_autoencoder(kind: str, code_size: int = 32) -> Autoencoder:
    """``kind`` is ``"dense"``, ``"deep"`` or ``"conv"``; see the three builders."""
    builders = {"dense": dense_autoencoder, "deep": deep_autoencoder, "conv": conv_autoencoder}
    if kind not in builders:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return builders[kind](code_size)


def reconstruction_loss(x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
    """Mean squared error over every pixel of the batch (a scalar), the loss both sides train on."""
    return tf.reduce_mean(tf.square(tf.cast(x, tf.float32) - x_hat))


def _apply(part: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    outs = [part(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, *part.outputs[0].shape[1:]), np.float32)


def encode(model: Autoencoder, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Codes ``(N, code_size)`` of images ``x`` in [0, 1] in the model's layout."""
    return _apply(model.encoder, check_images(x, name="x", shape=model.example_shape), batch_size)


def decode(model: Autoencoder, z: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Images in [0, 1], in the model's layout, decoded from codes ``z`` of shape ``(N, code_size)``."""
    z = check_images(z, name="z", value_range=(-np.inf, np.inf), shape=(model.code_size,))
    return _apply(model.decoder, z, batch_size)


def reconstruct(model: Autoencoder, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """``decode(encode(x))`` as a NumPy array of the same shape as ``x``."""
    return decode(model, encode(model, x, batch_size), batch_size)


def count_parameters(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(w.numpy().size for w in model.trainable_weights))


# --------------------------------------------------------------------------- training


def autoencoder_step(model: Autoencoder, optimizer: keras.optimizers.Optimizer):
    """The train step: reconstruct ``batch["targets"]`` from ``batch["inputs"]`` (the targets
    themselves unless a denoiser's corrupted copies are given) and take one Adam step on the MSE."""

    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        targets = batch["targets"]
        with tf.GradientTape() as tape:
            loss = reconstruction_loss(targets, model(batch.get("inputs", targets), training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return {"train": loss}

    return step


def evaluate_loss(
    model: Autoencoder, x_clean: np.ndarray, x_input: np.ndarray | None = None, batch_size: int = 1000
) -> float:
    """Mean reconstruction loss of ``model(x_input)`` against ``x_clean`` (``x_input`` defaults to
    ``x_clean``), averaged over every pixel of every image."""
    x_input = x_clean if x_input is None else x_input
    total = 0.0
    for i in range(0, len(x_clean), batch_size):
        x_hat = model(tf.constant(x_input[i : i + batch_size]), training=False)
        total += float(reconstruction_loss(tf.constant(x_clean[i : i + batch_size]), x_hat)) * len(x_hat)
    return total / len(x_clean)


def _side(model: Autoencoder) -> tasks.AutoencoderSide:
    def trainer(learning_rate: float, device: str | None) -> Trainer:
        optimizer = make_adam(model, learning_rate, **tasks.AE_ADAM)
        return Trainer(
            autoencoder_step(model, optimizer),
            models={"autoencoder": model},
            optimizers={"adam": optimizer},
            device=device,
        )

    return tasks.AutoencoderSide(
        FRAMEWORK,
        model.kind,
        model.code_size,
        model.example_shape,
        trainer,
        lambda clean, inputs: evaluate_loss(model, clean, inputs),
    )


def fit_autoencoder(
    model: Autoencoder,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    **settings: Unpack[tasks.AutoencoderSettings],
) -> dict[str, list]:
    """Train ``model`` through the one loop; the settings and the returned history are those of
    :func:`companion.training.tasks.fit_autoencoder` (epochs, batch_size, learning_rate, noise, seed,
    out_dir, checkpoint_every, overwrite, log_every, device)."""
    return tasks.fit_autoencoder(_side(model), x_train, x_val, **settings)


def load_autoencoder(out_dir: str | os.PathLike, device: str | None = None) -> Autoencoder:
    """The autoencoder trained into run folder ``out_dir``, with the weights of its latest checkpoint."""
    config, folder = tasks.autoencoder_run(out_dir, FRAMEWORK)
    with tf.device(runtime.device(device)):
        model = build_autoencoder(config["kind"], config["code_size"])
    load_weights(folder, {"autoencoder": model}, device)
    return model
