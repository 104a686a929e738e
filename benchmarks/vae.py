"""The VAE chapter's comparison: four generative models of MNIST scored on the same held-out digits.

    COMPANION_DATA=subset python benchmarks/vae.py --framework torch      # offline: the subset's test split
    python benchmarks/vae.py --framework torch --mnist-dir DIR            # the official 10k test set in DIR
    python benchmarks/vae.py --framework torch --runs runs/vae-benchmark  # train into (or load from) run folders

Models, each with the chapter's recipe (``companion.recipes``):

* chapter 1's Gaussian mixture (40 components, full covariances) in a 30-d PCA space;
* chapter 2's dense 784-32-784 autoencoder, sampled by decoding codes drawn from a Gaussian fitted to
  the codes of its training images (a plain autoencoder has no prior of its own);
* the dense VAE with a 16-d code (``VAE_RECIPE``) and the conditional VAE (``CVAE_RECIPE``).

Columns: ``ELBO`` the held-out evidence lower bound (one draw of eps per image) and ``IWAE-100`` the
importance-weighted bound with k = 100, both in nats per image and defined only for the VAEs (a
lower bound on log p(x); the conditional VAE's bounds are on log p(x | y), given the true label);
``FD`` the Frechet distance between Gaussians fitted to the digit classifier's 128 hidden features of
samples and of the held-out digits (lower is better); ``classes >= 5%`` how many digits get at least 5%
of the samples and ``min/max`` the rarest and commonest digit's share (0.100 each when balanced);
``confident`` the share of samples the classifier reads with probability >= 0.9; ``label`` (conditional
VAE) the share read as the digit asked for. The first row scores real training digits: no model of
these data can be expected to beat it. The mixture's log-density is a continuous density over pixel
values, not a probability of binary pixels, so it is printed below the table rather than beside the
VAEs' bounds.

Training uses the training split of ``--train-source`` (default: the 4,000-image subset), minus 500
validation images for the networks.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

import numpy as np

import companion
from companion import recipes
from companion.density import PcaGaussianMixture
from companion.evaluation import classifier, metrics
from companion.settings import set_threads

SEED = 0
N_VAL = 500
IWAE_K = 100


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    x, y = companion.load_mnist("train", source=args.train_source, verbose=False)
    if args.mnist_dir is not None:
        test, test_y = companion.load_mnist(
            "test", source="auto", cache_dir=args.mnist_dir, download=False, verbose=False
        )
        name = f"official MNIST test set ({len(test):,})"
    else:
        test, test_y = companion.load_mnist("test", source=args.train_source, verbose=False)
        name = f"{args.train_source} test split ({len(test):,})"
    return {
        "train": x[:-N_VAL],
        "train_y": y[:-N_VAL],
        "val": x[-N_VAL:],
        "val_y": y[-N_VAL:],
        "all_train": x,
        "test": test,
        "test_y": test_y,
        "test_name": name,
    }


def sample_scores(judge, images: np.ndarray, reference: np.ndarray, asked: np.ndarray | None = None) -> dict:
    predicted = judge.predict(images)
    share = metrics.class_coverage(predicted)
    return {
        "fd": metrics.frechet_distance(judge.features(images), reference),
        "classes": int((share >= 0.05).sum()),
        "min": float(share.min()),
        "max": float(share.max()),
        "confident": judge.confident_share(images),
        "label": None if asked is None else float(np.mean(predicted == asked)),
    }


def _folder(args: argparse.Namespace, name: str, framework: str) -> Path | None:
    return None if args.runs is None else args.runs / f"{name}-{framework}"


def autoencoder_samples(
    framework: str, data: dict, n: int, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """Samples of chapter 2's dense autoencoder with a Gaussian fitted to its training codes; s/epoch."""
    ae = importlib.import_module(f"companion.{framework}.autoencoders")
    recipe = recipes.AUTOENCODER_RECIPE
    companion.seed_everything(SEED)
    model = ae.build_autoencoder("dense", recipes.AUTOENCODER_CODE_SIZE)
    history = ae.fit_autoencoder(
        model,
        data["train"],
        data["val"],
        epochs=recipe.epochs_for(len(data["all_train"])),  # as the command line counts them
        batch_size=recipe.batch_size,
        learning_rate=recipe.lr,
        seed=SEED,
        out_dir=_folder(args, "autoencoder", framework),
        log_every=0,
    )
    codes = ae.encode(model, data["train"]).astype(np.float64)
    mean, cov = codes.mean(axis=0), np.cov(codes, rowvar=False) + 1e-6 * np.eye(codes.shape[1])
    z = np.random.default_rng(args.seed).multivariate_normal(mean, cov, size=n).astype(np.float32)
    return ae.decode(model, z), float(np.median(history["seconds"]))


def train_vae(framework: str, data: dict, conditional: bool, args: argparse.Namespace):
    """The chapter's VAE or conditional VAE, trained (or resumed, or loaded) with its recipe; s/epoch."""
    vae = importlib.import_module(f"companion.{framework}.vae")
    recipe = recipes.CVAE_RECIPE if conditional else recipes.VAE_RECIPE
    companion.seed_everything(SEED)
    model = vae.build_vae("dense", recipes.VAE_LATENT_SIZE, 10 if conditional else 0)
    labels = (data["train_y"], data["val_y"]) if conditional else (None, None)
    history = vae.fit_vae(
        model,
        data["train"],
        data["val"],
        *labels,
        epochs=recipe.epochs_for(len(data["all_train"])),  # as the command line counts them
        batch_size=recipe.batch_size,
        learning_rate=recipe.lr,
        seed=SEED,
        out_dir=_folder(args, "cvae" if conditional else "vae", framework),
        log_every=0,
    )
    return vae, model, float(np.median(history["seconds"]))


def vae_row(framework: str, data: dict, conditional: bool, judge, reference, args) -> dict:
    vae, model, seconds = train_vae(framework, data, conditional, args)
    test, n = data["test"], args.n
    labels = data["test_y"] if conditional else None
    eps = np.random.default_rng(args.seed).standard_normal((len(test), model.latent_size), dtype=np.float32)
    began = time.perf_counter()
    terms = vae.elbo_terms(model, test, eps, labels)
    iwae = vae.iwae_bound(model, test, IWAE_K, labels, seed=args.seed)
    asked = np.arange(n) % 10 if conditional else None
    scores = sample_scores(judge, vae.sample(model, n, asked, seed=args.seed), reference, asked)
    scores.update(elbo=terms["elbo"], iwae=iwae, kl=terms["kl"], s_per_epoch=seconds)
    scores["scoring_seconds"] = time.perf_counter() - began
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--framework", nargs="+", choices=["tensorflow", "torch"], default=["torch"], help="default: torch"
    )
    parser.add_argument("--mnist-dir", type=Path, help="folder with the official t10k-*-idx*-ubyte.gz files")
    parser.add_argument("--train-source", choices=["subset", "auto"], default="subset")
    parser.add_argument(
        "--runs", type=Path, metavar="DIR", help="train into (or load from) run folders in DIR"
    )
    parser.add_argument("--n", type=int, default=5000, help="samples per model (default: 5000)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the samples and of eps")
    parser.add_argument(
        "--threads", type=int, help="CPU threads per framework (default: theirs); 1 helps on a busy machine"
    )
    args = parser.parse_args()
    if args.mnist_dir is not None and not (args.mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        print(f"{args.mnist_dir} holds no t10k-images-idx3-ubyte.gz; using the subset test split instead")
        args.mnist_dir = None
    if args.threads:
        set_threads(args.threads, args.framework)
    data = load_data(args)
    judge = classifier.load_classifier(verbose=False)
    reference = judge.features(data["test"])
    print(f"train {len(data['train']):,} (+ {N_VAL} validation) | held out: {data['test_name']}")
    print(
        f"judge: digit classifier ({judge.source} data, test accuracy {judge.test_accuracy:.3f}); {args.n:,} samples per model\n"
    )

    rows: dict[str, dict] = {}
    rows[f"real training digits ({len(data['all_train']):,})"] = sample_scores(
        judge, data["all_train"], reference
    )
    began = time.perf_counter()
    mixture = PcaGaussianMixture(n_pca=30, n_mixture=40, seed=SEED).fit(data["all_train"])
    rows["Gaussian mixture, 30-d PCA (ch. 1)"] = sample_scores(
        judge, mixture.sample(args.n, seed=args.seed), reference
    )
    mixture_seconds = time.perf_counter() - began
    timings = {"Gaussian mixture (fit + sample)": f"{mixture_seconds:.1f} s"}
    for framework in args.framework:
        if framework == "tensorflow":
            import companion.tensorflow  # noqa: F401 - Keras on TensorFlow, quiet start-up
        samples, seconds = autoencoder_samples(framework, data, args.n, args)
        rows[f"autoencoder + fitted Gaussian, {framework}"] = sample_scores(judge, samples, reference)
        timings[f"autoencoder, {framework}"] = f"{seconds:.2f} s/epoch"
        for conditional in (False, True):
            name = f"{'conditional VAE' if conditional else 'VAE'}, {framework}"
            rows[name] = vae_row(framework, data, conditional, judge, reference, args)
            timings[name] = (
                f"{rows[name]['s_per_epoch']:.2f} s/epoch, scored in {rows[name]['scoring_seconds']:.0f} s"
            )

    width = max(len(name) for name in rows)
    header = f"{'':<{width}} | {'ELBO':>8} | {'IWAE-100':>8} | {'FD':>6} | {'classes >= 5%':>13} | {'min/max':>11} | {'confident':>9} | {'label':>6}"
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        elbo = f"{r['elbo']:8.1f}" if "elbo" in r else f"{'-':>8}"
        iwae = f"{r['iwae']:8.1f}" if "iwae" in r else f"{'-':>8}"
        label = f"{r['label']:6.1%}" if r["label"] is not None else f"{'-':>6}"
        print(
            f"{name:<{width}} | {elbo} | {iwae} | {r['fd']:6.2f} | {r['classes']:>13} | "
            f"{r['min']:.3f}/{r['max']:.3f} | {r['confident']:9.1%} | {label}"
        )
    print(
        f"\nELBO and IWAE in nats per image on the {len(data['test']):,} held-out digits (conditional VAE: "
        "given the true label); the Gaussian mixture's log-density there is "
        f"{mixture.log_likelihood(data['test'].reshape(len(data['test']), -1)):.1f} nats per image, a density "
        "over continuous pixel values that cannot be compared with the VAEs' Bernoulli bounds."
    )
    recipe_lines = {
        "autoencoder": recipes.AUTOENCODER_RECIPE,
        "VAE": recipes.VAE_RECIPE,
        "conditional VAE": recipes.CVAE_RECIPE,
    }
    for name, recipe in recipe_lines.items():
        epochs = recipe.epochs_for(len(data["all_train"]))
        print(f"{name}: batch {recipe.batch_size}, Adam {recipe.lr:g}, {epochs} epochs")
    print("timings: " + "; ".join(f"{k} {v}" for k, v in timings.items()))


if __name__ == "__main__":
    main()
