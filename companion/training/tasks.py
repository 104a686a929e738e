"""What each family of models trains on, written once for both frameworks.

A framework module (``companion.{tensorflow,torch}.{autoencoders,gan,dcgan}``) builds its models
and a :class:`~companion.training.loop.Trainer` around its train step, and calls the function here
for its family: the argument checks, the run settings stored in ``run.json``, the per-step inputs
(noise, corrupted images), what is kept per epoch (validation loss, sample frames) and the run
folder's outputs all live here, so the two frameworks cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from companion.noise import add_gaussian_noise, sample_latent
from companion.training import loop
from companion.training.guards import discriminator_won, finite_losses
from companion.training.run_folder import (
    RUN_FILE,
    RunFolder,
    RunFolderError,
    SettingsMismatch,
    checkpoint_folder,
    latest_epoch,
    python_name,
    read_run_file,
    saved_run,
)
from companion.validation import InputError, check_images, check_positive

History = loop.History
Noise = float | Callable[[np.ndarray, np.random.Generator], np.ndarray] | None


def _open(out_dir: str | os.PathLike | None, config: dict, overwrite: bool) -> RunFolder | None:
    if out_dir is None:
        if overwrite:
            raise InputError("overwrite=True needs out_dir, the run folder to start again in")
        return None
    return RunFolder(out_dir, config, overwrite=overwrite)


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def fit_in_run_folder(
    trainer: loop.Trainer, plan: loop.Plan, config: dict, *, out_dir, overwrite, **fit_args: Any
) -> History:
    run = _open(out_dir, config, _check_flag("overwrite", overwrite))
    if run is None:
        return loop.fit(trainer, plan, **fit_args)
    with run:
        return loop.fit(trainer, plan, run=run, **fit_args)


# ====================================================================== autoencoders (chapters 2-3)

# Adam as in the original recipe. Keras defaults to epsilon=1e-7 and PyTorch to 1e-8; both sides
# set it. (Keras adds epsilon before Adam's bias correction and PyTorch after it, so weights with
# near-zero gradients still step slightly differently.)
AE_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


class AutoencoderSettings(TypedDict, total=False):
    """Keyword arguments of ``fit_autoencoder`` on both sides (all optional)."""

    epochs: int
    batch_size: int
    learning_rate: float
    noise: Noise
    seed: int
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    log_every: int
    device: str | None


@dataclass
class AutoencoderSide:
    """What a framework hands to :func:`fit_autoencoder` for one model.

    ``trainer(learning_rate, device)`` builds the model's trainer (Adam with :data:`AE_ADAM`);
    ``validation_loss(clean, inputs)`` is the mean reconstruction loss of ``inputs`` against ``clean``.
    """

    framework: str
    kind: str
    code_size: int
    example_shape: tuple[int, ...]
    trainer: Callable[[float, str | None], loop.Trainer]
    validation_loss: Callable[[np.ndarray, np.ndarray], float]


def corrupt(x: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """The network input for clean images ``x``: ``x`` itself, ``x + sigma * n`` clipped to [0, 1]
    when ``noise`` is a number, or ``noise(x, rng)`` when it is a function."""
    if noise is None:
        return x
    if callable(noise):
        noisy = np.asarray(noise(x, rng), np.float32)
        if noisy.shape != x.shape or not np.isfinite(noisy).all():
            raise InputError(
                f"the noise function must return finite values of shape {x.shape}, got {noisy.shape}"
            )
        return noisy
    return add_gaussian_noise(x, float(noise), seed=rng)


def check_noise(noise: Noise) -> None:
    if noise is None or callable(noise):
        return
    ok = isinstance(noise, (int, float, np.number)) and not isinstance(noise, bool)
    if not ok or not np.isfinite(noise) or noise < 0:
        raise InputError(
            f"noise must be None, a noise level sigma >= 0 or a function (x, rng) -> noisy x, got {noise!r}"
        )


class _Validation(loop.Monitor):
    def __init__(self, side: AutoencoderSide, x_val: np.ndarray, val_input: np.ndarray) -> None:
        self.side, self.x_val, self.val_input = side, x_val, val_input

    def after_epoch(self, epoch: int) -> dict[str, float]:
        return {"val": self.side.validation_loss(self.x_val, self.val_input)}


def fit_autoencoder(
    side: AutoencoderSide,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    noise: Noise = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    overwrite: bool = False,
    log_every: int = 1,
    device: str | None = None,
) -> History:
    """Train an autoencoder to reconstruct clean images from (optionally corrupted) inputs.

    Args:
        x_train, x_val: images in [0, 1] in the model's layout (flat ``(N, 784)``, or one-channel
            images: ``(N, 28, 28, 1)`` in TensorFlow, ``(N, 1, 28, 28)`` in PyTorch).
        epochs: total epochs, counting those a resumed run already did.
        noise: ``None`` (plain autoencoder), a Gaussian noise level ``sigma`` (input
            ``clip(x + sigma * n, 0, 1)``, target ``x``: a denoiser), or a function
            ``(x, rng) -> noisy x``. Fresh noise every epoch; validation noise is drawn once.
        seed: seeds the shuffling and the noise (not the weights).
        out_dir: run folder for checkpoints and ``history.json``; training into a folder that holds
            a run of the same settings resumes it. ``overwrite=True`` deletes it and starts again.
        device: ``None`` (the GPU when there is one), ``"cpu"`` or ``"cuda"``; the model moves there.

    Returns:
        ``{"train": [...], "val": [...], "seconds": [...], ...}``: per-epoch mean training loss,
        validation loss (only with ``x_val``) and timings.
    """
    x_train = check_images(x_train, name="x_train", shape=side.example_shape)
    if x_val is not None:
        x_val = check_images(x_val, name="x_val", shape=side.example_shape)
    check_positive("learning_rate", learning_rate)
    check_noise(noise)
    seed = loop.check_seed(seed)
    config = {
        "model": "denoising" if noise is not None else "autoencoder",
        "framework": side.framework,
        "kind": side.kind,
        "code_size": side.code_size,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "noise": noise if noise is None or not callable(noise) else getattr(noise, "__name__", "function"),
        "seed": seed,
        "n_train": len(x_train),
    }
    plan = loop.Plan(
        {"targets": x_train},
        batch_size,
        inputs=None if noise is None else lambda index, rng: {"inputs": corrupt(x_train[index], noise, rng)},
    )
    monitor = None
    if x_val is not None:
        monitor = _Validation(side, x_val, corrupt(x_val, noise, loop.epoch_rng(seed, 0, 1)))
    return fit_in_run_folder(
        side.trainer(learning_rate, device),
        plan,
        config,
        out_dir=out_dir,
        overwrite=overwrite,
        epochs=epochs,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        monitor=monitor,
    )


def autoencoder_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of an autoencoder run of ``framework``."""
    return saved_run(out_dir, framework, ("autoencoder", "denoising"), "autoencoder")


# ====================================================================== the MLP GAN (Training GANs on MNIST)

VARIANTS = ("non_saturating", "saturating")  # the generator losses of the min-max chapter
MNIST_PIXELS = 784
GAN_ACTIVATIONS = ("leaky_relu", "relu")  # hidden activations of the MLP GAN: the book's, the blog posts'
GAN_BETA_1, GAN_EPSILON = 0.5, 1e-7
NOISE_DISTRIBUTIONS = ("normal", "uniform")  # N(0, I), the book's; U(-1, 1), the blog posts' Keras GANs


class GanSettings(TypedDict, total=False):
    """Keyword arguments of ``train_gan`` on both sides (all optional but ``epochs``)."""

    epochs: int
    batch_size: int
    variant: str
    learning_rate: float
    d_learning_rate: float | None
    beta1: float
    from_logits: bool
    noise_dim: int
    noise_distribution: str
    steps_per_epoch: int | None
    seed: int
    fixed_noise: np.ndarray | None
    sample_every: int
    log_every: int
    generator: Any
    discriminator: Any
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    overwrite: bool
    device: str | None


@dataclass
class GanRun:
    """What ``train_gan`` returns.

    ``history`` has per-epoch means of ``d_loss``, ``g_loss``, ``d_real`` (mean D(x)) and ``d_fake``
    (mean D(G(z))); ``samples`` maps an epoch (0 = before training) to generator outputs for the
    fixed noise, flat (n, 784) in [0, 1].
    """

    generator: Any
    discriminator: Any
    history: dict[str, list] = field(default_factory=dict)
    samples: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class GanConfig:
    """``train_gan``'s settings, with the MLP GAN chapter's recipe as defaults: noise 128 -> 256 -> 784 pixels,
    784 -> 256 -> 1 logit, Adam (lr 2e-4, beta_1 0.5: less momentum, a calmer alternating game), batches of 100.

    Shuffling and noise come from NumPy streams seeded by ``seed``, so both frameworks draw the same
    numbers. ``fixed_noise`` (default 16 vectors from ``seed + 1``) gives the sample grids, stored
    every ``sample_every`` epochs. ``d_learning_rate`` (default ``learning_rate``) sets D's own rate;
    ``beta1`` is Adam's first-moment decay for both networks (the blog posts this course grew from used 0.9).
    ``from_logits=False`` is the blog posts' PyTorch form: D ends in a sigmoid and the losses are binary
    cross-entropy on its probabilities (pass such a D). ``noise_distribution`` is ``"normal"`` or
    ``"uniform"`` (U(-1, 1)). A NaN or infinite loss raises ``TrainingFailed``. The last incomplete
    batch of each epoch is dropped so that every step sees ``batch_size`` images; ``steps_per_epoch``
    caps the steps of an epoch (each epoch still draws a fresh shuffle). With ``out_dir`` checkpoints are written
    and a later call resumes. ``generator``/``discriminator`` train given networks (moved to ``device``).
    """

    epochs: int
    batch_size: int = 100
    variant: str = "non_saturating"
    learning_rate: float = 2e-4
    d_learning_rate: float | None = None
    beta1: float = GAN_BETA_1
    from_logits: bool = True
    noise_dim: int = 128
    noise_distribution: str = "normal"
    steps_per_epoch: int | None = None
    seed: int = 0
    fixed_noise: np.ndarray | None = None
    sample_every: int = 1
    log_every: int = 1
    generator: Any = None
    discriminator: Any = None
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int = 1
    overwrite: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("learning_rate", self.learning_rate)
        if self.d_learning_rate is not None:
            check_positive("d_learning_rate", self.d_learning_rate)
        check_beta1(self.beta1)
        check_variant(self.variant)
        if not _check_flag("from_logits", self.from_logits) and self.discriminator is None:
            raise InputError(
                "from_logits=False needs a discriminator that outputs probabilities: pass "
                "discriminator=blog_gans.build_probability_discriminator() (or keep from_logits=True)"
            )
        check_noise_distribution(self.noise_distribution)
        if self.steps_per_epoch is not None:
            check_positive("steps_per_epoch", self.steps_per_epoch, integer=True)

    @property
    def config(self) -> dict:
        """The settings stored in ``run.json`` (the rest are added by :func:`train_gan`).

        ``beta1`` and the later settings are stored only when they are not the default, so run
        folders written before they existed still match a default run.
        """
        config = {
            "model": "mlp-gan",
            "variant": self.variant,
            "learning_rate": float(self.learning_rate),
            "d_learning_rate": None if self.d_learning_rate is None else float(self.d_learning_rate),
        }
        if self.beta1 != GAN_BETA_1:
            config["beta1"] = float(self.beta1)
        if not self.from_logits:
            config["from_logits"] = False
        if self.noise_distribution != "normal":
            config["noise_distribution"] = self.noise_distribution
        if self.steps_per_epoch is not None:
            config["steps_per_epoch"] = int(self.steps_per_epoch)
        return config


def _settings(config: type, settings: Mapping[str, Any], caller: str) -> Any:
    """``config(**settings)`` with a clear error for unknown settings or a missing ``epochs``."""
    unknown = sorted(set(settings) - set(config.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise TypeError(
            f"{caller} got unexpected settings {unknown}; see companion.training.tasks.{config.__name__}"
        )
    if "epochs" not in settings:
        raise TypeError(f"{caller} needs epochs=")
    return config(**settings)


def gan_settings(settings: Mapping[str, Any]) -> GanConfig:
    """:class:`GanConfig` from ``train_gan``'s keyword arguments."""
    return _settings(GanConfig, settings, "train_gan")


def gan_result(
    generator: Any, discriminator: Any, history: History, samples: dict[int, np.ndarray]
) -> GanRun:
    """The :class:`GanRun` of a training call or a loaded run folder."""
    return GanRun(generator, discriminator, history, samples, float(sum(history.get("seconds", []))))


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise InputError(f"variant must be one of {VARIANTS}, got {variant!r}")


def check_noise_distribution(distribution: str) -> None:
    if distribution not in NOISE_DISTRIBUTIONS:
        raise InputError(f"noise_distribution must be one of {NOISE_DISTRIBUTIONS}, got {distribution!r}")


def check_beta1(beta1: float) -> None:
    """Adam's ``beta_1`` must be a number in [0, 1)."""
    ok = isinstance(beta1, (int, float, np.integer, np.floating)) and not isinstance(beta1, bool)
    if not ok or not 0.0 <= float(beta1) < 1.0:
        raise InputError(
            f"beta1 must be a number in [0, 1) (Adam's default is 0.9, the DCGAN paper's 0.5), got {beta1!r}"
        )


def check_gan_architecture(activation: str, init_std: float | None) -> None:
    """The MLP GAN's ``activation`` (one of :data:`GAN_ACTIVATIONS`) and ``init_std`` (None: Glorot-uniform
    kernels; a positive number: kernels from N(0, init_std^2)), checked before a model is built."""
    if activation not in GAN_ACTIVATIONS:
        raise InputError(f"activation must be one of {GAN_ACTIVATIONS}, got {activation!r}")
    if init_std is not None:
        check_positive("init_std", init_std)


class SampleKeeper(loop.Monitor):
    """Keeps the generator's outputs for fixed noise before training and every ``every`` epochs."""

    def __init__(
        self, generate: Callable[[np.ndarray], np.ndarray], noise: np.ndarray, every: int, epochs: int
    ):
        self.generate, self.noise, self.every, self.epochs = generate, noise, every, epochs
        self.samples: dict[int, np.ndarray] = {0: generate(noise)}

    def after_epoch(self, epoch: int) -> dict[str, float]:
        if epoch % self.every == 0 or epoch == self.epochs:
            self.samples[epoch] = self.generate(self.noise)
        return {}

    def state(self) -> dict[str, np.ndarray]:
        epochs = sorted(self.samples)
        return {"sample_epochs": np.array(epochs), "samples": np.stack([self.samples[e] for e in epochs])}

    def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
        if "samples" in arrays:
            self.samples = {
                int(e): s for e, s in zip(arrays["sample_epochs"], arrays["samples"], strict=True)
            }


def gan_plan(
    x: np.ndarray,
    batch_size: int,
    noise_dim: int,
    steps_per_epoch: int | None = None,
    noise_distribution: str = "normal",
) -> loop.Plan:
    """Batches of real images and two noise draws per step (for D's step, then G's); last short batch
    dropped, at most ``steps_per_epoch`` steps an epoch."""

    def inputs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = len(index)
        return {
            "d_noise": sample_latent(n, noise_dim, seed=rng, distribution=noise_distribution),
            "g_noise": sample_latent(n, noise_dim, seed=rng, distribution=noise_distribution),
        }

    return loop.Plan({"real": x}, batch_size, drop_last=True, steps_per_epoch=steps_per_epoch, inputs=inputs)


def check_gan_images(images: np.ndarray, batch_size: int) -> np.ndarray:
    x = check_images(np.asarray(images).reshape(len(images), -1), name="images", shape=(MNIST_PIXELS,))
    check_positive("batch_size", batch_size, integer=True)
    if batch_size > len(x):
        raise InputError(f"batch_size {batch_size} exceeds the {len(x)} images; pass a smaller batch_size")
    return x


def train_gan(
    trainer: loop.Trainer,
    generate: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    settings: GanConfig,
    config: dict | None = None,
    monitor: loop.Monitor | None = None,
) -> tuple[History, dict[int, np.ndarray]]:
    """Train a GAN (``trainer`` holds G, D and the step) on images ``x`` from :func:`check_gan_images`,
    flat or reshaped to the discriminator's input layout.

    Returns ``(history, samples)``; ``samples`` as in :class:`GanRun`.
    """
    s = settings
    epochs, batch_size, noise_dim, seed = s.epochs, s.batch_size, s.noise_dim, s.seed
    fixed_noise, sample_every = s.fixed_noise, s.sample_every
    config = {**s.config, **(config or {}), "framework": trainer.framework}
    check_positive("sample_every", sample_every, integer=True)
    check_positive("noise_dim", noise_dim, integer=True)
    seed = loop.check_seed(seed)
    fixed = (
        sample_latent(16, noise_dim, seed=seed + 1, distribution=s.noise_distribution)
        if fixed_noise is None
        else np.asarray(fixed_noise, np.float32)
    )
    if fixed.ndim != 2 or fixed.shape[1] != noise_dim or not np.isfinite(fixed).all():
        raise InputError(f"fixed_noise must be finite with shape (n, {noise_dim}), got {fixed.shape}")
    keeper = SampleKeeper(generate, fixed, sample_every, epochs)

    class Both(loop.Monitor):  # the samples, plus whatever the caller measures
        def before_epoch(self, epoch: int) -> None:
            if monitor is not None:
                monitor.before_epoch(epoch)

        def after_epoch(self, epoch: int) -> dict[str, float]:
            extra = monitor.after_epoch(epoch) if monitor is not None else {}
            return {**keeper.after_epoch(epoch), **extra}

        def state(self) -> dict[str, np.ndarray]:
            return keeper.state()

        def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
            keeper.load_state(arrays, epoch)

    config = {
        **config,
        "batch_size": int(batch_size),
        "noise_dim": int(noise_dim),
        "seed": seed,
        "n_train": len(x),
    }
    history = fit_in_run_folder(
        trainer,
        gan_plan(x, batch_size, noise_dim, s.steps_per_epoch, s.noise_distribution),
        config,
        out_dir=s.out_dir,
        overwrite=s.overwrite,
        epochs=epochs,
        seed=seed,
        checkpoint_every=s.checkpoint_every,
        log_every=s.log_every,
        monitor=Both(),
        guards=(finite_losses,),
    )
    return history, keeper.samples


def max_abs_change(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """Largest absolute difference between two weight snapshots (0.0 means nothing moved)."""
    return float(max(np.abs(a - b).max() for a, b in zip(before, after, strict=True)))


class WeightChanges(loop.Monitor):
    """Per epoch: what ``probe()`` measures (D's mean outputs on fixed batches), then the largest change
    of any weight of each model in ``models`` during the epoch, as ``{name}_change``.

    ``snapshot(model)`` copies a model's weights as NumPy arrays (``weight_snapshot`` of either side).
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        snapshot: Callable[[Any], list[np.ndarray]],
        probe: Callable[[], dict[str, float]],
    ) -> None:
        self.models, self.snapshot, self.probe = dict(models), snapshot, probe
        self.before: dict[str, list[np.ndarray]] = {}

    def before_epoch(self, epoch: int) -> None:
        self.before = {name: self.snapshot(model) for name, model in self.models.items()}

    def after_epoch(self, epoch: int) -> dict[str, float]:
        changes = {
            f"{name}_change": max_abs_change(self.before[name], self.snapshot(model))
            for name, model in self.models.items()
        }
        return {**self.probe(), **changes}


def gan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of an MLP GAN run of ``framework``."""
    return saved_run(out_dir, framework, ("mlp-gan",), "MLP GAN")


def load_gan(
    out_dir: str | os.PathLike,
    framework: str,
    build: Callable[[dict], tuple[Any, Any]],
    load_weights: Callable[[Path, dict[str, Any]], None],
) -> GanRun:
    """The MLP GAN of a run folder: ``build(run settings)`` makes G and D, ``load_weights`` fills them
    from the latest checkpoint; the history and sample grids come from that checkpoint too."""
    from companion.training.run_folder import read_arrays, read_history

    config, folder = gan_run(out_dir, framework)
    generator, discriminator = build(config)
    load_weights(folder, {"generator": generator, "discriminator": discriminator})
    arrays = read_arrays(folder)
    samples = {
        int(e): s for e, s in zip(arrays.get("sample_epochs", []), arrays.get("samples", []), strict=True)
    }
    return gan_result(generator, discriminator, read_history(folder), samples)


# ====================================================================== the DCGAN

DCGAN_NOISE_DIM = 100
N_FIXED = 16  # fixed noise vectors behind the per-epoch grids and the GIF
N_PROBE = 1000  # samples kept at every checkpoint, to measure quality against training steps
# The generator's last activation and the range the data is rescaled to for it: real and generated
# images must share one range (tanh: the tutorial's and the DCGAN paper's; sigmoid: the MLP GAN's).
DCGAN_DATA_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
DCGAN_OUTPUTS = tuple(DCGAN_DATA_RANGES)
# The chapter's generator; run.json records only settings that differ from it.
DCGAN_ARCHITECTURE = {"batch_norm": True, "output": "tanh"}


class DcganSettings(TypedDict, total=False):
    """Keyword arguments of ``dcgan.train`` on both sides (all optional but ``epochs``)."""

    epochs: int
    batch_size: int
    lr: float
    beta1: float
    batch_norm: bool
    output: str
    seed: int
    out_dir: str | os.PathLike | None
    checkpoint_every: int
    steps_per_epoch: int | None
    probes: int
    log_every: int
    overwrite: bool
    jit_compile: bool
    device: str | None
    gan: Any


@dataclass(frozen=True)
class DcganConfig:
    """``dcgan.train``'s settings and defaults (batch 256 as in the TF tutorial, Adam 2e-4 / 0.5).

    Images are ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)`` in [0, 1]. Each epoch shuffles
    the data, runs ``N // batch_size`` steps (capped by ``steps_per_epoch``) and keeps the generator's
    output for ``N_FIXED`` fixed noise vectors. With ``out_dir`` the run is saved every
    ``checkpoint_every`` epochs and at the end (checkpoint, history, frames, ``training.gif`` and
    ``probes`` samples for :func:`probe_samples`, 0 for none); calling again with the same ``out_dir``
    resumes and trains up to ``epochs``. The history holds per-epoch means of ``g_loss``, ``d_loss``,
    ``d_real`` = D(x) and ``d_fake`` = D(G(z)), and timings (``seconds``, ``train_seconds``, ``steps``).
    ``batch_norm=False`` builds the generator without batch norm; ``output="sigmoid"`` ends it with a
    sigmoid and trains on data in [0, 1] instead of tanh on [-1, 1] (:func:`check_dcgan_architecture`).
    """

    epochs: int
    batch_size: int = 256
    lr: float = 2e-4
    beta1: float = 0.5
    batch_norm: bool = True
    output: str = "tanh"
    seed: int = 0
    out_dir: str | os.PathLike | None = None
    checkpoint_every: int = 5
    steps_per_epoch: int | None = None
    probes: int = N_PROBE
    log_every: int = 1
    overwrite: bool = False
    jit_compile: bool = False
    device: str | None = None
    gan: Any = None

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs, integer=True)
        check_positive("lr", self.lr)
        check_beta1(self.beta1)
        check_dcgan_architecture(self.batch_norm, self.output)
        loop.check_seed(self.seed)
        _check_flag("jit_compile", self.jit_compile)


def dcgan_settings(settings: Mapping[str, Any]) -> DcganConfig:
    """:class:`DcganConfig` from ``dcgan.train``'s keyword arguments."""
    return _settings(DcganConfig, settings, "dcgan.train")


def check_dcgan_architecture(batch_norm: bool, output: str) -> None:
    """The generator's options: ``batch_norm`` True or False, ``output`` one of :data:`DCGAN_OUTPUTS`."""
    _check_flag("batch_norm", batch_norm)
    if not isinstance(output, str) or output not in DCGAN_OUTPUTS:
        raise InputError(
            f"output must be one of {DCGAN_OUTPUTS} (the generator's last activation), got {output!r}"
        )


def dcgan_architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """``batch_norm`` and ``output`` of a run's settings (``run.json`` leaves out the defaults)."""
    return {key: config.get(key, default) for key, default in DCGAN_ARCHITECTURE.items()}


def check_given_model(model: Any, s: Any, keys: Sequence[str], function: str) -> None:
    """A model given to ``function`` as ``gan=`` must have been built with the settings' values of
    ``keys``: they decide what the step computes and go into ``run.json``."""
    for key in keys:
        if getattr(model, key) != getattr(s, key):
            raise InputError(
                f"{function}: gan= was built with {key}={getattr(model, key)!r} but the settings say "
                f"{key}={getattr(s, key)!r}; pass the same value to both"
            )


def to_data_range(images: np.ndarray, output: str) -> np.ndarray:
    """Images in [0, 1] -> the range the generator's ``output`` draws ([-1, 1] for tanh, [0, 1] for sigmoid)."""
    low, high = DCGAN_DATA_RANGES[output]
    return images * (high - low) + low


def to_unit_range(images: np.ndarray, output: str) -> np.ndarray:
    """The inverse of :func:`to_data_range`: images in the ``output`` activation's range -> [0, 1]."""
    low, high = DCGAN_DATA_RANGES[output]
    return (images - low) / (high - low)


def check_dcgan_images(images: np.ndarray, output: str = "tanh") -> np.ndarray:
    """Images ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 1, 28, 28)`` in [0, 1] -> ``(N, 28, 28)`` in the
    range a generator with this ``output`` draws: [-1, 1] for tanh, [0, 1] for sigmoid."""
    x = np.asarray(images)
    if x.ndim == 4 and 1 in (x.shape[1], x.shape[3]) and x.size == len(x) * 784:
        x = x.reshape(len(x), 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise InputError(
            f"images has shape {x.shape}; the DCGAN takes 28x28 digits: (N, 28, 28), (N, 28, 28, 1) or "
            "(N, 1, 28, 28); load_mnist(layout='hw') gives the first"
        )
    return to_data_range(check_images(x, name="images"), output)


class FrameKeeper(loop.Monitor):
    """The DCGAN's per-epoch frames of fixed noise (kept with checkpoints), probes, ``frames.npy`` and the GIF."""

    def __init__(self, generate: Callable[[np.ndarray], np.ndarray], seed: int, probes: int) -> None:
        self.generate = generate
        self.fixed = sample_latent(N_FIXED, DCGAN_NOISE_DIM, seed=seed)
        self.probe_noise = sample_latent(probes, DCGAN_NOISE_DIM, seed=seed + 1) if probes else None
        self.frames = np.zeros((0, N_FIXED, 28, 28), np.uint8)

    def after_epoch(self, epoch: int) -> dict[str, float]:
        frame = np.round(np.clip(self.generate(self.fixed), 0, 1) * 255).astype(np.uint8)
        self.frames = np.concatenate([self.frames, frame[None]])
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames}

    def load_state(self, arrays: Mapping[str, np.ndarray], epoch: int) -> None:
        self.frames = np.asarray(arrays.get("frames", self.frames))[:epoch]

    def write_outputs(self, run: RunFolder, epoch: int) -> None:
        from companion.plots import training_gif

        run.write_output("fixed_noise.npy", lambda tmp: np.save(tmp, self.fixed), suffix=".npy")
        run.write_output("frames.npy", lambda tmp: np.save(tmp, self.frames), suffix=".npy")
        if self.probe_noise is not None:
            probes = np.round(np.clip(self.generate(self.probe_noise), 0, 1) * 255).astype(np.uint8)
            run.write_output(f"probes/epoch_{epoch:04d}.npy", lambda tmp: np.save(tmp, probes), suffix=".npy")
        frames = list(self.frames.astype(np.float32) / 255.0)
        captions = [f"epoch {e}" for e in range(1, len(frames) + 1)]
        run.write_output(
            "training.gif", lambda tmp: training_gif(frames, tmp, captions=captions), suffix=".gif"
        )


def dcgan_plan(x: np.ndarray, batch_size: int, steps_per_epoch: int | None) -> loop.Plan:
    """Batches of real images and one noise draw per step (one forward pass feeds both updates)."""

    def inputs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"noise": rng.standard_normal((len(index), DCGAN_NOISE_DIM), dtype=np.float32)}

    return loop.Plan({"real": x}, batch_size, drop_last=True, steps_per_epoch=steps_per_epoch, inputs=inputs)


def train_dcgan(
    trainer: loop.Trainer, generate: Callable[[np.ndarray], np.ndarray], x: np.ndarray, s: DcganConfig
) -> History:
    """Train a DCGAN (``trainer`` holds G, D and the step) on images in the framework's layout, in the
    range of the generator's output (:func:`check_dcgan_images`)."""
    if s.probes != 0:
        check_positive("probes", s.probes, integer=True)
    _check_folder_architecture(s, trainer.framework)
    config = {
        "model": "dcgan",
        "framework": trainer.framework,
        "noise_dim": DCGAN_NOISE_DIM,
        "batch_size": int(s.batch_size),
        "lr": float(s.lr),
        "beta1": float(s.beta1),
        "seed": int(s.seed),
        "steps_per_epoch": s.steps_per_epoch,
        "n_train": len(x),
        # Only a generator other than the chapter's is recorded, so earlier run folders still match.
        **{key: getattr(s, key) for key, default in DCGAN_ARCHITECTURE.items() if getattr(s, key) != default},
    }
    return fit_in_run_folder(
        trainer,
        dcgan_plan(x, s.batch_size, s.steps_per_epoch),
        config,
        out_dir=s.out_dir,
        overwrite=s.overwrite,
        epochs=s.epochs,
        seed=s.seed,
        checkpoint_every=s.checkpoint_every,
        log_every=s.log_every,
        monitor=FrameKeeper(generate, s.seed, s.probes),
        guards=(finite_losses, discriminator_won()),
    )


def _check_folder_architecture(s: DcganConfig, framework: str) -> None:
    """Refuse to resume a run of another generator, naming the saved value (a default is not in ``run.json``)."""
    if s.out_dir is None or s.overwrite or not (Path(s.out_dir) / RUN_FILE).is_file():
        return
    saved = read_run_file(s.out_dir)
    if saved.get("model") != "dcgan" or saved.get("framework") != framework:
        return  # the run folder reports these itself
    for key, value in dcgan_architecture(saved).items():
        if value != getattr(s, key):
            raise SettingsMismatch(Path(s.out_dir), key, value, getattr(s, key), python_name)


def dcgan_run(out_dir: str | os.PathLike, framework: str) -> tuple[dict, Path]:
    """``(run.json settings, latest checkpoint folder)`` of a DCGAN run of ``framework``."""
    config = read_run_file(out_dir)
    if config.get("model") != "dcgan":
        raise RunFolderError(f"{out_dir} holds a {config.get('model')!r} run, not a DCGAN")
    if config.get("framework") != framework:
        raise RunFolderError(f"{out_dir} holds a {config.get('framework')} run; load it with that framework")
    return config, checkpoint_folder(out_dir)


def probe_samples(out_dir: str | os.PathLike) -> dict[int, np.ndarray]:
    """Samples saved with each checkpoint up to the latest one: ``{epoch: (N_PROBE, 28, 28) in [0, 1]}``.

    They come from the same :data:`N_PROBE` noise vectors every time, so quality can be measured
    against training steps after the run.
    """
    last = latest_epoch(out_dir)
    found = {}
    for path in sorted((Path(out_dir) / "probes").glob("epoch_*.npy")):
        epoch = int(path.stem.split("_")[1])
        if epoch <= last:  # a file beyond the checkpoint belongs to an interrupted run
            found[epoch] = np.load(path).astype(np.float32) / 255.0
    return found
