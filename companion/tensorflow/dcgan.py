"""Chapter 5: the DCGAN of the TensorFlow tutorial, in Keras 3 with a ``tf.GradientTape`` train step.

Generator: noise (N, 100) -> Dense 7*7*256 (no bias) -> BN -> LeakyReLU -> reshape (7, 7, 256)
-> ConvT 128 5x5 stride 1 -> BN -> LeakyReLU -> ConvT 64 5x5 stride 2 -> BN -> LeakyReLU
-> ConvT 1 5x5 stride 2, tanh: images (N, 28, 28, 1) in [-1, 1].

Discriminator: images (N, 28, 28, 1) in [-1, 1] -> Conv 64 5x5 stride 2 -> LeakyReLU -> Dropout 0.3
-> Conv 128 5x5 stride 2 -> LeakyReLU -> Dropout 0.3 -> flatten -> Dense 1: logits (N, 1).

``companion.torch.dcgan`` builds the same networks with the same layer names, so
``companion.bridge`` copies weights both ways, and the same :func:`train` loop with the same
run folder layout (``run.json``, ``history.json``, ``frames.npy``, ``probes/``, ``training.gif`` and the
checkpoints), so that a run can be interrupted and resumed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from companion import dcgan_runs
from companion.dcgan_runs import read_config
from companion.validation import check_images, check_positive

FRAMEWORK = "tensorflow"
# Shared with the PyTorch side through companion.dcgan_runs; re-exported so both modules offer them.
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
LEAKY_SLOPE = 0.3  # the tutorial's LeakyReLU(); Keras 3's layer default, set explicitly on both sides
BN_EPSILON = 1e-3  # Keras default; PyTorch's is 1e-5
BN_MOMENTUM = 0.99  # Keras keeps 99% of the running statistics per step (PyTorch momentum=0.01)
DROPOUT = 0.3
ADAM_EPSILON = 1e-7  # Keras default, passed to PyTorch's Adam too
CHECKPOINTS = "checkpoints"


def make_generator(noise_dim: int = NOISE_DIM) -> keras.Model:
    """Noise ``(N, noise_dim)`` -> images ``(N, 28, 28, 1)`` in [-1, 1] (tanh)."""
    check_positive("noise_dim", noise_dim, integer=True)
    conv = {"kernel_size": KERNEL, "padding": "same", "use_bias": False}
    bn = {"epsilon": BN_EPSILON, "momentum": BN_MOMENTUM}
    return keras.Sequential(
        [
            keras.Input(shape=(noise_dim,)),
            keras.layers.Dense(7 * 7 * 256, use_bias=False, name="project"),
            keras.layers.BatchNormalization(name="bn0", **bn),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Reshape((7, 7, 256)),
            keras.layers.Conv2DTranspose(128, strides=1, name="deconv1", **conv),  # 7x7x128
            keras.layers.BatchNormalization(name="bn1", **bn),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Conv2DTranspose(64, strides=2, name="deconv2", **conv),  # 14x14x64
            keras.layers.BatchNormalization(name="bn2", **bn),
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Conv2DTranspose(1, strides=2, activation="tanh", name="deconv3", **conv),
        ],
        name="generator",
    )


def make_discriminator(dropout: float = DROPOUT, seed: int | None = None) -> keras.Model:
    """Images ``(N, 28, 28, 1)`` in [-1, 1] -> one logit per image ``(N, 1)`` (real > 0 > fake).

    ``seed`` fixes the dropout masks' random stream (``None``: drawn from Python's ``random``).
    """
    conv = {"kernel_size": KERNEL, "strides": 2, "padding": "same"}
    seeds = (None, None) if seed is None else (seed, seed + 1)
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(64, name="conv1", **conv),  # 14x14x64
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Dropout(dropout, seed=seeds[0]),
            keras.layers.Conv2D(128, name="conv2", **conv),  # 7x7x128
            keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE),
            keras.layers.Dropout(dropout, seed=seeds[1]),
            keras.layers.Flatten(),  # channels last: (7, 7, 128) -> 6272
            keras.layers.Dense(1, name="logit"),
        ],
        name="discriminator",
    )


def gan_losses(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(g_loss, d_loss)``: binary cross-entropy from logits, averaged over the batch.

    D wants real -> 1 and fake -> 0; G wants D to call its fakes real (the non-saturating loss).
    """
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
    g_loss = bce(tf.ones_like(fake_logits), fake_logits)
    return g_loss, d_loss


class DCGAN:
    """Generator, discriminator, one Adam optimiser each, and the compiled train step.

    ``jit_compile=True`` compiles the whole step with XLA; it is off by default because it made
    the step slower on the CPUs measured (``benchmarks/dcgan_speed.py``).
    ``seed`` makes the initial weights and the dropout masks repeatable (it reseeds Python, NumPy
    and TensorFlow through ``keras.utils.set_random_seed``); ``None`` leaves the global state alone.
    """

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        noise_dim: int = NOISE_DIM,
        dropout: float = DROPOUT,
        jit_compile: bool = False,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        self.noise_dim = int(noise_dim)
        self.generator = make_generator(noise_dim)
        self.discriminator = make_discriminator(dropout, seed=seed)
        self.g_optimizer = keras.optimizers.Adam(lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        self.d_optimizer = keras.optimizers.Adam(lr, beta_1=beta1, epsilon=ADAM_EPSILON)
        # Optimiser slots exist from the start, so a checkpoint restores into them directly.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        if not jit_compile:
            # Grappler's remapper cannot fuse conv + bias + LeakyReLU when the gradient needs the
            # pre-activation; it then leaves the graph as it was but logs an ERROR line to stderr
            # each time the step is traced. Switching the pass off only removes that line.
            tf.config.optimizer.set_experimental_options({"remapping": False})
        self.train_step = tf.function(self._train_step, jit_compile=jit_compile)

    def _train_step(self, images: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of D and G from one forward pass, as in the TF tutorial (two tapes)."""
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(noise, training=True)
            real_logits = self.discriminator(images, training=True)
            fake_logits = self.discriminator(fake, training=True)
            g_loss, d_loss = gan_losses(real_logits, fake_logits)
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),  # D(x): 1 means "sure it is real"
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),  # D(G(z)) before this update
        }

    def generate(self, noise: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Images ``(N, 28, 28)`` in [0, 1] from noise ``(N, noise_dim)`` (inference mode)."""
        noise = np.asarray(noise, np.float32)
        if noise.ndim != 2 or noise.shape[1] != self.noise_dim:
            raise ValueError(f"noise must have shape (N, {self.noise_dim}), got {noise.shape}")
        parts = [
            self.generator(noise[i : i + batch_size], training=False).numpy()
            for i in range(0, len(noise), batch_size)
        ]
        return (np.concatenate(parts)[..., 0] + 1.0) / 2.0

    def discriminate(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Logits ``(N,)`` for images ``(N, 28, 28)`` in [0, 1] (inference mode)."""
        x = check_images(images, name="images", shape=(28, 28)) * 2.0 - 1.0
        parts = [
            self.discriminator(x[i : i + batch_size, ..., None], training=False).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)[:, 0]


# --- the run folder: the checkpoint is TensorFlow's, the rest is shared with the PyTorch side ---------


def _checkpoint(gan: DCGAN, epoch: tf.Variable) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(
        generator=gan.generator,
        discriminator=gan.discriminator,
        g_optimizer=gan.g_optimizer,
        d_optimizer=gan.d_optimizer,
        epoch=epoch,
        # The dropout layers' random state, so that a resumed run draws the masks an unbroken one would.
        dropout_states=[
            layer.seed_generator.state
            for layer in gan.discriminator.layers
            if isinstance(layer, keras.layers.Dropout)
        ],
    )


def _manager(gan: DCGAN, epoch: tf.Variable, folder: Path) -> tf.train.CheckpointManager:
    # TensorFlow stages each checkpoint in a 'ckpt-N_temp' folder, moves the finished files into
    # place, and only then atomically rewrites the small 'checkpoint' file that names the latest
    # one. A save killed at any moment leaves the previous checkpoint listed and intact (checked by
    # killing a saving process at random moments), plus a stale '_temp' folder, removed by the next run's save.
    return tf.train.CheckpointManager(_checkpoint(gan, epoch), str(folder / CHECKPOINTS), max_to_keep=2)


def saved_epoch(out_dir: str | os.PathLike) -> int:
    """The epoch of the latest complete checkpoint in ``out_dir`` (0 when there is none)."""
    latest = tf.train.latest_checkpoint(str(Path(out_dir) / CHECKPOINTS))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _restore(gan: DCGAN, folder: Path) -> int:
    """Load the latest checkpoint of ``folder`` into ``gan``; return its epoch (0: none yet)."""
    epoch = tf.Variable(0, dtype=tf.int64)
    manager = _manager(gan, epoch, folder)
    if manager.latest_checkpoint is None:
        return 0
    try:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {manager.latest_checkpoint} is corrupt or does not fit this model ({first})"
        ) from err
    return int(epoch.numpy())


def _saver(gan: DCGAN, folder: Path) -> Callable[[int], None]:
    """``save(epoch)`` for the run in ``folder``; one manager for the whole run keeps the last two."""
    epoch_var = tf.Variable(0, dtype=tf.int64)
    manager = None

    def save(epoch: int) -> None:
        nonlocal manager
        if manager is None:
            for stale in (folder / CHECKPOINTS).glob("*_temp"):
                shutil.rmtree(stale, ignore_errors=True)  # staging folder of a save that was killed
            manager = _manager(gan, epoch_var, folder)
        epoch_var.assign(epoch)
        manager.save(checkpoint_number=epoch)

    return save


def load(out_dir: str | os.PathLike) -> DCGAN:
    """The trained DCGAN saved in ``out_dir`` by :func:`train` (latest checkpoint)."""
    folder = Path(out_dir)
    config = read_config(folder, FRAMEWORK)
    gan = DCGAN(lr=config["lr"], beta1=config["beta1"], noise_dim=config["noise_dim"], jit_compile=False)
    if _restore(gan, folder) == 0:
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
    jit_compile: bool = False,
    gan: DCGAN | None = None,
) -> tuple[DCGAN, dict]:
    """Train a DCGAN on ``images`` ``(N, 28, 28)`` or ``(N, 28, 28, 1)`` in [0, 1].

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
    gan = gan if gan is not None else DCGAN(lr=lr, beta1=beta1, jit_compile=jit_compile, seed=seed)
    folder = Path(out_dir) if out_dir is not None else None

    def train_step(real: np.ndarray, noise: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in gan.train_step(real[..., None], noise).items()}

    backend = dcgan_runs.Backend(
        framework=FRAMEWORK,
        train_step=train_step,
        generate=gan.generate,
        restore=lambda: _restore(gan, folder),
        save=_saver(gan, folder),
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
