"""A small digit classifier that tells which digits a generator draws (the GAN and DCGAN chapters).

An MLP, 784 -> 128 (ReLU) -> 10, trained once with scikit-learn on ``load_mnist("train")``
(the 4,000-image subset offline, the first 20,000 official images otherwise) and cached as a
plain ``.npz`` of NumPy arrays (no pickle) under ``companion.data.default_cache_dir().parent /
"classifier"`` (``$COMPANION_CLASSIFIER_DIR`` or ``cache_dir=`` override it). The file carries a
SHA-256 of its own contents: a damaged cache is moved aside and the classifier is retrained.

Inference is NumPy only, so both frameworks' generators are measured by the same judge:
:meth:`DigitClassifier.predict`, :meth:`~DigitClassifier.predict_proba` and
:meth:`~DigitClassifier.features` (the 128 hidden activations, for a Frechet distance) take any
MNIST layout -- (N, 784), (N, 28, 28), (N, 28, 28, 1) or (N, 1, 28, 28) -- with values in [0, 1].
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.data import default_cache_dir, default_source, load_mnist
from companion.plots import to_hw
from companion.training.atomic_files import atomic_path
from companion.validation import check_images

CLASSIFIER_ENV = "COMPANION_CLASSIFIER_DIR"
HIDDEN, CLASSES = 128, 10
OFFICIAL_TRAIN_LIMIT = 20_000  # enough for ~97% test accuracy and still quick to train
FORMAT = "digit-mlp-v1"
_ARRAYS = ("w1", "b1", "w2", "b2")


def default_classifier_dir() -> Path:
    """``$COMPANION_CLASSIFIER_DIR`` or the ``classifier`` folder beside the MNIST cache."""
    env = os.environ.get(CLASSIFIER_ENV)
    return Path(env).expanduser() if env else default_cache_dir().parent / "classifier"


@dataclass
class DigitClassifier:
    """Weights of the 784 -> 128 -> 10 MLP plus what it was trained on and how well it does.

    ``w1`` (784, 128), ``b1`` (128,), ``w2`` (128, 10), ``b2`` (10,); ``test_accuracy`` is the
    fraction of the matching ``load_mnist("test")`` split classified correctly.
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    test_accuracy: float
    source: str
    n_train: int
    from_cache: bool = False

    def features(self, images: np.ndarray) -> np.ndarray:
        """Hidden ReLU activations, float64 (N, 128): an embedding for a Frechet distance."""
        return np.maximum(_flat(images) @ self.w1 + self.b1, 0.0)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10), rows summing to 1."""
        logits = self.features(images) @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Most likely digit for each image, int64 (N,)."""
        return np.argmax(self.predict_proba(images), axis=1).astype(np.int64)

    def confident_share(self, images: np.ndarray, confidence: float = 0.9) -> float:
        """Fraction of ``images`` whose most likely digit has probability >= ``confidence``: the
        "readable" share the chapters quote instead of judging samples by eye."""
        return float(np.mean(self.predict_proba(images).max(axis=1) >= confidence))

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of ``images`` whose predicted digit equals ``labels``."""
        return float(np.mean(self.predict(images) == np.asarray(labels)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (no pickle) atomically, with a SHA-256 of the contents inside."""
        arrays = self._arrays()
        arrays["sha256"] = np.array(_digest(arrays))
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DigitClassifier:
        """Read a file written by :meth:`save`; ``ValueError`` if it is damaged or not ours."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"unreadable classifier cache {path}: {err}") from err
        stored = str(arrays.pop("sha256", ""))
        if stored != _digest(arrays):
            raise ValueError(f"classifier cache {path} fails its SHA-256 check (damaged or edited)")
        if str(arrays.get("format")) != FORMAT:
            raise ValueError(
                f"classifier cache {path} has format {arrays.get('format')!r}, expected {FORMAT!r}"
            )
        shapes = {"w1": (784, HIDDEN), "b1": (HIDDEN,), "w2": (HIDDEN, CLASSES), "b2": (CLASSES,)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise ValueError(
                    f"classifier cache {path}: {name} has shape {arrays[name].shape}, expected {shape}"
                )
        return cls(  # type: ignore[misc]
            *(arrays[k].astype(np.float64) for k in _ARRAYS),
            test_accuracy=float(arrays["test_accuracy"]),
            source=str(arrays["source"]),
            n_train=int(arrays["n_train"]),
            from_cache=True,
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(getattr(self, k), np.float64) for k in _ARRAYS}
        arrays.update(
            test_accuracy=np.array(self.test_accuracy),
            source=np.array(self.source),
            n_train=np.array(self.n_train),
            format=np.array(FORMAT),
        )
        return arrays


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _flat(images: np.ndarray) -> np.ndarray:
    """Any MNIST layout in [0, 1] -> float64 (N, 784)."""
    hw = to_hw(check_images(images, name="images"))
    if hw.shape[1:] != (28, 28):
        raise ValueError(f"images must be 28x28 digits, got {hw.shape[1:]}")
    return hw.reshape(len(hw), 784).astype(np.float64)


def train_classifier(
    source: str | None = None, *, limit: int | None = None, seed: int = 0, verbose: bool = True
) -> DigitClassifier:
    """Train the MLP with scikit-learn (Adam, 20 passes) on ``load_mnist("train")`` and score it on the test split.

    ``limit`` defaults to all 4,000 subset images, or the first 20,000 official ones.
    Takes a few seconds on two CPU cores (about 5 s for the subset).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    source = default_source() if source is None else source
    if limit is None and source != "subset":
        limit = OFFICIAL_TRAIN_LIMIT
    x, y = load_mnist("train", source=source, limit=limit, verbose=False)  # type: ignore[arg-type]
    x_test, y_test = load_mnist("test", source=source, verbose=False)  # type: ignore[arg-type]
    start = time.perf_counter()
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), alpha=1e-3, batch_size=100, max_iter=20, random_state=seed, tol=0.0
    )
    # Small matrices: one BLAS thread beats several competing for a busy CPU (often 5x faster).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 passes on purpose, not to convergence
        mlp.fit(x, y)
    w1, w2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    clf = DigitClassifier(w1, b1, w2, b2, test_accuracy=0.0, source=source, n_train=len(y))
    clf.test_accuracy = clf.accuracy(x_test, y_test)
    if verbose:
        print(
            f"Digit classifier trained on {len(y):,} {source} images in {time.perf_counter() - start:.1f} s; "
            f"test accuracy {clf.test_accuracy:.3f} on {len(y_test):,} held-out images"
        )
    return clf


def cache_path(cache_dir: str | os.PathLike | None = None, source: str | None = None, seed: int = 0) -> Path:
    """Where the classifier for ``source`` and ``seed`` is cached."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_classifier_dir()
    source = default_source() if source is None else source
    return folder / f"{FORMAT}-{source}-seed{seed}.npz"


def load_classifier(
    cache_dir: str | os.PathLike | None = None,
    *,
    source: str | None = None,
    seed: int = 0,
    retrain: bool = False,
    verbose: bool = True,
) -> DigitClassifier:
    """The cached classifier, trained and cached first if missing, damaged or ``retrain=True``.

    A damaged file is renamed to ``*.corrupt`` (kept for inspection) before retraining.
    """
    source = default_source() if source is None else source
    path = cache_path(cache_dir, source, seed)
    if path.exists() and not retrain:
        try:
            clf = DigitClassifier.load(path)
            if verbose:
                print(
                    f"Digit classifier loaded from cache ({clf.source} data); test accuracy {clf.test_accuracy:.3f}"
                )
            return clf
        except ValueError as err:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            print(f"{err}; moved it to {aside.name} and retraining")
    clf = train_classifier(source, seed=seed, verbose=verbose)
    clf.save(path)
    return clf


_DEFAULT: DigitClassifier | None = None


def default_classifier() -> DigitClassifier:
    """The classifier the module-level functions use: loaded (or trained) once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_classifier()
    return _DEFAULT


def predict(images: np.ndarray) -> np.ndarray:
    """Predicted digits (N,) from :func:`default_classifier`."""
    return default_classifier().predict(images)


def predict_proba(images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 10) from :func:`default_classifier`."""
    return default_classifier().predict_proba(images)


def features(images: np.ndarray) -> np.ndarray:
    """Hidden-layer features (N, 128) from :func:`default_classifier`."""
    return default_classifier().features(images)
