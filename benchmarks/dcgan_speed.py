"""Seconds per DCGAN training step, TensorFlow and PyTorch, against the TF tutorial's own loop.

    python benchmarks/dcgan_speed.py                  # batch 256, every variant
    python benchmarks/dcgan_speed.py --steps 5 --only tutorial tf torch

All variants run in one process on the same machine, one after another in interleaved rounds
(so that a load spike from other programs hits every variant alike), on the same random batch.
Reported: the median seconds per step over the timed steps, images per second, and the ratio to
the reference, the TF tutorial's loop as it is written there: one ``@tf.function`` step with two
gradient tapes, noise drawn inside the step, no XLA. One step at batch 256 is about 120 GFLOP.

Variants:
  tutorial        the TF tutorial's step (same networks), @tf.function without XLA
  tf              companion.tensorflow.dcgan step as the package runs it (@tf.function, no XLA)
  tf-xla          the same with jit_compile=True
  tf-bf16         the same under Keras' mixed_bfloat16 policy
  torch           companion.torch.dcgan step as the package runs it (eager, D channels last)
  torch-nchw      the same with every tensor channels first
  torch-compile   torch.compile on both networks
  torch-bf16      bfloat16 autocast on the CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

VARIANTS = ("tutorial", "tf", "tf-xla", "tf-bf16", "torch", "torch-nchw", "torch-compile", "torch-bf16")


def tutorial_step(batch_size: int, noise_dim: int = 100):
    """The step of the TensorFlow DCGAN tutorial, written as the tutorial writes it."""
    import tensorflow as tf

    from companion.tensorflow.dcgan import make_discriminator, make_generator

    generator, discriminator = make_generator(), make_discriminator()
    cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = tf.keras.optimizers.Adam(1e-4)
    discriminator_optimizer = tf.keras.optimizers.Adam(1e-4)

    def discriminator_loss(real_output, fake_output):
        real_loss = cross_entropy(tf.ones_like(real_output), real_output)
        fake_loss = cross_entropy(tf.zeros_like(fake_output), fake_output)
        return real_loss + fake_loss

    def generator_loss(fake_output):
        return cross_entropy(tf.ones_like(fake_output), fake_output)

    @tf.function
    def train_step(images):
        noise = tf.random.normal([batch_size, noise_dim])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)
            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)
            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        generator_optimizer.apply_gradients(
            zip(gradients_of_generator, generator.trainable_variables, strict=True)
        )
        discriminator_optimizer.apply_gradients(
            zip(gradients_of_discriminator, discriminator.trainable_variables, strict=True)
        )
        return gen_loss

    return train_step


def make_step(variant: str, images: np.ndarray, noise: np.ndarray):
    """A no-argument callable running one training step of ``variant`` and waiting for its result."""
    if variant == "tutorial":
        step = tutorial_step(len(images))
        x = images[..., None]
        return lambda: float(step(x))
    if variant.startswith("tf"):
        import keras

        from companion.tensorflow import dcgan

        keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if variant == "tf-bf16" else "float32")
        gan = dcgan.DCGAN(jit_compile="xla" in variant, lr=2e-4, beta1=0.5)
        keras.mixed_precision.set_dtype_policy("float32")
        x = images[..., None]
        return lambda: float(gan.train_step(x, noise)["g_loss"])
    import torch

    from companion.torch import dcgan

    gan = dcgan.DCGAN(jit_compile=variant == "torch-compile")
    memory = torch.contiguous_format if variant == "torch-nchw" else torch.channels_last
    gan.discriminator.to(memory_format=memory)
    x = torch.from_numpy(images[:, None]).to(gan.device).contiguous(memory_format=memory)
    z = torch.from_numpy(noise).to(gan.device)
    if variant == "torch-bf16":

        def step() -> float:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return float(gan.train_step(x, z)["g_loss"])

        return step
    return lambda: float(gan.train_step(x, z)["g_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the variants")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, compiling)")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()

    import companion

    if any(not v.startswith("torch") for v in args.only):
        import companion.tensorflow
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (args.batch_size, 28, 28)).astype(np.float32)
    noise = rng.standard_normal((args.batch_size, 100)).astype(np.float32)
    companion.seed_everything(0)

    steps, times = {}, {v: [] for v in args.only}
    for variant in args.only:
        began = time.perf_counter()
        steps[variant] = make_step(variant, images, noise)
        for _ in range(args.warmup):
            steps[variant]()
        print(
            f"{variant:>14}: ready after {time.perf_counter() - began:.0f} s (build + {args.warmup} warm-up steps)"
        )
    for _ in range(args.rounds):
        for variant in args.only:
            for _ in range(args.steps):
                tick = time.perf_counter()
                steps[variant]()
                times[variant].append(time.perf_counter() - tick)

    import torch

    print(
        f"\nbatch {args.batch_size}, {args.rounds} x {args.steps} timed steps per variant; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    reference = float(np.median(times["tutorial"])) if "tutorial" in times else None
    print(f"{'variant':>14} | {'s/step':>7} | {'images/s':>8} | vs tutorial")
    print(f"{'-' * 14}-+-{'-' * 7}-+-{'-' * 8}-+-{'-' * 11}")
    for variant, values in times.items():
        median = float(np.median(values))
        ratio = f"{median / reference:.2f}x" if reference else "-"
        print(f"{variant:>14} | {median:7.3f} | {args.batch_size / median:8.0f} | {ratio:>11}")


if __name__ == "__main__":
    main()
