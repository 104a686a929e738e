"""Chapter 1: one tiny classifier, 784 -> 64 (ReLU) -> 10 logits, written the Keras ways.

``companion.torch.basics`` builds the same network; the parameter counts match and
``companion.bridge`` copies weights between them.
"""

from __future__ import annotations

import keras

INPUTS, HIDDEN, CLASSES = 784, 64, 10


def tiny_sequential() -> keras.Model:
    """The network as a ``keras.Sequential`` stack of layers."""
    return keras.Sequential(
        [
            keras.Input(shape=(INPUTS,)),
            keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name="tiny_sequential",
    )


def tiny_functional() -> keras.Model:
    """The same network with the functional API: call layers on tensors, then wrap in a Model."""
    pixels = keras.Input(shape=(INPUTS,), name="pixels")
    hidden = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(pixels)
    logits = keras.layers.Dense(CLASSES, name="logits")(hidden)
    return keras.Model(pixels, logits, name="tiny_functional")


def two_output_functional() -> keras.Model:
    """A shared hidden layer feeding two heads: digit logits and a reconstruction of the input.

    Something ``Sequential`` cannot express; the functional API makes it one line per head.
    """
    pixels = keras.Input(shape=(INPUTS,), name="pixels")
    hidden = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(pixels)
    logits = keras.layers.Dense(CLASSES, name="logits")(hidden)
    reconstruction = keras.layers.Dense(INPUTS, activation="sigmoid", name="reconstruction")(hidden)
    return keras.Model(pixels, [logits, reconstruction], name="two_output_functional")


def count_parameters(model: keras.Model) -> int:
    """Number of trainable parameters, the figure ``model.summary()`` prints."""
    return int(sum(w.numpy().size for w in model.trainable_weights))
