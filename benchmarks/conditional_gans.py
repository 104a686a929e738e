"""The Conditional GANs chapter's three tables, on held-out digits: conditional accuracy, pix2pix, super-resolution.

    COMPANION_DATA=subset python benchmarks/conditional_gans.py --framework torch   # offline: the subset's test split
    python benchmarks/conditional_gans.py --framework torch --mnist-dir DIR         # the official 10k test set in DIR
    python benchmarks/conditional_gans.py --framework torch --runs runs/ch8         # train into (or load from) run folders
    python benchmarks/conditional_gans.py --framework torch --dry-run               # a smoke test: a few steps each

Every model is trained with the chapter's recipe (``companion.recipes``: ``CGAN_RECIPE``,
``PIX2PIX_RECIPE``, ``SRGAN_RECIPE``; batches of 64, Adam 2e-4 / 0.5) on the training split of
``--train-source`` (default: the 4,000-image subset) and scored on the held-out digits:

1. **Conditional accuracy.** The conditional GAN and its unconditional twin (the same networks
   without the label inputs, the same steps): ``--n`` samples each, the digits 0-9 asked for in
   equal numbers. ``label`` is the share the digit classifier reads as the digit asked for (per digit
   below the table); ``FD`` the Frechet distance to the held-out digits in the classifier's 128
   features; ``confident`` the share read with probability >= 0.9.
2. **pix2pix** (the digit with rows 14-27 blanked -> the digit): the input itself, the L1-only U-Net
   and pix2pix (L1 + PatchGAN, lambda 100). ``L1`` mean absolute pixel error to the true digits,
   ``FD`` to the true digits, ``label kept`` the share read as the true digit, ``grey`` the share of
   inked pixels (> 0.1) that are not solid (< 0.9): real digits are mostly solid, blur is grey.
3. **Super-resolution** (7x7 -> 28x28): bicubic interpolation, the CNN trained on MSE and the same
   CNN with the adversarial loss (weight 0.01). ``PSNR`` in dB (distortion: higher is closer pixel by
   pixel) against ``FD``, ``accuracy`` and ``grey`` (perception): the perception-distortion trade-off.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path
from types import ModuleType

import companion
from companion import recipes
from companion.evaluation import classifier, metrics
from companion.image_pairs import make_pairs
from companion.resampling import bicubic_upsample, downsample
from companion.settings import set_threads
from companion.training import cgan_task, pix2pix_task, srgan_task

SEED = 0
DRY_RUN_STEPS = 2


def side(framework: str, name: str) -> ModuleType:
    return importlib.import_module(f"companion.{framework}.{name}")


def settings(recipe: recipes.Recipe, n_train: int, args: argparse.Namespace, run: str) -> dict:
    """The recipe's settings for ``n_train`` images, a run folder under ``--runs`` and the dry-run cap."""
    chosen = {
        "epochs": 1 if args.dry_run else recipe.epochs_for(n_train),
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "beta1": recipe.beta1,
        "seed": SEED,
        "log_every": 0,
        "steps_per_epoch": DRY_RUN_STEPS if args.dry_run else None,
    }
    if args.runs is not None:
        chosen["out_dir"] = args.runs / run
    return chosen


def timed(train, *data, **kwargs):
    began = time.perf_counter()
    model, history = train(*data, **kwargs)
    return model, int(sum(history["steps"])), time.perf_counter() - began


def conditional_table(framework: str, x, y, test, judge, reference, args) -> None:
    module = side(framework, "cgan")
    requested = cgan_task.label_grid(args.n // 10)
    z = companion.sample_latent(len(requested), cgan_task.NOISE_DIM, seed=args.seed)
    print(f"{'1. conditional accuracy, ' + framework:40s} | steps |  label |     FD | confident | seconds")
    per_digit = None
    for n_classes in (10, 0):
        name = "conditional GAN" if n_classes else "unconditional twin"
        run = f"cgan-{framework}" if n_classes else f"cgan-twin-{framework}"
        chosen = settings(recipes.CGAN_RECIPE, len(x), args, run)
        gan, steps, seconds = timed(module.train, x, y, n_classes=n_classes, **chosen)
        images = module.generate(gan.generator, z, requested if n_classes else None)
        fd = metrics.frechet_distance(judge.features(images), reference)
        label = "     -"
        if n_classes:
            agreement = cgan_task.label_agreement(judge.predict_proba(images), requested)
            label, per_digit = f"{agreement.overall:6.3f}", agreement.per_class
        print(
            f"{name:40s} | {steps:5d} | {label} | {fd:6.2f} | {judge.confident_share(images):9.3f} | {seconds:7.0f}"
        )
    assert per_digit is not None
    print("label per digit: " + " ".join(f"{d}:{v:.2f}" for d, v in enumerate(per_digit)) + "\n")


def pix2pix_table(framework: str, x, test, test_y, judge, args) -> None:
    module = side(framework, "pix2pix")
    inputs, targets = make_pairs(x, recipes.PIX2PIX_TASK)
    test_inputs, test_targets = make_pairs(test, recipes.PIX2PIX_TASK)
    print(f"{'2. pix2pix, ' + framework:40s} | steps |    L1 |     FD | label kept |  grey | seconds")

    def row(name: str, outputs, steps: str, seconds: str) -> None:
        s = pix2pix_task.translation_scores(outputs, test_targets, test_y, judge)
        print(
            f"{name:40s} | {steps:>5} | {s['l1']:5.3f} | {max(s['fd'], 0.0):6.2f} | {s['label_match']:10.3f} | "
            f"{s['grey_share']:5.2f} | {seconds:>7}"
        )

    row("true digits", test_targets, "-", "-")
    row("input (lower half blanked)", test_inputs, "-", "-")
    for adversarial in (False, True):
        name = "pix2pix (L1 + GAN)" if adversarial else "U-Net, L1 only"
        run = f"pix2pix-{framework}" if adversarial else f"pix2pix-l1-{framework}"
        chosen = settings(recipes.PIX2PIX_RECIPE, len(x), args, run)
        model, steps, seconds = timed(
            module.train, inputs, targets, adversarial=adversarial, task=recipes.PIX2PIX_TASK, **chosen
        )
        row(name, module.translate(model.generator, test_inputs), str(steps), f"{seconds:.0f}")
    print()


def super_resolution_table(framework: str, x, test, test_y, judge, args) -> None:
    module = side(framework, "srgan")
    factor = recipes.SRGAN_FACTOR
    low, test_low = downsample(x, factor), downsample(test, factor)
    size = 28 // factor
    print(
        f"{f'3. super-resolution {size}x{size} -> 28x28, ' + framework:40s} | steps | PSNR dB |     FD | accuracy |  grey | seconds"
    )

    def row(name: str, outputs, steps: str, seconds: str) -> None:
        s = srgan_task.resolution_scores(outputs, test, test_y, judge)
        print(
            f"{name:40s} | {steps:>5} | {s['psnr']:7.2f} | {max(s['fd'], 0.0):6.2f} | {s['accuracy']:8.3f} | "
            f"{s['grey_share']:5.2f} | {seconds:>7}"
        )

    row("bicubic", bicubic_upsample(test_low, factor), "-", "-")
    for weight in (0.0, srgan_task.ADVERSARIAL_WEIGHT):
        name = f"CNN, MSE + {weight:g} x GAN" if weight else "CNN, MSE only"
        run = f"srgan-{framework}" if weight else f"sr-mse-{framework}"
        chosen = settings(recipes.SRGAN_RECIPE, len(x), args, run)
        model, steps, seconds = timed(
            module.train, low, x, factor=factor, adversarial_weight=weight, **chosen
        )
        row(name, module.upscale(model.generator, test_low), str(steps), f"{seconds:.0f}")
    print()


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
    parser.add_argument(
        "--n", type=int, default=5000, help="cGAN samples per model, a multiple of 10 (default: 5000)"
    )
    parser.add_argument("--seed", type=int, default=123, help="seed of the cGAN's sample noise")
    parser.add_argument("--threads", type=int, help="CPU threads per framework (default: theirs)")
    parser.add_argument(
        "--dry-run", action="store_true", help=f"{DRY_RUN_STEPS} steps per model: a smoke test"
    )
    args = parser.parse_args()
    os.environ.setdefault("COMPANION_PROGRESS", "0")  # one line per table row, no progress bars
    if args.n < 10 or args.n % 10:
        parser.error(
            f"--n must be a positive multiple of 10 (the digits 0-9 asked for equally), got {args.n}"
        )
    if args.mnist_dir is not None and not (args.mnist_dir / "t10k-images-idx3-ubyte.gz").exists():
        print(f"{args.mnist_dir} holds no t10k-images-idx3-ubyte.gz; using the subset test split instead")
        args.mnist_dir = None
    if args.threads:
        set_threads(args.threads, args.framework)
    x, y = companion.load_mnist("train", layout="hw", source=args.train_source, verbose=False)
    if args.mnist_dir is not None:
        test, test_y = companion.load_mnist(
            "test", layout="hw", source="auto", cache_dir=args.mnist_dir, download=False, verbose=False
        )
        test_name = f"official MNIST test set ({len(test):,})"
    else:
        test, test_y = companion.load_mnist("test", layout="hw", source=args.train_source, verbose=False)
        test_name = f"{args.train_source} test split ({len(test):,})"
    judge = classifier.load_classifier(verbose=False)
    reference = judge.features(test)
    print(
        f"train {len(x):,} ({args.train_source}) | held out: {test_name} | judge: digit classifier "
        f"({judge.source} data, test accuracy {judge.test_accuracy:.3f})"
    )
    floor = metrics.frechet_distance(judge.features(x[: args.n]), reference)
    print(f"FD floor, {min(args.n, len(x)):,} real training digits vs the held-out digits: {floor:.2f}\n")
    for framework in args.framework:
        if framework == "tensorflow":
            importlib.import_module("companion.tensorflow")  # Keras on TensorFlow, quiet start-up
        conditional_table(framework, x, y, test, judge, reference, args)
        pix2pix_table(framework, x, test, test_y, judge, args)
        super_resolution_table(framework, x, test, test_y, judge, args)


if __name__ == "__main__":
    main()
