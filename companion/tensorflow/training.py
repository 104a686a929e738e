"""TensorFlow's half of the one training loop (:mod:`companion.training.loop`).

:class:`Trainer` wraps a model's train step: it places the training arrays on the device once,
gathers each batch there, runs the step as a ``tf.function`` and writes or reads checkpoints
(weights, optimiser slots and the dropout layers' random state) with ``tf.train.Checkpoint``.
``companion.torch.training`` is the same for PyTorch, name for name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from companion.settings import quiet_native_stderr
from companion.tensorflow import runtime
from companion.training.run_folder import RunFolderError

FRAMEWORK = "tensorflow"
# Grappler cannot fuse conv + bias + LeakyReLU when the gradient needs the pre-activation; it leaves
# the graph as it was but logs an ERROR line each time a step is traced. Only such lines are hidden.
HARMLESS_NATIVE_LOGS = ("remapper failed", "Remapper", "layout failed")
Batch = dict[str, tf.Tensor]


def make_adam(
    model: keras.Model,
    learning_rate: float,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> keras.optimizers.Adam:
    """Adam over ``model``'s trainable weights, built now so that a checkpoint restores into its slots."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
    optimizer.build(model.trainable_variables)
    return optimizer


def seed_states(models: Mapping[str, keras.Model]) -> list[tf.Variable]:
    """The state variables of every random layer (dropout), so that a resume continues their streams."""
    states = []
    for model in models.values():
        for layer in model._flatten_layers(include_self=False):
            generator = getattr(layer, "seed_generator", None)
            if generator is not None:
                states.append(generator.state)
    return states


def load_weights(folder: str | Path, models: Mapping[str, Any], device: str | None = None) -> None:
    """Load the named models' weights from a checkpoint folder (for inference: optimisers and the
    random streams are left alone)."""
    Trainer(lambda batch: {}, models=models, optimizers={}, device=device).load_state(
        folder, random_state=False
    )


class Trainer:
    """Runs ``step(batch) -> metrics`` for the loop; ``batch`` maps names to tensors on the device.

    ``models`` and ``optimizers`` (by name) are what a checkpoint holds. The step always runs as a
    ``tf.function`` graph; ``compile=True`` also compiles it with XLA.
    """

    framework = FRAMEWORK

    def __init__(
        self,
        step: Callable[[Batch], Mapping[str, tf.Tensor]],
        *,
        models: Mapping[str, keras.Model],
        optimizers: Mapping[str, keras.optimizers.Optimizer],
        device: str | None = None,
        compile: bool = False,
    ) -> None:
        self.device = runtime.device(device)
        self.models, self.optimizers = dict(models), dict(optimizers)
        self._step = tf.function(step, jit_compile=compile, reduce_retracing=True)
        self._arrays: dict[str, tf.Tensor] = {}

    def upload(self, arrays: Mapping[str, np.ndarray]) -> None:
        with tf.device(self.device):
            self._arrays = {name: tf.constant(np.asarray(a, np.float32)) for name, a in arrays.items()}

    def step(self, index: np.ndarray, inputs: Mapping[str, np.ndarray]) -> Mapping[str, tf.Tensor]:
        with tf.device(self.device):
            rows = tf.constant(index)
            batch = {name: tf.gather(array, rows) for name, array in self._arrays.items()}
            batch.update({name: tf.constant(value) for name, value in inputs.items()})
            with quiet_native_stderr(HARMLESS_NATIVE_LOGS):
                return self._step(batch)

    def to_floats(self, values: Mapping[str, Any]) -> dict[str, float]:
        return {name: float(value) for name, value in values.items()}

    def _checkpoint(self, random_state: bool = True) -> tf.train.Checkpoint:
        parts: dict[str, Any] = {f"model_{name}": m for name, m in self.models.items()}
        parts.update({f"optimizer_{name}": o for name, o in self.optimizers.items()})
        if random_state:
            parts["random_states"] = seed_states(self.models)
        return tf.train.Checkpoint(**parts)

    def save_state(self, folder: str | Path) -> None:
        self._checkpoint().write(str(Path(folder) / "state"))

    def load_state(self, folder: str | Path, random_state: bool = True) -> None:
        """Load a checkpoint; ``random_state=False`` leaves the dropout layers' streams alone (inference)."""
        try:
            self._checkpoint(random_state).read(str(Path(folder) / "state")).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise RunFolderError(
                f"checkpoint {folder} is damaged or was written for another model ({first}); delete it to "
                "fall back to the checkpoint before it, or start again with overwrite"
            ) from err
