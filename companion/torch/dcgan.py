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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion import dcgan_runs
from companion.checkpoints import atomic_path
from companion.dcgan_runs import read_config
from companion.validation import check_images, check_positive

FRAMEWORK = "torch"
# Shared with the Keras side through companion.dcgan_runs; re-exported so both modules offer them.
NOISE_DIM, N_FIXED, N_PROBE, METRICS = (
    dcgan_runs.NOISE_DIM,
    dcgan_runs.N_FIXED,
    dcgan_runs.N_PROBE,
    dcgan_runs.METRICS,
)
CheckpointError = dcgan_runs.CheckpointError
TrainingDiverged = dcgan_runs.TrainingDiverged
check_divergence = dcgan_runs.check_divergence
KERNEL = 5
LEAKY_SLOPE = 0.3  # the tutorial's Keras LeakyReLU() default, set explicitly on both sides
BN_EPSILON = 1e-3  # Keras default (PyTorch's own is 1e-5)
BN_MOMENTUM = 0.01  # PyTorch weights the new batch by 0.01: Keras momentum 0.99
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default
CHECKPOINT = "checkpoint.pt"


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


# --- the run folder: the checkpoint is PyTorch's, the rest is shared with the Keras side -------------


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


def _save(gan: DCGAN, folder: Path, epoch: int) -> None:
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


def load(out_dir: str | os.PathLike) -> DCGAN:
    """The trained DCGAN saved in ``out_dir`` by :func:`train`."""
    folder = Path(out_dir)
    config = read_config(folder, FRAMEWORK)
    gan = DCGAN(lr=config["lr"], beta1=config["beta1"], noise_dim=config["noise_dim"])
    if _restore(gan, folder, rng=False) == 0:
        raise CheckpointError(f"{folder} has no checkpoint yet; train for at least one epoch")
    return gan


def probe_samples(out_dir: str | os.PathLike) -> dict[int, np.ndarray]:
    """Samples saved with each checkpoint up to the latest one: ``{epoch: (N_PROBE, 28, 28) in [0, 1]}``.

    They come from the same :data:`N_PROBE` noise vectors every time, so quality can be measured
    against training steps after the run.
    """
    return dcgan_runs.probe_samples(Path(out_dir), saved_epoch(out_dir))


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
    x, steps = dcgan_runs.prepare_images(
        images,
        epochs=epochs,
        batch_size=batch_size,
        checkpoint_every=checkpoint_every,
        steps_per_epoch=steps_per_epoch,
        probes=probes,
    )
    gan = gan if gan is not None else DCGAN(lr=lr, beta1=beta1, compile=compile, seed=seed)
    folder = Path(out_dir) if out_dir is not None else None

    def train_step(real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        noise = torch.from_numpy(noise).to(gan.device)
        return {k: float(v) for k, v in gan.train_step(gan.images_to_tensor(real), noise).items()}

    backend = dcgan_runs.Backend(
        framework=FRAMEWORK,
        train_step=train_step,
        generate=gan.generate,
        restore=lambda: _restore(gan, folder),
        save=lambda epoch: _save(gan, folder, epoch),
        saved_epoch=lambda: saved_epoch(folder),
    )
    history = dcgan_runs.train_loop(
        backend,
        x,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        beta1=beta1,
        seed=seed,
        out_dir=folder,
        checkpoint_every=checkpoint_every,
        probes=probes,
        log_every=log_every,
    )
    return gan, history
