"""The DCGAN run folder and epoch loop, shared by ``companion.tensorflow.dcgan`` and ``companion.torch.dcgan``.

A run folder holds ``run.json`` (the settings), ``fixed_noise.npy``, ``history.json``, ``frames.npy``
(the fixed-noise samples of every epoch), ``probes/epoch_NNNN.npy`` (samples kept at each
checkpoint), ``training.gif`` and the framework's own checkpoint. Each framework hands
:func:`train_loop` a :class:`Backend` (its train step, sampler and checkpoint I/O); everything else
lives here once: argument checks, the per-epoch random streams, the history, the divergence guard,
and the order of writes that makes an interrupted run resumable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.checkpoints import atomic_path, read_json, write_json
from companion.divergence import GanDivergedError
from companion.noise import sample_latent
from companion.plots import training_gif
from companion.progress import batches, epoch_line, should_log
from companion.validation import check_images, check_positive

NOISE_DIM = 100
N_FIXED = 16  # fixed noise vectors behind the per-epoch grids and the GIF
N_PROBE = 1000  # samples kept at every checkpoint, to measure quality against training steps
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")
RESUME_KEYS = ("noise_dim", "batch_size", "lr", "beta1", "seed")  # must match to resume a run


class TrainingDiverged(GanDivergedError):
    """Training stopped by the divergence guard; the last checkpoint on disk is still good."""


class CheckpointError(RuntimeError):
    """A run folder or checkpoint is missing, corrupt, or belongs to another model or framework."""


@dataclass
class Backend:
    """What the epoch loop needs from one framework.

    ``train_step(real, noise)`` takes NumPy arrays (real images ``(B, 28, 28)`` in [-1, 1], noise
    ``(B, noise_dim)``) and returns the step's metrics as floats; ``generate(noise)`` returns
    images ``(N, 28, 28)`` in [0, 1]; ``restore()`` loads the folder's checkpoint and returns its
    epoch (0 when there is none); ``save(epoch)`` writes the checkpoint atomically; ``saved_epoch()``
    reads the epoch of the checkpoint on disk.
    """

    framework: str
    train_step: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    generate: Callable[[np.ndarray], np.ndarray]
    restore: Callable[[], int]
    save: Callable[[int], None]
    saved_epoch: Callable[[], int]


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


def empty_history() -> dict[str, list]:
    return {name: [] for name in (*METRICS, "seconds", "step_seconds")}


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    # Batches and noise depend only on (seed, epoch): a resumed run sees what an unbroken one would.
    return np.random.default_rng([seed, epoch])


def prepare_images(
    images: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    checkpoint_every: int,
    steps_per_epoch: int | None,
    probes: int,
) -> tuple[np.ndarray, int]:
    """Check :func:`train_loop`'s arguments; return images ``(N, 28, 28)`` in [-1, 1] and steps per epoch."""
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
    return x, steps


def read_config(folder: Path, framework: str) -> dict:
    """``run.json`` of ``folder``, checked to hold a DCGAN run of ``framework``."""
    path = folder / "run.json"
    if not path.exists():
        raise CheckpointError(f"{folder} holds no DCGAN run (run.json is missing); train into it first")
    try:
        config = read_json(path)
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); train into a new folder") from err
    if not isinstance(config, dict) or config.get("model") != "dcgan":
        raise CheckpointError(f"{folder} does not hold a DCGAN run")
    if config.get("framework") != framework:
        raise CheckpointError(
            f"{folder} holds a {config.get('framework')} checkpoint; load it with that framework"
        )
    return config


def probe_samples(folder: Path, last_epoch: int) -> dict[int, np.ndarray]:
    """``{epoch: (N_PROBE, 28, 28) in [0, 1]}`` for the probes saved up to ``last_epoch``."""
    found = {}
    for path in sorted((Path(folder) / "probes").glob("epoch_*.npy")):
        epoch = int(path.stem.split("_")[1])
        if epoch <= last_epoch:  # a file beyond the checkpoint belongs to an interrupted save
            found[epoch] = np.load(path).astype(np.float32) / 255.0
    return found


def _start(folder: Path | None, backend: Backend, config: dict, fixed_noise: np.ndarray):
    """Create the run folder, or resume it: ``(start epoch, history, frames, fixed noise)``."""
    no_frames = np.zeros((0, N_FIXED, 28, 28), np.uint8)
    if folder is None:
        return 0, empty_history(), no_frames, fixed_noise
    if not (folder / "run.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "run.json", config)
        with atomic_path(folder / "fixed_noise.npy", suffix=".npy") as tmp:
            np.save(tmp, fixed_noise)
        return 0, empty_history(), no_frames, fixed_noise
    saved = read_config(folder, backend.framework)
    for key in RESUME_KEYS:
        if saved.get(key) != config[key]:
            raise CheckpointError(
                f"{folder} was trained with {key}={saved.get(key)}, not {config[key]}; "
                f"pass {saved.get(key)} or choose a new output folder"
            )
    start = backend.restore()
    print(f"Resuming {folder} from epoch {start}")
    if start == 0:
        return 0, empty_history(), no_frames, np.load(folder / "fixed_noise.npy")
    # History and frames may run ahead of the checkpoint if a run died between the writes.
    history = {name: values[:start] for name, values in read_json(folder / "history.json").items()}
    return start, history, np.load(folder / "frames.npy")[:start], np.load(folder / "fixed_noise.npy")


def _save(backend: Backend, folder: Path, epoch: int, history: dict, frames: np.ndarray, probes) -> None:
    """History, frames and probes first, then the checkpoint: a resume trims whatever runs ahead of it."""
    write_json(folder / "history.json", history)
    with atomic_path(folder / "frames.npy", suffix=".npy") as tmp:
        np.save(tmp, frames)
    if probes is not None:
        with atomic_path(folder / "probes" / f"epoch_{epoch:04d}.npy", suffix=".npy") as tmp:
            np.save(tmp, np.round(probes * 255).astype(np.uint8))
    backend.save(epoch)
    with atomic_path(folder / "training.gif", suffix=".gif") as tmp:
        training_gif(list(frames.astype(np.float32) / 255.0), tmp)


def train_loop(
    backend: Backend,
    x: np.ndarray,
    *,
    steps: int,
    epochs: int,
    batch_size: int,
    lr: float,
    beta1: float,
    seed: int,
    out_dir: str | os.PathLike | None,
    checkpoint_every: int,
    probes: int,
    log_every: int,
) -> dict:
    """Train for ``steps`` batches per epoch up to ``epochs`` on ``x`` from :func:`prepare_images`.

    Returns the history: per-epoch means of ``g_loss``, ``d_loss``, ``d_real`` = D(x) and
    ``d_fake`` = D(G(z)), ``seconds`` per epoch and ``step_seconds`` (step durations per epoch).
    """
    config = {"model": "dcgan", "framework": backend.framework, "noise_dim": NOISE_DIM}
    config.update({"batch_size": int(batch_size), "lr": float(lr), "beta1": float(beta1), "seed": int(seed)})
    folder = Path(out_dir) if out_dir is not None else None
    probe_noise = sample_latent(probes, NOISE_DIM, seed=seed + 1) if probes else None
    start, history, frames, fixed_noise = _start(
        folder, backend, config, sample_latent(N_FIXED, NOISE_DIM, seed=seed)
    )

    for epoch in range(start + 1, epochs + 1):
        rng, began = epoch_rng(seed, epoch), time.perf_counter()
        order, totals = rng.permutation(len(x)), dict.fromkeys(METRICS, 0.0)
        history["step_seconds"].append([])
        for step in batches(range(steps), total=steps, desc=f"epoch {epoch}/{epochs}"):
            real = x[order[step * batch_size : (step + 1) * batch_size]]
            noise = rng.standard_normal((batch_size, NOISE_DIM), dtype=np.float32)
            tick = time.perf_counter()
            metrics = backend.train_step(real, noise)
            history["step_seconds"][-1].append(time.perf_counter() - tick)
            for name, value in metrics.items():
                totals[name] += value / steps
        for name, value in totals.items():
            history[name].append(value)
        history["seconds"].append(time.perf_counter() - began)
        frame = backend.generate(fixed_noise)
        frames = np.concatenate([frames, np.round(frame * 255).astype(np.uint8)[None]])
        problem = check_divergence(history)
        if problem is not None:
            last = backend.saved_epoch() if folder is not None else 0
            raise TrainingDiverged(f"epoch {epoch}: {problem} (last checkpoint: epoch {last})")
        if should_log(epoch, epochs, log_every):
            print(epoch_line(epoch, epochs, totals, history["seconds"][-1]))
        if folder is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            _save(
                backend,
                folder,
                epoch,
                history,
                frames,
                None if probes == 0 else backend.generate(probe_noise),
            )
    return history
