"""Chapters 2-3: training autoencoders and denoisers with a plain PyTorch loop.

``companion.tensorflow.training`` has the same functions with the same arguments and
computes the same thing: the same batches in the same order (NumPy shuffling seeded per
epoch), the same noise, the same loss (MSE over every pixel) and Adam with the same settings.

A checkpoint directory holds, after every ``checkpoint_every`` epochs:

* ``epoch_0007.pt`` -- the model weights and Adam's state (step count, moment estimates);
* ``checkpoint.json`` -- which epoch the file above belongs to, with the loss history so far;
* ``history.json`` -- the loss history, rewritten after every epoch.

Every file is written to a temporary name and renamed in one step, and ``checkpoint.json``
is written last, so a crash at any moment leaves the previous checkpoint complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

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
from companion.torch.autoencoders import Autoencoder, reconstruction_loss
from companion.validation import check_positive


def make_optimizer(model: Autoencoder, learning_rate: float = 1e-3) -> torch.optim.Adam:
    """Adam over ``model``'s parameters with the shared settings (``ADAM_BETAS``, ``ADAM_EPSILON``)."""
    check_positive("learning_rate", learning_rate)
    return torch.optim.Adam(model.parameters(), lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPSILON)


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
        model: an autoencoder from ``companion.torch.autoencoders``.
        x_train, x_val: NumPy images in [0, 1] shaped like ``model.example_shape`` (flat
            ``(N, 784)`` or channels-first ``(N, 1, 28, 28)``); ``x_val`` is optional.
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
    device = next(model.parameters()).device
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

    def train_step(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = reconstruction_loss(targets, model(inputs))
        loss.backward()
        optimizer.step()
        return loss.detach()

    n = len(x_train)
    for epoch in range(start + 1, epochs + 1):
        began = time.perf_counter()
        order = epoch_rng(seed, epoch, 0).permutation(n)
        noise_rng = epoch_rng(seed, epoch, 1)
        total = 0.0
        model.train()
        steps = range(0, n, batch_size)
        for i in batches(steps, total=len(steps), desc=f"epoch {epoch}/{epochs}"):
            clean = x_train[order[i : i + batch_size]]
            inputs = torch.from_numpy(corrupt(clean, noise, noise_rng)).to(device)
            loss = train_step(inputs, torch.from_numpy(clean).to(device))
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


@torch.no_grad()
def evaluate_loss(
    model: Autoencoder, x_clean: np.ndarray, x_input: np.ndarray | None = None, batch_size: int = 1000
) -> float:
    """Mean reconstruction loss of ``model(x_input)`` against ``x_clean`` (``x_input``
    defaults to ``x_clean``), averaged over every pixel of every image."""
    x_input = x_clean if x_input is None else x_input
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x_clean), batch_size):
        x_hat = model(torch.as_tensor(x_input[i : i + batch_size], device=device))
        clean = torch.as_tensor(x_clean[i : i + batch_size], device=device)
        total += float(reconstruction_loss(clean, x_hat)) * len(x_hat)
    model.train(was_training)
    return total / len(x_clean)


def save_checkpoint(
    model: Autoencoder,
    optimizer: torch.optim.Optimizer,
    checkpoint_dir: str | Path,
    epoch: int,
    history: dict[str, list[float]],
) -> Path:
    """Write the weights with the optimizer state, then ``checkpoint.json`` pointing at them."""
    folder = Path(checkpoint_dir)
    name = f"epoch_{epoch:04d}.pt"
    with atomic_path(folder / name, suffix=".pt") as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
    pointer = write_json(folder / POINTER, {"epoch": epoch, "weights": name, "history": history})
    for old in folder.glob("epoch_*"):  # only now is the previous checkpoint no longer needed
        if old.name != name:
            old.unlink()
    return pointer


def load_checkpoint(
    model: Autoencoder, optimizer: torch.optim.Optimizer | None, checkpoint_dir: str | Path
) -> tuple[int, dict[str, list[float]]]:
    """Restore the last checkpoint into ``model`` (and ``optimizer``, if given).

    Returns ``(epoch, history)``; ``(0, empty history)`` when the folder has no checkpoint.
    """
    folder = Path(checkpoint_dir)
    if not (folder / POINTER).exists():
        return 0, {"train": [], "seconds": []}
    saved = read_json(folder / POINTER)
    device = next(model.parameters()).device
    state = torch.load(folder / saved["weights"], map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(saved["epoch"]), saved["history"]
