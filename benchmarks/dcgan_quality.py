"""Sample quality of trained DCGANs: Frechet distance on the digit classifier's features, and digit coverage.

    python benchmarks/dcgan_quality.py --tensorflow runs/dcgan/tensorflow --torch runs/dcgan/torch
    python benchmarks/dcgan_quality.py --torch RUN --mnist-dir DIR   # DIR holds t10k-*-idx*-ubyte.gz

For every run folder given (written by ``python -m companion train dcgan`` or by the DCGAN chapter), 5,000
samples are drawn and compared with the reference set: the official 10,000-image MNIST test set when
``--mnist-dir`` holds it, else the 1,000 held-out images of the offline subset. The floor is the same
measurement for real training digits (the 5,000 images of the offline subset, which all come from the
MNIST training set, when the official test set is the reference; the subset's 4,000 training images
otherwise): a generator cannot be expected to beat it.

Columns: ``FD`` Frechet distance between Gaussians fitted to the 128 hidden features of
``companion.evaluation.classifier`` (lower is better); ``min/max share`` the rarest and commonest predicted digit
(0.100 each for a perfectly balanced set); ``classes >= 5%`` how many digits get at least 5% of the
samples; ``confidence`` the classifier's mean top probability (blurry or malformed digits lower it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np

from companion.data import load_mnist
from companion.evaluation import classifier, metrics
from companion.noise import sample_latent


def reference_set(mnist_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """``(reference, real_training_digits, reference_name, floor_name)``, images (N, 28, 28) in [0, 1]."""
    if mnist_dir is not None:
        test, _ = load_mnist(
            "test", layout="hw", source="auto", cache_dir=mnist_dir, download=False, verbose=False
        )
        train, _ = load_mnist("train", layout="hw", source="subset", verbose=False)
        held, _ = load_mnist("test", layout="hw", source="subset", verbose=False)
        real = np.concatenate([train, held])
        return test, real, f"official MNIST test set ({len(test):,})", f"real training digits ({len(real):,})"
    test, _ = load_mnist("test", layout="hw", source="subset", verbose=False)
    real, _ = load_mnist("train", layout="hw", source="subset", verbose=False)
    return test, real, f"subset test split ({len(test):,})", f"subset training digits ({len(real):,})"


def scores(judge: classifier.DigitClassifier, images: np.ndarray, reference_features: np.ndarray) -> dict:
    share = metrics.class_coverage(judge.predict(images))
    return {
        "fd": metrics.frechet_distance(judge.features(images), reference_features),
        "min": float(share.min()),
        "max": float(share.max()),
        "classes": int((share >= 0.05).sum()),
        "confidence": float(judge.predict_proba(images).max(axis=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tensorflow", type=Path, metavar="DIR", help="TensorFlow run folder")
    parser.add_argument("--torch", type=Path, metavar="DIR", help="PyTorch run folder")
    parser.add_argument("--n", type=int, default=5000, help="samples per generator (default: 5000)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the latent noise")
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        help="folder with the official t10k-*-idx*-ubyte.gz files (else: the subset)",
    )
    args = parser.parse_args()
    runs = {name: getattr(args, name) for name in ("tensorflow", "torch") if getattr(args, name) is not None}
    if args.mnist_dir is not None and not (args.mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        print(f"{args.mnist_dir} holds no t10k-images-idx3-ubyte.gz; using the subset test split instead")
        args.mnist_dir = None

    judge = classifier.load_classifier(verbose=False)
    reference, real, reference_name, floor_name = reference_set(args.mnist_dir)
    reference_features = judge.features(reference)
    print(f"judge: digit classifier ({judge.source} data, test accuracy {judge.test_accuracy:.3f})")
    print(f"reference: {reference_name}; samples per generator: {args.n:,}\n")

    rows = {floor_name: scores(judge, real, reference_features)}
    for framework, folder in runs.items():
        if framework == "tensorflow":
            import companion.tensorflow  # noqa: F401 - Keras backend and quiet start-up
        dcgan = importlib.import_module(f"companion.{framework}.dcgan")
        gan = dcgan.load(folder)
        history = json.loads((folder / "history.json").read_text())
        steps = int(sum(history["steps"]))
        began = time.perf_counter()
        images = gan.generate(sample_latent(args.n, gan.noise_dim, seed=args.seed))
        rows[f"{framework} DCGAN ({len(history['g_loss'])} epochs, {steps:,} steps)"] = scores(
            judge, images, reference_features
        )
        print(f"{framework}: {args.n:,} samples in {time.perf_counter() - began:.1f} s from {folder}")

    width = max(len(name) for name in rows)
    print(f"\n{'':<{width}} | {'FD':>7} | {'min/max share':>13} | {'classes >= 5%':>13} | {'confidence':>10}")
    print(f"{'-' * width}-+-{'-' * 7}-+-{'-' * 13}-+-{'-' * 13}-+-{'-' * 10}")
    for name, s in rows.items():
        print(
            f"{name:<{width}} | {s['fd']:7.2f} | {s['min']:.3f}/{s['max']:.3f} | {s['classes']:>13} | "
            f"{s['confidence']:10.3f}"
        )


if __name__ == "__main__":
    main()
