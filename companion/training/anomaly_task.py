"""Anomaly detection by latent inversion (AnoGAN), written once for both frameworks.

A GAN trained on every digit but one (the *held-out* class) has learned what normal digits look
like. ``companion.{tensorflow,torch}.anomaly`` search, for each test image ``x``, the latent vector
``z`` whose image ``G(z)`` comes closest (Schlegl et al. 2017): starting from ``z_0 ~ N(0, I)`` they
take ``steps`` Adam steps on ``z`` (the GAN's weights stay fixed) against

    (1 - lambda) * residual + lambda * discrimination,
    residual = sum |x - G(z)|                 (pixels in [0, 1]),
    discrimination = sum |f(x) - f(G(z))|     (f: the discriminator's last convolutional features),

and the final value is the anomaly score: a digit the generator has never drawn is harder to
reproduce. This module holds what both frameworks share: the checks, the held-out split and its
record (``anomaly.json`` beside the GAN's ``run.json``), the starting ``z`` (drawn by NumPy, so both
frameworks start from the same numbers), the result type, the nearest-neighbour baseline and the
table of ROC AUCs that compares the scores.

The GAN is the conditional GAN chapter's unconditional twin (``cgan`` with ``n_classes=0``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from companion.evaluation.roc import roc_auc
from companion.noise import sample_latent
from companion.training import cgan_task, loop, tasks
from companion.training.atomic_files import read_json, write_json
from companion.training.run_folder import RUN_FILE
from companion.validation import InputError, check_images, check_positive

N_CLASSES = cgan_task.N_CLASSES
HOLDOUT_FILE = "anomaly.json"  # beside the GAN's run.json: which digit the GAN never saw
FEATURE_WEIGHT = 0.1  # AnoGAN's lambda: mostly the pixel residual, a tenth the feature match
INVERSION_STEPS = 100
INVERSION_LR = 0.05  # Adam's step on z; z ~ N(0, I) has 100 coordinates of size about 1
INVERSION_BATCH = 500
ADAM_BETAS = (0.9, 0.999)  # Adam on z: the usual defaults
ADAM_EPSILON = 1e-7  # Keras' default, used on both sides
NN_CHUNK = 500  # test images per block of the distance matrix: 500 x 5,000 float32 is 10 MB
AE_CODE_SIZE = 32
AE_EPOCHS = 50  # the autoencoder chapter's recipe; about 5 s on the subset
AE_BATCH = 256
SCORE_NAMES = ("anogan", "autoencoder", "nearest_neighbour")


class NormalGanSettings(TypedDict, total=False):
    """Keyword arguments of ``anomaly.train_normal_gan`` on both sides: those of ``cgan.train``
    (:class:`companion.training.cgan_task.CganConfig`) but ``n_classes``, which is 0 here."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    seed: int
    steps_per_epoch: int | None
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None
    gan: Any


# ---------------------------------------------------------------------- checks


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_holdout(holdout: object) -> int:
    """The held-out digit: an int in [0, 10)."""
    if not _is_integer(holdout) or not 0 <= holdout < N_CLASSES:  # type: ignore[operator]
        raise InputError(
            f"holdout must be the digit the GAN never sees, an int in [0, {N_CLASSES}), got {holdout!r}"
        )
    return int(holdout)  # type: ignore[call-overload]


def check_digit_labels(labels: object, n: int, name: str = "labels") -> np.ndarray:
    """Digit labels for ``n`` images -> int64 ``(n,)``: integers in [0, 10) or one-hot rows."""
    return np.argmax(cgan_task.check_labels(labels, n, N_CLASSES, name=name, soft=False), axis=1)


def check_feature_weight(weight: object) -> float:
    """lambda, the discrimination loss's share of the objective: a number in [0, 1]."""
    if (
        not isinstance(weight, (int, float, np.integer, np.floating))
        or isinstance(weight, bool)
        or not np.isfinite(weight)
        or not 0.0 <= weight <= 1.0
    ):
        raise InputError(
            f"feature_weight must be a number in [0, 1] (0: pixels only, 1: discriminator features only, "
            f"{FEATURE_WEIGHT}: AnoGAN's), got {weight!r}"
        )
    return float(weight)


def check_inversion(
    steps: object, lr: object, feature_weight: object, seed: object, batch_size: object
) -> float:
    """Check :func:`invert`'s settings; returns lambda as a float."""
    check_positive("steps", steps, integer=True)  # type: ignore[arg-type]
    check_positive("lr", lr)  # type: ignore[arg-type]
    check_positive("batch_size", batch_size, integer=True)  # type: ignore[arg-type]
    loop.check_seed(seed)
    return check_feature_weight(feature_weight)


def check_unconditional(gan: Any) -> None:
    """Latent inversion searches noise only: the GAN must be the unconditional twin."""
    if getattr(gan, "n_classes", None) != 0:
        raise InputError(
            "invert needs the unconditional GAN (cgan.CGAN(n_classes=0), as train_normal_gan trains); "
            f"got a model with n_classes={getattr(gan, 'n_classes', None)!r}"
        )


def check_test_images(images: object) -> np.ndarray:
    """Digits ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)`` in [0, 1] -> ``(N, 28, 28)`` in [0, 1]."""
    return tasks.check_dcgan_images(np.asarray(images), "sigmoid")


def flat_images(images: object, name: str) -> np.ndarray:
    """28x28 digits in [0, 1] in any one-channel layout, or flat ``(N, 784)`` -> float32 ``(N, 784)``."""
    x = np.asarray(images)
    if x.ndim == 2 and x.shape[1] == 784:
        return check_images(x, name=name)
    if x.ndim in (3, 4) and x.shape[1:] in ((28, 28), (28, 28, 1), (1, 28, 28)):
        return check_images(x.reshape(len(x), 784), name=name)
    raise InputError(
        f"{name} has shape {x.shape}; pass 28x28 digits in [0, 1]: (N, 784), (N, 28, 28), (N, 28, 28, 1) "
        "or (N, 1, 28, 28), e.g. load_mnist(layout='hw')"
    )


# ---------------------------------------------------------------------- the held-out split


def normal_split(images: object, labels: object, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of every digit but ``holdout``; images keep their layout, labels int64."""
    holdout = check_holdout(holdout)
    x = np.asarray(images)
    if x.ndim == 0:
        raise InputError(f"images must be an array of digits, got {images!r}")
    y = check_digit_labels(labels, len(x))
    keep = y != holdout
    if not keep.any():
        raise InputError(
            f"every image is a {holdout}: the held-out digit; pass images of the other digits too"
        )
    return x[keep], y[keep]


def _read_holdout(out_dir: str | os.PathLike) -> int | None:
    path = Path(out_dir) / HOLDOUT_FILE
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not _is_integer(record.get("holdout")):
        raise InputError(
            f"{path} is damaged (no holdout digit); delete it and train again with overwrite=True"
        )
    return int(record["holdout"])


def saved_holdout(out_dir: str | os.PathLike) -> int:
    """The digit the GAN trained into ``out_dir`` never saw (from its ``anomaly.json``)."""
    holdout = _read_holdout(out_dir)
    if holdout is None:
        raise InputError(
            f"{Path(out_dir) / HOLDOUT_FILE} is missing: {out_dir} holds no GAN trained by train_normal_gan "
            "(or its first training did not finish); train it with train_normal_gan(..., out_dir=...)"
        )
    return holdout


def train_normal_gan(
    train: Callable[..., tuple[Any, dict]],
    images: object,
    labels: object,
    holdout: int,
    settings: Mapping[str, Any],
) -> tuple[Any, dict]:
    """Train the unconditional twin with ``train`` (a framework's ``cgan.train``) on every digit but
    ``holdout``; with ``out_dir`` the held-out digit is recorded in ``anomaly.json`` beside ``run.json``
    (a run folder of another held-out digit is refused unless ``overwrite=True``)."""
    holdout = check_holdout(holdout)
    if "n_classes" in settings:
        raise TypeError("train_normal_gan trains the unconditional GAN (n_classes=0); drop n_classes=")
    normal, _ = normal_split(images, labels, holdout)
    out_dir = settings.get("out_dir")
    if out_dir is not None and not settings.get("overwrite", False) and (Path(out_dir) / RUN_FILE).exists():
        saved = _read_holdout(out_dir)
        if saved is not None and saved != holdout:
            raise InputError(
                f"{out_dir} holds a GAN that held out digit {saved}, not {holdout}; pass holdout={saved} to "
                "resume it, another out_dir, or overwrite=True to start again"
            )
    gan, history = train(normal, None, n_classes=0, **settings)
    if out_dir is not None:
        classes = [d for d in range(N_CLASSES) if d != holdout]
        write_json(
            Path(out_dir) / HOLDOUT_FILE, {"holdout": holdout, "classes": classes, "n_train": len(normal)}
        )
    return gan, history


# ---------------------------------------------------------------------- latent inversion


def start_latent(n: int, noise_dim: int, seed: int) -> np.ndarray:
    """Starting vectors ``z_0`` float32 ``(n, noise_dim)`` ~ N(0, I), drawn by NumPy with ``seed``."""
    return sample_latent(n, noise_dim, seed=seed)


@dataclass(frozen=True)
class Inversion:
    """What :func:`invert` found, per image: ``z`` ``(N, noise_dim)``, ``reconstructions`` ``G(z)``
    ``(N, 28, 28)`` in [0, 1], ``scores`` (the final objective, AnoGAN's anomaly score), its two terms
    ``residual`` and ``discrimination``, and ``objective``, the mean objective over the images before
    each step and after the last (``steps + 1`` values)."""

    z: np.ndarray
    reconstructions: np.ndarray
    scores: np.ndarray
    residual: np.ndarray
    discrimination: np.ndarray
    objective: np.ndarray


def gather(parts: list[dict[str, np.ndarray]], counts: list[int]) -> Inversion:
    """One :class:`Inversion` from per-batch results (each with ``z``, ``reconstructions``,
    ``residual``, ``discrimination``, ``objective`` and ``history``, the batch's per-step mean)."""
    join = {
        key: np.concatenate([p[key] for p in parts]).astype(np.float32)
        for key in parts[0]
        if key != "history"
    }
    weights = np.asarray(counts, np.float64) / sum(counts)
    history = sum(w * np.asarray(p["history"], np.float64) for w, p in zip(weights, parts, strict=True))
    return Inversion(
        z=join["z"],
        reconstructions=join["reconstructions"],
        scores=join["objective"],
        residual=join["residual"],
        discrimination=join["discrimination"],
        objective=np.asarray(history, np.float32),
    )


# ---------------------------------------------------------------------- baselines and the table


def nearest_neighbour_score(test: object, train: object, chunk: int = NN_CHUNK) -> np.ndarray:
    """Euclidean distance float32 ``(N,)`` from each test image to its nearest training image (pixels
    in [0, 1]); ``chunk`` test images at a time, so memory stays at ``chunk x len(train)`` floats."""
    check_positive("chunk", chunk, integer=True)
    a = flat_images(test, "test").astype(np.float64)
    b = flat_images(train, "train").astype(np.float64)
    b_sq = (b**2).sum(axis=1)
    out = np.empty(len(a), np.float64)
    for i in range(0, len(a), int(chunk)):
        block = a[i : i + int(chunk)]
        d2 = (block**2).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * block @ b.T
        out[i : i + len(block)] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))  # rounding can dip below 0
    return out.astype(np.float32)


def autoencoder_inputs(images: object, seed: object) -> np.ndarray:
    """``autoencoder_score``'s test images as ``(N, 784)``, after checking them and ``seed``."""
    loop.check_seed(seed)
    return flat_images(images, "images")


def autoencoder_training_images(normal_images: object) -> np.ndarray:
    """The normal digits an autoencoder trains on, as ``(M, 784)``; needed when no trained model is given."""
    if normal_images is None:
        raise InputError(
            "autoencoder_score needs normal_images (digits without the held-out class) to train on, or a "
            "trained model="
        )
    return flat_images(normal_images, "normal_images")


def reconstruction_error(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Mean squared error per image ``(N,)`` between flat images and their reconstructions."""
    return np.mean(
        (np.asarray(images, np.float64) - np.asarray(reconstructions, np.float64)) ** 2, axis=1
    ).astype(np.float32)


def anomaly_table(scores: Mapping[str, ArrayLike], labels: object, holdout: int) -> dict[str, float]:
    """ROC AUC of each score (higher = more anomalous) at telling test digits of class ``holdout``
    (the anomalies) from the others: ``{name: auc}``, in the order given. ``scores`` maps names such
    as :data:`SCORE_NAMES` to one score per test image; ``labels`` are the test digits."""
    holdout = check_holdout(holdout)
    if not scores:
        raise InputError(
            "scores is empty; pass {name: one score per test image}, e.g. {'anogan': result.scores}"
        )
    lengths = {len(np.asarray(s)) if np.ndim(s) else -1 for s in scores.values()}
    if len(lengths) != 1:
        raise InputError("every score needs one value per test image; the scores have different lengths")
    y = check_digit_labels(labels, lengths.pop())
    return {name: roc_auc(s, y == holdout) for name, s in scores.items()}
