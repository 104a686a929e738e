"""Chapter 5: the DCGAN of the TensorFlow tutorial, in PyTorch, matching ``companion.tensorflow.dcgan``.

Same networks, layer names, hyperparameters, train step and run folder as the Keras side. To give
identical outputs from copied weights (``companion.bridge``), this side copies four Keras details:

- padding: Keras ``"same"`` with kernel 5 and stride 2 pads 1 pixel before and 2 after, so the
  convolutions pad explicitly with ``F.pad(x, (1, 2, 1, 2))``; the stride-2 transposed
  convolutions crop 1 pixel before and 2 after (``padding=1``, then drop the last row and column);
- batch norm: epsilon 1e-3 and momentum 0.01 (Keras 0.99 counts the other way round);
- LeakyReLU slope 0.3, the Keras layer's default that the tutorial relies on;
- channels-last flattening: G's dense output is read as (7, 7, 256) and D's features are
  flattened from (7, 7, 128), so the dense weights need no reordering.

Tensors are channels first: images ``(N, 1, 28, 28)`` in [-1, 1] inside the models (the
discriminator stores them channels last in memory, for speed). The public helpers
(:meth:`DCGAN.generate`, :meth:`DCGAN.discriminate`, :func:`train`) take and return
``(N, 28, 28)`` arrays in [0, 1], as on the Keras side.

Two differences remain, both tiny and harmless for training: PyTorch updates a batch norm's
running variance with the unbiased batch variance, Keras with the biased one (a factor
N / (N - 1)), and Adam adds its epsilon after the bias correction in PyTorch, before it in Keras.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion.checkpoints import atomic_path, read_json, write_json
from companion.noise import sample_latent
from companion.plots import training_gif
from companion.progress import batches, epoch_line, should_log
from companion.validation import check_images, check_positive

FRAMEWORK = "torch"
NOISE_DIM = 100
KERNEL = 5
LEAKY_SLOPE = 0.3  # the tutorial's Keras LeakyReLU() default, set explicitly on both sides
BN_EPSILON = 1e-3  # Keras default (PyTorch's own is 1e-5)
BN_MOMENTUM = 0.01  # PyTorch weights the new batch by 0.01: Keras momentum 0.99
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default
N_FIXED = 16  # fixed noise vectors behind the per-epoch grids and the GIF
N_PROBE = 1000  # samples kept at every checkpoint, to measure quality against training steps
CHECKPOINT = "checkpoint.pt"
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")


class TrainingDiverged(RuntimeError):
    """Training stopped by the divergence guard; the last checkpoint on disk is still good."""


class CheckpointError(RuntimeError):
    """A run folder or checkpoint is missing, corrupt, or belongs to another model or framework."""


class SameConv(nn.Conv2d):
    """5x5 stride-2 convolution with Keras ``padding="same"``: 1 pixel before, 2 after."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, KERNEL, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (1, 2, 1, 2)))


class SameConvTranspose(nn.ConvTranspose2d):
    """5x5 transposed convolution without bias and with Keras ``padding="same"``: output = stride * input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        # Stride 1 crops 2 pixels on each side. Stride 2 must crop 1 before and 2 after:
        # padding=1 crops one on each side and forward() drops the last row and column.
        padding = 2 if stride == 1 else 1
        super().__init__(in_channels, out_channels, KERNEL, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        # contiguous(): batch norm's backward pass is several times slower on a strided view.
        return y[:, :, :-1, :-1].contiguous() if self.stride[0] == 2 else y


class Generator(nn.Module):
    """Noise ``(N, noise_dim)`` -> images ``(N, 1, 28, 28)`` in [-1, 1] (tanh)."""

    def __init__(self, noise_dim: int = NOISE_DIM) -> None:
        super().__init__()
        check_positive("noise_dim", noise_dim, integer=True)
        self.project = nn.Linear(noise_dim, 7 * 7 * 256, bias=False)
        self.bn0 = nn.BatchNorm1d(7 * 7 * 256, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv1 = SameConvTranspose(256, 128, stride=1)  # 7x7x128
        self.bn1 = nn.BatchNorm2d(128, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv2 = SameConvTranspose(128, 64, stride=2)  # 14x14x64
        self.bn2 = nn.BatchNorm2d(64, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        self.deconv3 = SameConvTranspose(64, 1, stride=2)  # 28x28x1

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.bn0(self.project(noise)), LEAKY_SLOPE)
        h = h.view(-1, 7, 7, 256).permute(0, 3, 1, 2)  # read the dense output channels last, as Keras does
        h = F.leaky_relu(self.bn1(self.deconv1(h)), LEAKY_SLOPE)
        h = F.leaky_relu(self.bn2(self.deconv2(h)), LEAKY_SLOPE)
        return torch.tanh(self.deconv3(h))


class Discriminator(nn.Module):
    """Images ``(N, 1, 28, 28)`` in [-1, 1] -> one logit per image ``(N, 1)`` (real > 0 > fake)."""

    def __init__(self, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.conv1 = SameConv(1, 64)  # 14x14x64
        self.conv2 = SameConv(64, 128)  # 7x7x128
        self.rate = dropout
        self.logit = nn.Linear(7 * 7 * 128, 1)

    def dropout(self, h: torch.Tensor) -> torch.Tensor:
        """``F.dropout``, with the mask drawn by ``rand_like``: ``bernoulli_`` is slower on CPUs."""
        if not self.training or self.rate == 0.0:
            return h
        return h * (torch.rand_like(h) >= self.rate) / (1.0 - self.rate)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.leaky_relu(self.conv1(images), LEAKY_SLOPE))
        h = self.dropout(F.leaky_relu(self.conv2(h), LEAKY_SLOPE))
        return self.logit(h.permute(0, 2, 3, 1).flatten(1))  # flatten channels last, as Keras does


def make_generator(noise_dim: int = NOISE_DIM) -> Generator:
    """Noise ``(N, noise_dim)`` -> images ``(N, 1, 28, 28)`` in [-1, 1] (tanh)."""
    return Generator(noise_dim)


def make_discriminator(dropout: float = DROPOUT) -> Discriminator:
    """Images ``(N, 1, 28, 28)`` in [-1, 1] -> one logit per image ``(N, 1)``."""
    return Discriminator(dropout)


def gan_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch.

    D wants real -> 1 and fake -> 0; G wants D to call its fakes real (the non-saturating loss).
    """
    bce = F.binary_cross_entropy_with_logits
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    return g_loss, d_loss


class DCGAN:
    """Generator, discriminator, one Adam optimiser each, and the train step.

    ``channels_last=True`` runs the discriminator channels last, which its convolutions like on
    CPUs; the generator stays channels first because PyTorch's channels-last batch norm was several
    times slower there. ``compile=True`` wraps both networks in ``torch.compile``
    (``benchmarks/dcgan_speed.py`` measures each choice).
    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds PyTorch's
    global generator with ``torch.manual_seed``); ``None`` leaves the global state alone.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        noise_dim: int = NOISE_DIM,
        dropout: float = DROPOUT,
        channels_last: bool = True,
        compile: bool = False,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr)
        if seed is not None:
            torch.manual_seed(seed)
        self.noise_dim = int(noise_dim)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = make_generator(noise_dim).to(self.device)
        self.discriminator = make_discriminator(dropout).to(self.device, memory_format=self.memory_format)
        adam = {"lr": lr, "betas": (beta1, 0.999), "eps": ADAM_EPSILON}
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), **adam)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self._g, self._d = self.generator, self.discriminator
        if compile:
            self._g, self._d = torch.compile(self.generator), torch.compile(self.discriminator)

    def train_step(self, images: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of D and G from one forward pass, as the TF tutorial's two tapes do.

        Both gradients come from the same forward pass (D before its update), so this matches
        the Keras step; the usual PyTorch recipe instead re-runs D after updating it.
        """
        self.generator.train()
        self.discriminator.train()
        fake = self._g(noise)
        real_logits = self._d(images)
        fake_logits = self._d(fake)
        g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for p, g in zip(params, grads):
                p.grad = g
        self.g_optimizer.step()
        self.d_optimizer.step()
        return {
            "g_loss": g_loss.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),  # D(x): 1 means "sure it is real"
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),  # D(G(z)) before this update
        }

    def images_to_tensor(self, x: np.ndarray) -> torch.Tensor:
        """``(N, 28, 28)`` NumPy images in [-1, 1] -> ``(N, 1, 28, 28)`` on the device."""
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[:, None]
        return t.to(self.device, memory_format=self.memory_format)

    @torch.no_grad()
    def generate(self, noise: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Images ``(N, 28, 28)`` in [0, 1] from noise ``(N, noise_dim)`` (eval mode)."""
        noise = np.asarray(noise, np.float32)
        if noise.ndim != 2 or noise.shape[1] != self.noise_dim:
            raise ValueError(f"noise must have shape (N, {self.noise_dim}), got {noise.shape}")
        self.generator.eval()
        parts = [
            self.generator(torch.from_numpy(noise[i : i + batch_size]).to(self.device))[:, 0].cpu().numpy()
            for i in range(0, len(noise), batch_size)
        ]
        return (np.concatenate(parts) + 1.0) / 2.0

    @torch.no_grad()
    def discriminate(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Logits ``(N,)`` for images ``(N, 28, 28)`` in [0, 1] (eval mode)."""
        x = check_images(images, name="images", shape=(28, 28)) * 2.0 - 1.0
        self.discriminator.eval()
        parts = [
            self.discriminator(self.images_to_tensor(x[i : i + batch_size]))[:, 0].cpu().numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)


# --- the run folder: config, history, frames, GIF and checkpoints --------------------------------


def saved_epoch(out_dir: str | os.PathLike) -> int:
    """The epoch of the checkpoint in ``out_dir`` (0 when there is none)."""
    path = Path(out_dir) / CHECKPOINT
    return int(_read_checkpoint(path)["epoch"]) if path.exists() else 0


def _read_checkpoint(path: Path) -> dict:
    try:
        # weights_only=True: only tensors and plain containers are unpickled, never arbitrary code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds (pickle, zip, runtime) for bad files
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__})") from err


def _read_config(folder: Path) -> dict:
    path = folder / "run.json"
    if not path.exists():
        raise CheckpointError(f"{folder} holds no DCGAN run (run.json is missing); train into it first")
    try:
        config = read_json(path)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); train into a new folder") from err
    if not isinstance(config, dict) or config.get("model") != "dcgan":
        raise CheckpointError(f"{folder} does not hold a DCGAN run")
    if config.get("framework") != FRAMEWORK:
        raise CheckpointError(
            f"{folder} holds a {config.get('framework')} checkpoint; load it with that framework"
        )
    return config


def _restore(gan: DCGAN, folder: Path, rng: bool = True) -> int:
    """Load the checkpoint of ``folder`` into ``gan`` (and the RNG state); return its epoch (0: none)."""
    path = folder / CHECKPOINT
    if not path.exists():
        return 0
    state = _read_checkpoint(path)
    try:
        gan.generator.load_state_dict(state["generator"])
        gan.discriminator.load_state_dict(state["discriminator"])
        gan.g_optimizer.load_state_dict(state["g_optimizer"])
        gan.d_optimizer.load_state_dict(state["d_optimizer"])
        if rng:
            torch.set_rng_state(state["rng"])  # dropout masks continue as in an unbroken run
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} does not fit this model ({first})") from err
    return int(state["epoch"])


def load(out_dir: str | os.PathLike) -> DCGAN:
    """The trained DCGAN saved in ``out_dir`` by :func:`train`."""
    folder = Path(out_dir)
    config = _read_config(folder)
    gan = DCGAN(lr=config["lr"], beta1=config["beta1"], noise_dim=config["noise_dim"])
    if _restore(gan, folder, rng=False) == 0:
        raise CheckpointError(f"{folder} has no checkpoint yet; train for at least one epoch")
    return gan


def probe_samples(out_dir: str | os.PathLike) -> dict[int, np.ndarray]:
    """Samples saved with each checkpoint up to the latest one: ``{epoch: (N_PROBE, 28, 28) in [0, 1]}``.

    They come from the same :data:`N_PROBE` noise vectors every time, so quality can be measured
    against training steps after the run.
    """
    last = saved_epoch(out_dir)
    found = {}
    for path in sorted((Path(out_dir) / "probes").glob("epoch_*.npy")):
        epoch = int(path.stem.split("_")[1])
        if epoch <= last:  # a file beyond the checkpoint belongs to an interrupted save
            found[epoch] = np.load(path).astype(np.float32) / 255.0
    return found


def check_divergence(history: dict[str, list[float]], patience: int = 3) -> str | None:
    """A message when training went wrong, else ``None``.

    Two failures are caught: losses that are no longer finite, and a discriminator that
    has won outright (mean D(G(z)) below 0.001 for ``patience`` epochs in a row), which
    leaves the generator almost no gradient to learn from.
    """
    last = {name: values[-1] for name, values in history.items() if name in ("g_loss", "d_loss")}
    if not all(np.isfinite(v) for v in last.values()):
        return "losses are no longer finite; lower the learning rate or check the input scaling"
    recent = history["d_fake"][-patience:]
    if len(recent) == patience and max(recent) < 1e-3:
        return (
            f"the discriminator has won: D(G(z)) < 0.001 for {patience} epochs, so G gets no signal; "
            "lower D's learning rate, add dropout or label smoothing, or restart from a checkpoint"
        )
    return None


def _empty_history() -> dict[str, list]:
    return {name: [] for name in (*METRICS, "seconds", "step_seconds")}


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    # Batches and noise depend only on (seed, epoch): a resumed run sees what an unbroken one would.
    return np.random.default_rng([seed, epoch])


def train(
    images: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 2e-4,
    beta1: float = 0.5,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5,
    steps_per_epoch: int | None = None,
    probes: int = N_PROBE,
    log_every: int = 1,
    compile: bool = False,
    gan: DCGAN | None = None,
) -> tuple[DCGAN, dict]:
    """Train a DCGAN on ``images`` ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1].

    Each epoch shuffles the data, runs ``N // batch_size`` steps (capped by ``steps_per_epoch``)
    and stores the generator's output for :data:`N_FIXED` fixed noise vectors. With ``out_dir``
    the run is saved every ``checkpoint_every`` epochs and at the end (checkpoint, history,
    frames, ``training.gif`` and ``probes`` samples for :func:`probe_samples`, 0 for none);
    calling again with the same ``out_dir`` resumes from the last checkpoint and trains up to
    ``epochs``. Returns ``(gan, history)``; ``history`` holds per-epoch
    means of ``g_loss``, ``d_loss``, ``d_real`` = D(x) and ``d_fake`` = D(G(z)), ``seconds`` per epoch
    and ``step_seconds`` (one list of step durations per epoch).
    """
    for name, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("checkpoint_every", checkpoint_every),
    ):
        check_positive(name, value, integer=True)
    if probes != 0:
        check_positive("probes", probes, integer=True)
    if steps_per_epoch is not None:
        check_positive("steps_per_epoch", steps_per_epoch, integer=True)
    x = check_images(np.asarray(images).reshape(len(images), 28, 28), name="images") * 2.0 - 1.0
    steps = len(x) // batch_size if steps_per_epoch is None else min(len(x) // batch_size, steps_per_epoch)
    if steps == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} training images; use a smaller one")

    config = {"model": "dcgan", "framework": FRAMEWORK, "noise_dim": NOISE_DIM, "batch_size": int(batch_size)}
    config.update({"lr": float(lr), "beta1": float(beta1), "seed": int(seed)})
    folder = Path(out_dir) if out_dir is not None else None
    gan = gan if gan is not None else DCGAN(lr=lr, beta1=beta1, compile=compile, seed=seed)
    history = _empty_history()
    fixed_noise = sample_latent(N_FIXED, NOISE_DIM, seed=seed)
    probe_noise = sample_latent(probes, NOISE_DIM, seed=seed + 1) if probes else None
    frames = np.zeros((0, N_FIXED, 28, 28), np.uint8)
    start = 0
    if folder is not None and (folder / "run.json").exists():
        start, history, frames = _resume(gan, folder, config)
        fixed_noise = np.load(folder / "fixed_noise.npy")
        print(f"Resuming {folder} from epoch {start}")
    elif folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "run.json", config)
        with atomic_path(folder / "fixed_noise.npy", suffix=".npy") as tmp:
            np.save(tmp, fixed_noise)

    for epoch in range(start + 1, epochs + 1):
        rng, began = _epoch_rng(seed, epoch), time.perf_counter()
        order, totals = rng.permutation(len(x)), dict.fromkeys(METRICS, 0.0)
        history["step_seconds"].append([])
        for step in batches(range(steps), total=steps, desc=f"epoch {epoch}/{epochs}"):
            real = gan.images_to_tensor(x[order[step * batch_size : (step + 1) * batch_size]])
            noise = torch.from_numpy(rng.standard_normal((batch_size, NOISE_DIM), dtype=np.float32))
            tick = time.perf_counter()
            metrics = {k: float(v) for k, v in gan.train_step(real, noise.to(gan.device)).items()}
            history["step_seconds"][-1].append(time.perf_counter() - tick)
            for name, value in metrics.items():
                totals[name] += value / steps
        for name, value in totals.items():
            history[name].append(value)
        history["seconds"].append(time.perf_counter() - began)
        frame = gan.generate(fixed_noise)
        frames = np.concatenate([frames, np.round(frame * 255).astype(np.uint8)[None]])
        problem = check_divergence(history)
        if problem is not None:
            last = saved_epoch(folder) if folder is not None else 0
            raise TrainingDiverged(f"epoch {epoch}: {problem} (last checkpoint: epoch {last})")
        if should_log(epoch, epochs, log_every):
            print(epoch_line(epoch, epochs, totals, history["seconds"][-1]))
        if folder is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            _save(gan, folder, epoch, history, frames, None if probes == 0 else gan.generate(probe_noise))
    return gan, history


def _resume(gan: DCGAN, folder: Path, config: dict) -> tuple[int, dict, np.ndarray]:
    saved = _read_config(folder)
    for key in ("noise_dim", "batch_size", "lr", "beta1", "seed"):
        if saved.get(key) != config[key]:
            raise CheckpointError(
                f"{folder} was trained with {key}={saved.get(key)}, not {config[key]}; "
                f"pass {saved.get(key)} or choose a new output folder"
            )
    start = _restore(gan, folder)
    history = read_json(folder / "history.json") if start else _empty_history()
    # The history may run ahead of the checkpoint if a run died between the two writes.
    history = {name: values[:start] for name, values in history.items()}
    frames = np.load(folder / "frames.npy")[:start] if start else np.zeros((0, N_FIXED, 28, 28), np.uint8)
    return start, history, frames


def _save(
    gan: DCGAN, folder: Path, epoch: int, history: dict, frames: np.ndarray, probes: np.ndarray | None
) -> None:
    """History, frames and probes first, then the checkpoint: a resume trims whatever runs ahead of it."""
    write_json(folder / "history.json", history)
    with atomic_path(folder / "frames.npy", suffix=".npy") as tmp:
        np.save(tmp, frames)
    if probes is not None:
        with atomic_path(folder / "probes" / f"epoch_{epoch:04d}.npy", suffix=".npy") as tmp:
            np.save(tmp, np.round(probes * 255).astype(np.uint8))
    state = {
        "epoch": epoch,
        "generator": gan.generator.state_dict(),
        "discriminator": gan.discriminator.state_dict(),
        "g_optimizer": gan.g_optimizer.state_dict(),
        "d_optimizer": gan.d_optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    with atomic_path(folder / CHECKPOINT, suffix=".pt") as tmp:
        torch.save(state, tmp)
    with atomic_path(folder / "training.gif", suffix=".gif") as tmp:
        training_gif(list(frames.astype(np.float32) / 255.0), tmp)
