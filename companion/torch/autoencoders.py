"""Chapters 2-3: autoencoders in PyTorch -- dense, deeper dense and convolutional.

Every model is an :class:`Autoencoder` holding an ``encoder`` (images -> code) and a
``decoder`` (code -> images in [0, 1]). ``companion.tensorflow.autoencoders`` builds the
same networks with the same layer names, so ``companion.bridge`` copies weights both ways.

Data layout: dense models take flat images ``(N, 784)``; the convolutional model takes
channels-first images ``(N, 1, 28, 28)``, as PyTorch expects. Pixels lie in [0, 1].
Weights start as in Keras (Glorot-uniform, zero biases) so both sides train the same recipe.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Unpack

import numpy as np
import torch
from torch import nn

from companion.torch import runtime
from companion.torch.init import initialize
from companion.torch.training import FRAMEWORK, Trainer, load_weights, make_adam
from companion.training import tasks
from companion.validation import check_images, check_positive

PIXELS = 784
DEEP_HIDDEN = (256, 128)
CONV_FILTERS = (16, 32)  # 28x28 -> 14x14x16 -> 7x7x32
KINDS = ("dense", "deep", "conv")


class ChannelsLastFlatten(nn.Module):
    """(N, C, H, W) -> (N, H*W*C), flattening in Keras' channels-last order.

    Keras flattens (H, W, C); flattening the same way lets the next Linear layer take
    the Keras Dense kernel unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class ChannelsLastUnflatten(nn.Module):
    """(N, H*W*C) -> (N, C, H, W), reading the vector in Keras' channels-last order."""

    def __init__(self, height: int, width: int, channels: int) -> None:
        super().__init__()
        self.shape = (height, width, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *self.shape).permute(0, 3, 1, 2)


class Autoencoder(nn.Module):
    """``decoder(encoder(x))``; ``example_shape`` is the shape of one input image."""

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, *, kind: str, example_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.kind = kind
        self.encoder = encoder
        self.decoder = decoder
        self.example_shape = tuple(example_shape)
        self.code_size = int(self.encoder(torch.zeros(1, *self.example_shape)).shape[-1])
        initialize(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def dense_autoencoder(code_size: int = 32) -> Autoencoder:
    """The classic recipe: 784 -> ``code_size`` (ReLU) -> 784 (sigmoid).

    With ``code_size=32`` the code is 24.5 times smaller than the image.
    """
    check_positive("code_size", code_size, integer=True)
    encoder = nn.Sequential(OrderedDict(code=nn.Linear(PIXELS, code_size), code_relu=nn.ReLU()))
    decoder = nn.Sequential(
        OrderedDict(reconstruction=nn.Linear(code_size, PIXELS), reconstruction_sigmoid=nn.Sigmoid())
    )
    return Autoencoder(encoder, decoder, kind="dense", example_shape=(PIXELS,))


def deep_autoencoder(code_size: int = 32) -> Autoencoder:
    """784 -> 256 -> 128 -> ``code_size`` -> 128 -> 256 -> 784, ReLU hidden layers.

    The code layer is linear, so codes may take any sign; the Autoencoders chapter's Exercise 2.2
    measures that at d = 2 a ReLU code does about as well (its bias moves the codes into the positive quarter).
    """
    check_positive("code_size", code_size, integer=True)
    h1, h2 = DEEP_HIDDEN
    encoder = nn.Sequential(
        OrderedDict(
            encode_1=nn.Linear(PIXELS, h1),
            relu_1=nn.ReLU(),
            encode_2=nn.Linear(h1, h2),
            relu_2=nn.ReLU(),
            code=nn.Linear(h2, code_size),
        )
    )
    decoder = nn.Sequential(
        OrderedDict(
            decode_1=nn.Linear(code_size, h2),
            relu_1=nn.ReLU(),
            decode_2=nn.Linear(h2, h1),
            relu_2=nn.ReLU(),
            reconstruction=nn.Linear(h1, PIXELS),
            sigmoid=nn.Sigmoid(),
        )
    )
    return Autoencoder(encoder, decoder, kind="deep", example_shape=(PIXELS,))


def conv_autoencoder(code_size: int = 32) -> Autoencoder:
    """Two strided convolutions down to 32x7x7, a linear ``code_size`` code, and back.

    Kernels are 4x4 with stride 2 and ``padding=1``: the same windows as Keras'
    ``padding="same"`` for these sizes. Input and output: ``(N, 1, 28, 28)`` in [0, 1].
    """
    check_positive("code_size", code_size, integer=True)
    c1, c2 = CONV_FILTERS
    conv: dict[str, Any] = {"kernel_size": 4, "stride": 2, "padding": 1}
    encoder = nn.Sequential(
        OrderedDict(
            conv_1=nn.Conv2d(1, c1, **conv),
            relu_1=nn.ReLU(),
            conv_2=nn.Conv2d(c1, c2, **conv),
            relu_2=nn.ReLU(),
            flatten=ChannelsLastFlatten(),
            code=nn.Linear(7 * 7 * c2, code_size),
        )
    )
    decoder = nn.Sequential(
        OrderedDict(
            expand=nn.Linear(code_size, 7 * 7 * c2),
            relu_0=nn.ReLU(),
            unflatten=ChannelsLastUnflatten(7, 7, c2),
            deconv_1=nn.ConvTranspose2d(c2, c1, **conv),
            relu_1=nn.ReLU(),
            reconstruction=nn.ConvTranspose2d(c1, 1, **conv),
            sigmoid=nn.Sigmoid(),
        )
    )
    return Autoencoder(encoder, decoder, kind="conv", example_shape=(1, 28, 28))


def build_autoencoder(kind: str, code_size: int = 32) -> Autoencoder:
    """``kind`` is ``"dense"``, ``"deep"`` or ``"conv"``; see the three builders."""
    builders = {"dense": dense_autoencoder, "deep": deep_autoencoder, "conv": conv_autoencoder}
    if kind not in builders:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return builders[kind](code_size)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel of the batch (a scalar), the loss both sides train on."""
    return torch.mean((x.float() - x_hat) ** 2)


@torch.no_grad()
def _apply(part: nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    was_training = part.training
    part.eval()
    device = next(part.parameters()).device
    tensor = torch.as_tensor(x)
    outs = [part(tensor[i : i + batch_size].to(device)).cpu().numpy() for i in range(0, len(x), batch_size)]
    part.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def encode(model: Autoencoder, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Codes ``(N, code_size)`` of images ``x`` in [0, 1] in the model's layout."""
    return _apply(model.encoder, check_images(x, name="x", shape=model.example_shape), batch_size)


def decode(model: Autoencoder, z: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Images in [0, 1], in the model's layout, decoded from codes ``z`` of shape ``(N, code_size)``."""
    z = check_images(z, name="z", value_range=(-np.inf, np.inf), shape=(model.code_size,))
    return _apply(model.decoder, z, batch_size)


def reconstruct(model: Autoencoder, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """``decode(encode(x))`` as a NumPy array of the same shape as ``x``."""
    return decode(model, encode(model, x, batch_size), batch_size)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- training


def autoencoder_step(model: Autoencoder, optimizer: torch.optim.Optimizer):
    """The train step: reconstruct ``batch["targets"]`` from ``batch["inputs"]`` (the targets
    themselves unless a denoiser's corrupted copies are given) and take one Adam step on the MSE."""

    def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model.train()
        targets = batch["targets"]
        loss = reconstruction_loss(targets, model(batch.get("inputs", targets)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"train": loss.detach()}

    return step


@torch.no_grad()
def evaluate_loss(
    model: Autoencoder, x_clean: np.ndarray, x_input: np.ndarray | None = None, batch_size: int = 1000
) -> float:
    """Mean reconstruction loss of ``model(x_input)`` against ``x_clean`` (``x_input`` defaults to
    ``x_clean``), averaged over every pixel of every image."""
    x_input = x_clean if x_input is None else x_input
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x_clean), batch_size):
        x_hat = model(torch.as_tensor(x_input[i : i + batch_size], device=device))
        clean = torch.as_tensor(x_clean[i : i + batch_size], device=device)
        total += float(reconstruction_loss(clean, x_hat)) * len(x_hat)
    model.train(was_training)
    return total / len(x_clean)


def _side(model: Autoencoder) -> tasks.AutoencoderSide:
    def trainer(learning_rate: float, device: str | None) -> Trainer:
        model.to(runtime.device(device))  # before the optimiser, so that its state lives there too
        optimizer = make_adam(model, learning_rate, **tasks.AE_ADAM)
        return Trainer(
            autoencoder_step(model, optimizer),
            models={"autoencoder": model},
            optimizers={"adam": optimizer},
            device=device,
        )

    return tasks.AutoencoderSide(
        FRAMEWORK,
        model.kind,
        model.code_size,
        model.example_shape,
        trainer,
        lambda clean, inputs: evaluate_loss(model, clean, inputs),
    )


def fit_autoencoder(
    model: Autoencoder,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    **settings: Unpack[tasks.AutoencoderSettings],
) -> dict[str, list]:
    """Train ``model`` through the one loop; the settings and the returned history are those of
    :func:`companion.training.tasks.fit_autoencoder` (epochs, batch_size, learning_rate, noise, seed,
    out_dir, checkpoint_every, overwrite, log_every, device)."""
    return tasks.fit_autoencoder(_side(model), x_train, x_val, **settings)


def load_autoencoder(out_dir: str | os.PathLike, device: str | None = None) -> Autoencoder:
    """The autoencoder trained into run folder ``out_dir``, with the weights of its latest checkpoint."""
    config, folder = tasks.autoencoder_run(out_dir, FRAMEWORK)
    model = build_autoencoder(config["kind"], config["code_size"])
    load_weights(folder, {"autoencoder": model}, device)
    return model
