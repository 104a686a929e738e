"""Training recipes of the course: the settings each chapter (and the command line) trains with.

One place for them, so that a chapter, ``python -m companion train MODEL`` and the benchmarks train
exactly the same thing. Step budgets are stated for the 4,000-image MNIST subset; on another data
set a recipe keeps its number of steps (:meth:`Recipe.epochs_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """A training recipe: batch size, Adam settings and a budget in epochs of a data set."""

    name: str
    batch_size: int
    lr: float
    beta1: float
    epochs: int  # on the 4,000-image MNIST subset
    n_images: int = 4000
    fixed_epochs: bool = False  # True: the budget is this many epochs of any data set, as in the tutorial
    drop_last: bool = True  # GANs skip a last short batch; autoencoders train on it

    @property
    def steps(self) -> int:
        """Updates the budget amounts to on :attr:`n_images` images."""
        full, rest = divmod(self.n_images, self.batch_size)
        return self.epochs * (full if self.drop_last or rest == 0 else full + 1)

    def epochs_for(self, n_images: int) -> int:
        """Epochs that give about the same number of steps on a data set of ``n_images``
        (or just :attr:`epochs` for a recipe that counts epochs, like the tutorial's)."""
        if self.fixed_epochs:
            return self.epochs
        full, rest = divmod(n_images, self.batch_size)
        per_epoch = max(1, full if self.drop_last or rest == 0 else full + 1)  # counted as in :attr:`steps`
        return max(1, math.ceil(self.steps / per_epoch))


# The TensorFlow DCGAN tutorial: Adam 1e-4 (default beta_1 0.9), batch 256, 50 epochs.
TUTORIAL_RECIPE = Recipe("TF tutorial", batch_size=256, lr=1e-4, beta1=0.9, epochs=50, fixed_epochs=True)
# The DCGAN chapter's full-mode recipe, chosen by measurement on the subset.
DCGAN_RECIPE = Recipe("DCGAN chapter", batch_size=64, lr=2e-4, beta1=0.5, epochs=50)
# The MLP GAN of "Training GANs on MNIST": batches of 100, Adam 2e-4 / 0.5, 100 epochs of the subset.
MLP_GAN_RECIPE = Recipe("MLP GAN chapter", batch_size=100, lr=2e-4, beta1=0.5, epochs=100)
# "Autoencoders": the dense 784-32-784 autoencoder (Adam 1e-3, batch 256, 50 epochs).
# "Denoising autoencoders": the convolutional denoiser with a 64-number code (Adam 2e-3, batch 64,
# 20 epochs) at the original material's noise level, sigma 0.55.
AUTOENCODER_RECIPE = Recipe(
    "autoencoder chapter", batch_size=256, lr=1e-3, beta1=0.9, epochs=50, drop_last=False
)
AUTOENCODER_CODE_SIZE = 32
DENOISING_RECIPE = Recipe("denoising chapter", batch_size=64, lr=2e-3, beta1=0.9, epochs=20, drop_last=False)
DENOISING_CODE_SIZE = 64
DENOISING_SIGMA = 0.55
# "Variational autoencoders": the dense VAE with a 16-d code and the conditional VAE, Adam 1e-3, batch 128,
# 100 epochs. Measured on the subset (3,500 training + 500 validation images, PyTorch, seed 0): the
# validation ELBO is -117.7 / -114.9 nats after 50 / 100 epochs and -114.6 at best (epoch 124, of 150);
# the conditional VAE's -115.3 / -112.1 and -111.6 at best (epoch 135). 100 epochs take about 30 s of
# one CPU core (0.29 s/epoch) for either dense model. A 16-d code also gave the best samples: Frechet
# distance to the held-out digits 11.3 / 10.2 / 10.9 with 8 / 16 / 32 latent units (benchmarks/vae.py's FD).
VAE_RECIPE = Recipe("VAE chapter", batch_size=128, lr=1e-3, beta1=0.9, epochs=100, drop_last=False)
CVAE_RECIPE = Recipe("conditional VAE", batch_size=128, lr=1e-3, beta1=0.9, epochs=100, drop_last=False)
VAE_LATENT_SIZE = 16
# "Conditional GANs": the conditional GAN (and its unconditional twin), pix2pix on digits with the lower
# half hidden, and the 7x7 -> 28x28 upscaler; all Adam 2e-4 / 0.5 with batches of 64 (the DCGAN paper's).
# Budgets: about 2,500, 900 and 1,200 steps on the subset, each run one to two minutes on two CPU cores.
CGAN_RECIPE = Recipe("conditional GAN chapter", batch_size=64, lr=2e-4, beta1=0.5, epochs=40)
PIX2PIX_RECIPE = Recipe("pix2pix chapter", batch_size=64, lr=2e-4, beta1=0.5, epochs=15)
PIX2PIX_TASK = "lower_half"  # companion.image_pairs: the digit with rows 14-27 blanked -> the digit
SRGAN_RECIPE = Recipe("super-resolution chapter", batch_size=64, lr=2e-4, beta1=0.5, epochs=20)
SRGAN_FACTOR = 4  # 7x7 -> 28x28
