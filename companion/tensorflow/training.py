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
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from companion.checkpoints import atomic_path, read_json, write_json
from companion.noise import add_gaussian_noise
from companion.progress import batches, epoch_line, should_log
from companion.tensorflow.autoencoders import Autoencoder, reconstruction_loss
from companion.validation import check_images, check_positive

# Adam as in the original recipe. Keras defaults to epsilon=1e-7 and PyTorch to 1e-8;
# both sides set it explicitly. (Keras adds epsilon before Adam's bias correction and
# PyTorch after it, so weights with near-zero gradients still step slightly differently.)
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7
POINTER = "checkpoint.json"
HISTORY = "history.json"

Noise = float | Callable[[np.ndarray, np.random.Generator], np.ndarray] | None


def make_optimizer(model: Autoencoder, learning_rate: float = 1e-3) -> keras.optimizers.Adam:
    """Adam over ``model``'s weights with the shared settings (``ADAM_BETAS``, ``ADAM_EPSILON``).

    Built right away, so that its state exists before a checkpoint is loaded into it.
    """
    check_positive("learning_rate", learning_rate)
    beta_1, beta_2 = ADAM_BETAS
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=ADAM_EPSILON)
    optimizer.build(model.trainable_variables)
    return optimizer


def corrupt(x: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """The network input for clean images ``x``: ``x`` itself, ``x + sigma * n`` clipped to
    [0, 1] when ``noise`` is a number, or ``noise(x, rng)`` when it is a function."""
    if noise is None:
        return x
    if callable(noise):
        noisy = np.asarray(noise(x, rng), np.float32)
        if noisy.shape != x.shape or not np.isfinite(noisy).all():
            raise ValueError(
                f"the noise function must return finite values of shape {x.shape}, got {noisy.shape}"
            )
        return noisy
    return add_gaussian_noise(x, float(noise), seed=rng)


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """Generator for one epoch: shuffling (stream 0) and noise (stream 1) are repeatable
    epoch by epoch, so a resumed run sees exactly the batches an unbroken run would."""
    return np.random.default_rng([seed, epoch, stream])


def _check_arguments(model, x_train, x_val, epochs, batch_size, learning_rate, noise, seed, every, log_every):
    shape = model.example_shape
    x_train = check_images(x_train, name="x_train", shape=shape)
    if x_val is not None:
        x_val = check_images(x_val, name="x_val", shape=shape)
    check_positive("epochs", epochs, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("learning_rate", learning_rate)
    check_positive("checkpoint_every", every, integer=True)
    if not isinstance(log_every, (int, np.integer)) or log_every < 0:
        raise ValueError(f"log_every must be an integer >= 0 (0: silent), got {log_every!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if noise is not None and not callable(noise):
        ok = isinstance(noise, (int, float, np.number)) and not isinstance(noise, bool)
        if not ok or not np.isfinite(noise) or noise < 0:
            raise ValueError(
                f"noise must be None, a noise level sigma >= 0 or a function (x, rng) -> noisy x, got {noise!r}"
            )
    return x_train, x_val


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
    x_train, x_val = _check_arguments(
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
