"""Chapters 2-3: training autoencoders and denoisers with ``tf.GradientTape``.

``companion.torch.training`` has the same functions with the same arguments and computes
the same thing: the same batches in the same order (NumPy shuffling seeded per epoch),
the same noise, the same loss (MSE over every pixel) and Adam with the same settings.

A checkpoint directory holds, after every ``checkpoint_every`` epochs:

* ``epoch_0007.weights.h5`` -- the model weights;
* ``epoch_0007.optimizer.npz`` -- Adam's step count and moment estimates;
* ``checkpoint.json`` -- which epoch the files above belong to, with the loss history so far;
* ``history.json`` -- the loss history, rewritten after every epoch.

Every file is written to a temporary name and renamed in one step, and ``checkpoint.json``
is written last, so a crash at any moment leaves the previous checkpoint complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from companion.checkpoints import atomic_path, read_json, write_json
from companion.fitting import (
    ADAM_BETAS,
    ADAM_EPSILON,
    HISTORY,
    POINTER,
    Noise,
    check_fit_arguments,
    corrupt,
    epoch_rng,
)
from companion.progress import batches, epoch_line, should_log
from companion.tensorflow.autoencoders import Autoencoder, reconstruction_loss
from companion.validation import check_positive


def make_optimizer(model: Autoencoder, learning_rate: float = 1e-3) -> keras.optimizers.Adam:
    """Adam over ``model``'s weights with the shared settings (``ADAM_BETAS``, ``ADAM_EPSILON``).

    Built right away, so that its state exists before a checkpoint is loaded into it.
    """
    check_positive("learning_rate", learning_rate)
    beta_1, beta_2 = ADAM_BETAS
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=ADAM_EPSILON)
    optimizer.build(model.trainable_variables)
    return optimizer


def fit_autoencoder(
    model: Autoencoder,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    noise: Noise = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    log_every: int = 1,
) -> dict[str, list[float]]:
    """Train ``model`` to reconstruct clean images from (optionally corrupted) inputs.

    Args:
        model: an autoencoder from ``companion.tensorflow.autoencoders``.
        x_train, x_val: images in [0, 1] shaped like ``model.example_shape`` (flat
            ``(N, 784)`` or channels-last ``(N, 28, 28, 1)``); ``x_val`` is optional.
        epochs: total number of epochs, counting those a resumed run already did.
        batch_size, learning_rate: mini-batch size and Adam step size.
        noise: ``None`` (plain autoencoder), a Gaussian noise level ``sigma`` (input
            ``clip(x + sigma * n, 0, 1)``, target ``x``: a denoiser), or a function
            ``(x, rng) -> noisy x``. Fresh noise every epoch; validation noise is drawn once.
        seed: seeds the shuffling and the noise (not the weights).
        checkpoint_dir: where to write checkpoints and ``history.json``; ``None``: nowhere.
        checkpoint_every: write a checkpoint every this many epochs (and after the last).
        resume: continue from the last checkpoint in ``checkpoint_dir`` (weights, Adam
            state and history); start fresh when there is none.
        log_every: print one line every this many epochs (0: silent).

    Returns:
        ``{"train": [...], "val": [...], "seconds": [...]}``: per-epoch mean training loss,
        validation loss (only with ``x_val``) and wall-clock seconds.
    """
    x_train, x_val = check_fit_arguments(
        model, x_train, x_val, epochs, batch_size, learning_rate, noise, seed, checkpoint_every, log_every
    )
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder the checkpoints were written to")
    epochs, batch_size = int(epochs), int(batch_size)
    optimizer = make_optimizer(model, learning_rate)
    history: dict[str, list[float]] = {"train": [], "seconds": []}
    if x_val is not None:
        history["val"] = []
        val_input = corrupt(x_val, noise, epoch_rng(seed, 0, 1))  # one fixed noisy validation set
    start = 0
    if resume:
        start, history = load_checkpoint(model, optimizer, checkpoint_dir)
        if x_val is not None:
            history.setdefault("val", [])
        if start and log_every:
            print(f"resuming after epoch {start} from {checkpoint_dir}")

    @tf.function(reduce_retracing=True)
    def train_step(inputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = reconstruction_loss(targets, model(inputs, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    n = len(x_train)
    for epoch in range(start + 1, epochs + 1):
        began = time.perf_counter()
        order = epoch_rng(seed, epoch, 0).permutation(n)
        noise_rng = epoch_rng(seed, epoch, 1)
        total = 0.0
        steps = range(0, n, batch_size)
        for i in batches(steps, total=len(steps), desc=f"epoch {epoch}/{epochs}"):
            clean = x_train[order[i : i + batch_size]]
            loss = train_step(tf.constant(corrupt(clean, noise, noise_rng)), tf.constant(clean))
            total += float(loss) * len(clean)  # weight by batch size: the last batch may be short
        history["train"].append(total / n)
        if x_val is not None:
            history["val"].append(evaluate_loss(model, x_val, val_input, batch_size))
        history["seconds"].append(time.perf_counter() - began)
        if checkpoint_dir is not None:
            write_json(Path(checkpoint_dir) / HISTORY, history)
            if epoch % checkpoint_every == 0 or epoch == epochs:
                save_checkpoint(model, optimizer, checkpoint_dir, epoch, history)
        if should_log(epoch, epochs, log_every):
            shown = {name: values[-1] for name, values in history.items() if name != "seconds"}
            print(epoch_line(epoch, epochs, shown, history["seconds"][-1]))
    return history


def evaluate_loss(
    model: Autoencoder, x_clean: np.ndarray, x_input: np.ndarray | None = None, batch_size: int = 1000
) -> float:
    """Mean reconstruction loss of ``model(x_input)`` against ``x_clean`` (``x_input``
    defaults to ``x_clean``), averaged over every pixel of every image."""
    x_input = x_clean if x_input is None else x_input
    total = 0.0
    for i in range(0, len(x_clean), batch_size):
        x_hat = model(tf.constant(x_input[i : i + batch_size]), training=False)
        total += float(reconstruction_loss(tf.constant(x_clean[i : i + batch_size]), x_hat)) * len(x_hat)
    return total / len(x_clean)


def save_checkpoint(
    model: Autoencoder,
    optimizer: keras.optimizers.Optimizer,
    checkpoint_dir: str | Path,
    epoch: int,
    history: dict[str, list[float]],
) -> Path:
    """Write the weights, the optimizer state and then ``checkpoint.json`` pointing at them."""
    folder = Path(checkpoint_dir)
    weights, state = f"epoch_{epoch:04d}.weights.h5", f"epoch_{epoch:04d}.optimizer.npz"
    with atomic_path(folder / weights, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    with atomic_path(folder / state, suffix=".npz") as tmp:
        np.savez(tmp, *[v.numpy() for v in optimizer.variables])
    pointer = write_json(
        folder / POINTER, {"epoch": epoch, "weights": weights, "optimizer": state, "history": history}
    )
    for old in folder.glob("epoch_*"):  # only now is the previous checkpoint no longer needed
        if old.name not in (weights, state):
            old.unlink()
    return pointer


def load_checkpoint(
    model: Autoencoder, optimizer: keras.optimizers.Optimizer | None, checkpoint_dir: str | Path
) -> tuple[int, dict[str, list[float]]]:
    """Restore the last checkpoint into ``model`` (and ``optimizer``, if given and built).

    Returns ``(epoch, history)``; ``(0, empty history)`` when the folder has no checkpoint.
    """
    folder = Path(checkpoint_dir)
    if not (folder / POINTER).exists():
        return 0, {"train": [], "seconds": []}
    saved = read_json(folder / POINTER)
    model.load_weights(folder / saved["weights"])
    if optimizer is not None:
        with np.load(folder / saved["optimizer"]) as arrays:
            values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        if len(values) != len(optimizer.variables):
            raise ValueError(
                f"{folder}: the saved optimizer has {len(values)} variables, this one "
                f"{len(optimizer.variables)}; was the checkpoint written for another model?"
            )
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
    return int(saved["epoch"]), saved["history"]
