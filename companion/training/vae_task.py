"""What a variational autoencoder trains on, written once for both frameworks (the VAE chapter).

``companion.{tensorflow,torch}.vae`` build the networks and the train step and call the functions
here for the rest: the argument and label checks, the run settings stored in ``run.json``, the
per-step noise eps and KL weight, the validation ELBO, and the importance-weighted bound. All
randomness is drawn here from NumPy streams, so both frameworks see the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from companion.theory import vae as theory
from companion.training import loop, tasks
from companion.training.run_folder import saved_run
from companion.validation import InputError, check_images, check_positive

History = loop.History
KINDS = ("dense", "conv")
LATENT_SIZE = 16
# Adam as for the autoencoders; both sides set Keras' epsilon explicitly.
VAE_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


class VaeSettings(TypedDict, total=False):
    """Keyword arguments of ``fit_vae`` on both sides (all optional)."""

    epochs: int
    batch_size: int
    learning_rate: float
    beta: float
    warmup_epochs: int
    seed: int
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None


# ---------------------------------------------------------------------- checks


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_architecture(kind: str, latent_size: int, n_classes: int) -> None:
    """``build_vae``'s arguments, checked before a layer is built."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    check_positive("latent_size", latent_size, integer=True)
    if not _is_integer(n_classes) or n_classes < 0 or n_classes == 1:
        raise InputError(
            f"n_classes must be 0 (an unconditional VAE) or the number of labels, such as 10; got {n_classes!r}"
        )


def check_beta(beta: float) -> float:
    """The KL weight: a finite number >= 0 (1 is the ELBO, 0 drops the KL term)."""
    number = isinstance(beta, (int, float, np.integer, np.floating)) and not isinstance(beta, bool)
    if not number or not np.isfinite(beta) or beta < 0:
        raise InputError(f"beta must be a finite number >= 0 (1 trains on the ELBO), got {beta!r}")
    return float(beta)


def check_warmup(warmup_epochs: int) -> int:
    """Epochs of KL warm-up: an integer >= 0."""
    if not _is_integer(warmup_epochs) or warmup_epochs < 0:
        raise InputError(
            f"warmup_epochs must be an integer >= 0 (0: the full KL weight from the start), got {warmup_epochs!r}"
        )
    return int(warmup_epochs)


def check_labels(labels: object, n: int, n_classes: int, name: str = "labels") -> np.ndarray | None:
    """Digit labels for ``n`` images as int64 (n,), or ``None`` for an unconditional model.

    A conditional model (``n_classes > 0``) needs one label per image in [0, n_classes); an
    unconditional one takes none.
    """
    if n_classes == 0:
        if labels is not None:
            raise InputError(
                f"this VAE is unconditional and takes no {name}; drop them, or build a conditional VAE "
                "with build_vae(..., n_classes=10)"
            )
        return None
    if labels is None:
        raise InputError(
            f"this conditional VAE needs {name}: one digit in [0, {n_classes}) per image, e.g. the y of load_mnist"
        )
    array = np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise InputError(f"{name} must be integers in [0, {n_classes}), got dtype {array.dtype}")
    if array.shape != (n,):
        raise InputError(f"{name} must have shape ({n},), one per image, got {array.shape}")
    if n and (array.min() < 0 or array.max() >= n_classes):
        raise InputError(f"{name} must lie in [0, {n_classes}), got [{array.min()}, {array.max()}]")
    return array.astype(np.int64)


def one_hot(labels: np.ndarray | None, n_classes: int) -> np.ndarray | None:
    """Labels (N,) -> float32 one-hot rows (N, n_classes); ``None`` stays ``None``."""
    if labels is None:
        return None
    return np.eye(n_classes, dtype=np.float32)[np.asarray(labels, np.int64)]


def expand_labels(labels: object, n: int, n_classes: int) -> np.ndarray | None:
    """Labels given as one int for all ``n`` images, or as an int array of length ``n``, checked."""
    if n_classes and isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = np.full(n, int(labels), np.int64)
    return check_labels(labels, n, n_classes)


def check_eps(eps: object, n: int, latent_size: int) -> np.ndarray:
    """Standard normal noise for the reparameterisation: finite float32 (n, latent_size)."""
    array = np.asarray(eps)
    if array.shape != (n, latent_size) or array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise InputError(
            f"eps must be finite numbers of shape ({n}, {latent_size}), one noise vector per image "
            f"(e.g. np.random.default_rng(0).standard_normal(({n}, {latent_size}))), got shape {array.shape}"
        )
    return array.astype(np.float32)


def kl_weight(beta: float, warmup_epochs: int, epoch: int) -> float:
    """The KL weight of epoch ``epoch`` (1-based): ``beta``, ramped up linearly over the first
    ``warmup_epochs`` epochs (``beta * min(1, epoch / warmup_epochs)``) when that is > 0."""
    return beta if warmup_epochs == 0 else beta * min(1.0, epoch / warmup_epochs)


# ---------------------------------------------------------------------- training


@dataclass
class VaeSide:
    """What a framework hands to :func:`fit_vae` for one model.

    ``trainer(learning_rate, device)`` builds the trainer (Adam with :data:`VAE_ADAM`); the step reads
    ``images``, ``eps``, ``beta`` (shape (1,)) and, for a conditional model, ``onehot``.
    ``elbo_terms(x, eps, labels, beta)`` is the framework's ``elbo_terms`` for this model.
    """

    framework: str
    kind: str
    latent_size: int
    n_classes: int
    example_shape: tuple[int, ...]
    trainer: Callable[[float, str | None], loop.Trainer]
    elbo_terms: Callable[[np.ndarray, np.ndarray, np.ndarray | None, float], dict[str, float]]


class _Schedule(loop.Monitor):
    """Tracks the epoch (for the KL warm-up) and measures the validation ELBO after each epoch."""

    def __init__(self, side: VaeSide, beta: float, warmup: int, validation: tuple | None) -> None:
        self.side, self.beta, self.warmup, self.validation = side, beta, warmup, validation
        self.epoch = 1

    def before_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weight(self) -> float:
        return kl_weight(self.beta, self.warmup, self.epoch)

    def after_epoch(self, epoch: int) -> dict[str, float]:
        extra = {"beta": self.weight()}
        if self.validation is not None:
            x_val, eps, labels = self.validation
            extra["val_elbo"] = self.side.elbo_terms(x_val, eps, labels, 1.0)["elbo"]
        return extra


def fit_vae(
    side: VaeSide,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    beta: float = 1.0,
    warmup_epochs: int = 0,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    overwrite: bool = False,
    log_every: int = 1,
    device: str | None = None,
) -> History:
    """Train a VAE on reconstruction + ``beta`` x KL (the negative ELBO when ``beta`` = 1), per image.

    Args:
        x_train, x_val: images in [0, 1] in the model's layout (``model.example_shape``).
        y_train, y_val: digit labels, required for a conditional model and refused otherwise.
        epochs: total epochs, counting those a resumed run already did.
        beta: the KL weight; ``warmup_epochs`` > 0 ramps it from ``beta / warmup_epochs`` in the first
            epoch up to ``beta`` (KL warm-up, against posterior collapse).
        seed: seeds the shuffling and every step's noise eps (not the weights); the validation ELBO
            uses one fixed eps, so it changes only when the model does.
        out_dir, overwrite: run folder for checkpoints and ``history.json``; a folder holding a run of
            the same settings is resumed, ``overwrite=True`` deletes it and starts again.
        device: ``None`` (the GPU when there is one), ``"cpu"`` or ``"cuda"``.

    Returns:
        Per-epoch lists: ``loss`` (reconstruction + KL weight x KL), ``reconstruction`` and ``kl``
        (means over the epoch's images, nats per image), ``beta`` (the KL weight used), ``val_elbo``
        (with ``x_val``) and the loop's timings.
    """
    seed = loop.check_seed(seed)
    x_train = check_images(x_train, name="x_train", shape=side.example_shape)
    y_train = check_labels(y_train, len(x_train), side.n_classes, "y_train")
    validation = None
    if x_val is not None:
        x_val = check_images(x_val, name="x_val", shape=side.example_shape)
        y_val = check_labels(y_val, len(x_val), side.n_classes, "y_val")
        eps_val = loop.epoch_rng(seed, 0, 1).standard_normal((len(x_val), side.latent_size), dtype=np.float32)
        validation = (x_val, eps_val, y_val)
    elif y_val is not None:
        raise InputError("y_val was given without x_val; pass the validation images too")
    check_positive("learning_rate", learning_rate)
    beta = check_beta(beta)
    warmup_epochs = check_warmup(warmup_epochs)
    config = {
        "model": "cvae" if side.n_classes else "vae",
        "framework": side.framework,
        "kind": side.kind,
        "latent_size": side.latent_size,
        "n_classes": side.n_classes,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "beta": beta,
        "warmup_epochs": warmup_epochs,
        "seed": seed,
        "n_train": len(x_train),
    }
    schedule = _Schedule(side, beta, warmup_epochs, validation)

    def inputs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        eps = rng.standard_normal((len(index), side.latent_size), dtype=np.float32)
        return {"eps": eps, "beta": np.array([schedule.weight()], np.float32)}

    onehot = one_hot(y_train, side.n_classes)
    arrays = {"images": x_train} if onehot is None else {"images": x_train, "onehot": onehot}
    plan = loop.Plan(arrays, batch_size, inputs=inputs)
    return tasks.fit_in_run_folder(
        side.trainer(learning_rate, device),
        plan,
        config,
        out_dir=out_dir,
        overwrite=overwrite,
        epochs=epochs,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        monitor=schedule,
    )


def vae_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a VAE or conditional VAE run of ``framework``."""
    return saved_run(out_dir, framework, ("vae", "cvae"), "VAE")


# ---------------------------------------------------------------------- evaluation


def iwae_bound(
    gaussian_parameters: Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]],
    log_likelihood: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
    x: np.ndarray,
    onehot: np.ndarray | None,
    k: int,
    seed: int = 0,
    batch_size: int = 100,
) -> float:
    """Mean over images of log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x), in nats.

    ``gaussian_parameters(x, onehot)`` is the encoder (NumPy mean and log-variance) and
    ``log_likelihood(x, z, onehot)`` the decoder's log p(x | z) of each row (the Bernoulli
    log-likelihood, computed in the framework: in NumPy float64 it would take most of the time).
    The bound rises towards log p(x) as k grows (Burda et al., 2016); k = 1 is the ELBO in expectation.
    """
    check_positive("k", k, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    k = int(k)
    rng = np.random.default_rng(seed)
    bounds = []
    for start in range(0, len(x), int(batch_size)):
        images = x[start : start + batch_size]
        labels = None if onehot is None else onehot[start : start + batch_size]
        n = len(images)
        mean, log_var = (np.asarray(a, np.float64) for a in gaussian_parameters(images, labels))
        eps = rng.standard_normal((k, n, mean.shape[1]))
        z = mean + np.exp(0.5 * log_var) * eps  # (k, n, latent)
        log_weights = theory.log_normal(z) - theory.log_normal(z, mean, log_var)
        per_chunk = max(1, 20_000 // n)  # decoder inputs of at most about 20,000 codes at a time
        for i in range(0, k, per_chunk):
            codes = z[i : i + per_chunk].reshape(-1, mean.shape[1]).astype(np.float32)
            repeats = len(codes) // n
            tiled = None if labels is None else np.concatenate([labels] * repeats)
            log_px = log_likelihood(np.concatenate([images] * repeats), codes, tiled)
            log_weights[i : i + repeats] += np.asarray(log_px, np.float64).reshape(repeats, n)
        bounds.append(theory.log_mean_exp(log_weights, axis=0))
    return float(np.mean(np.concatenate(bounds)))


def summary(reconstruction: float, kl: float, beta: float) -> dict[str, float]:
    """``elbo_terms``' dictionary from mean reconstruction and KL terms (nats per image)."""
    return {
        "reconstruction": reconstruction,
        "kl": kl,
        "elbo": -(reconstruction + kl),
        "loss": reconstruction + beta * kl,
    }
