"""The two framework subpackages mirror each other: same files, same public names, same signatures,
the same starting weights, and one device policy."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # noqa: F401  # first: Keras on TensorFlow

# isort: split
import torch

from companion import bridge
from companion.training import loop

ROOT = Path(__file__).resolve().parents[1] / "companion"
# Constructors that differ, each with the reason.
SIGNATURE_EXCEPTIONS = {
    (
        "autoencoders",
        "Autoencoder",
    ): "PyTorch cannot infer the input shape (example_shape); Keras reads it from the encoder",
    (
        "blog_gans",
        "conv_gan_round",
    ): "Keras trains through the compiled combined model, PyTorch through (g_optimizer, d_optimizer)",
}
# Public names that exist on one side only, each with the reason.
ONE_SIDED = {
    (
        "gan",
        "keras_combined_model",
    ): "the Keras 2 combined-model idiom (Training GANs on MNIST) has no PyTorch form",
    ("gan", "keras_idiom_step"): "the Keras 2 combined-model idiom",
    ("gan", "train_gan_keras_idiom"): "the Keras 2 combined-model idiom",
    ("gan", "Generator"): "PyTorch needs module classes; Keras builds Sequential models",
    ("gan", "Discriminator"): "PyTorch needs module classes",
    ("gan", "torch_eval_mode"): "Keras' training=False, spelled out for PyTorch modules",
    ("blog_gans", "ConvGenerator"): "PyTorch needs module classes",
    ("blog_gans", "ConvDiscriminator"): "PyTorch needs module classes",
    ("cgan", "CganGenerator"): "PyTorch needs module classes; Keras builds functional models",
    ("cgan", "CganDiscriminator"): "PyTorch needs module classes; Keras builds functional models",
    ("anomaly", "DiscriminatorFeatures"): "PyTorch needs module classes; Keras builds functional models",
    ("cyclegan", "Translator"): "PyTorch needs module classes; Keras builds functional models",
    ("cyclegan", "DomainDiscriminator"): "PyTorch needs module classes; Keras builds functional models",
    ("simgan", "Refiner"): "PyTorch needs module classes; Keras builds functional models",
    ("simgan", "LocalDiscriminator"): "PyTorch needs module classes; Keras builds functional models",
    ("pix2pix", "UNet"): "PyTorch needs module classes; Keras builds functional models",
    ("pix2pix", "PatchDiscriminator"): "PyTorch needs module classes; Keras builds functional models",
    ("srgan", "SrGenerator"): "PyTorch needs module classes; Keras builds functional models",
    ("srgan", "SrDiscriminator"): "PyTorch needs module classes; Keras builds Sequential models",
    ("dcgan", "Generator"): "PyTorch needs module classes",
    ("dcgan", "Discriminator"): "PyTorch needs module classes",
    ("dcgan", "SameConv"): "Keras' padding='same' spelled out for PyTorch",
    ("dcgan", "SameConvTranspose"): "Keras' padding='same' spelled out for PyTorch",
    ("autoencoders", "ChannelsLastFlatten"): "Keras' flatten order spelled out for PyTorch",
    ("autoencoders", "ChannelsLastUnflatten"): "Keras' reshape order spelled out for PyTorch",
    ("training", "HARMLESS_NATIVE_LOGS"): "TensorFlow's C++ log lines that are hidden",
    ("basics", "TinyModule"): "PyTorch's nn.Module subclass; Keras builds a functional model",
    ("basics", "TwoOutputModule"): "PyTorch's nn.Module subclass",
    ("vae", "SameConv"): "Keras' padding='same' spelled out for PyTorch",
    ("vae", "SameConvTranspose"): "Keras' padding='same' spelled out for PyTorch",
    ("vae", "Encoder"): "PyTorch needs module classes; Keras builds functional models",
    ("vae", "Decoder"): "PyTorch needs module classes; Keras builds functional models",
}


def _modules(side: str) -> set[str]:
    return {m.name for m in pkgutil.iter_modules([str(ROOT / side)]) if not m.name.startswith("_")}


def _public(module) -> dict[str, object]:
    """Functions and classes defined in (or re-exported by) a module, and upper-case constants."""
    names = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        value = getattr(value, "python_function", value)  # a tf.function: the Python function inside
        if inspect.isfunction(value) or inspect.isclass(value):
            home = value.__module__
            own = home == module.__name__
            # Re-exports of the neutral training tasks (GanRun) and errors are part of the public face;
            # helpers imported from elsewhere are their own module's business.
            shared = home == "companion.training.tasks" or (
                inspect.isclass(value) and issubclass(value, Exception)
            )
            if own or shared:
                names[name] = value
        elif name.isupper() and not inspect.ismodule(value):
            names[name] = value
    return names


def _plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, (int, float, str))


def _signature(value: object) -> str:
    target = value.__init__ if inspect.isclass(value) else value  # type: ignore[misc]
    sig = inspect.signature(target)
    # Parameter names, kinds and defaults; annotations name framework types and may differ.
    return str([(p.name, p.kind, p.default) for p in sig.parameters.values()])


def test_the_same_files_on_both_sides() -> None:
    assert _modules("tensorflow") == _modules("torch")


@pytest.mark.parametrize("name", sorted(_modules("tensorflow")))
def test_same_public_names_and_signatures(name: str) -> None:
    tf_module = importlib.import_module(f"companion.tensorflow.{name}")
    pt_module = importlib.import_module(f"companion.torch.{name}")
    tf_names, pt_names = _public(tf_module), _public(pt_module)
    for missing, side in (
        (set(tf_names) - set(pt_names), "torch"),
        (set(pt_names) - set(tf_names), "tensorflow"),
    ):
        unexplained = sorted(n for n in missing if (name, n) not in ONE_SIDED)
        assert not unexplained, f"{name}.py: {unexplained} missing on the {side} side"
    for common in sorted(set(tf_names) & set(pt_names)):
        a, b = tf_names[common], pt_names[common]
        if (name, common) in SIGNATURE_EXCEPTIONS:
            continue
        if callable(a) and callable(b) and not common.isupper():
            assert _signature(a) == _signature(b), f"{name}.{common}: signatures differ"
            if inspect.isclass(a):
                methods = {m for m in vars(a) if not m.startswith("_") and callable(getattr(a, m))}
                for method in sorted(methods & set(vars(b))):
                    assert _signature(getattr(a, method)) == _signature(getattr(b, method)), (
                        f"{common}.{method}"
                    )
        elif common.isupper() and _plain(a) and common not in ("FRAMEWORK", "BN_MOMENTUM"):
            assert a == b, f"{name}.{common}: {a!r} != {b!r}"


def test_the_mirror_check_fails_when_one_side_changes_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from companion.torch import dcgan

    def train(images, *, epochs, batch_size=128):
        return None

    train.__module__ = dcgan.__name__
    monkeypatch.setattr(dcgan, "train", train)
    with pytest.raises(AssertionError, match="signatures differ"):
        test_same_public_names_and_signatures("dcgan")


def test_import_companion_imports_no_framework_and_sides_never_import_each_other() -> None:
    code = "import companion, companion.cli, companion.training.tasks, sys; print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for side, other in (("tensorflow", "torch"), ("torch", "tensorflow")):
        for path in (ROOT / side).glob("*.py"):
            imports = re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(), flags=re.M)
            assert not [
                m for m in imports if m.split(".")[0] == other or m.startswith(f"companion.{other}")
            ], path


# --------------------------------------------------------------------------- same start


def _architectures():
    from companion.tensorflow import autoencoders as tfa
    from companion.tensorflow import basics as tfb
    from companion.tensorflow import blog_gans as tfbg
    from companion.tensorflow import cgan as tfc
    from companion.tensorflow import cyclegan as tfcg
    from companion.tensorflow import dcgan as tfd
    from companion.tensorflow import gan as tfg
    from companion.tensorflow import pix2pix as tfp
    from companion.tensorflow import simgan as tfsg
    from companion.tensorflow import srgan as tfsr
    from companion.tensorflow import vae as tfv
    from companion.torch import autoencoders as pta
    from companion.torch import basics as ptb
    from companion.torch import blog_gans as ptbg
    from companion.torch import cgan as ptc
    from companion.torch import cyclegan as ptcg
    from companion.torch import dcgan as ptd
    from companion.torch import gan as ptg
    from companion.torch import pix2pix as ptp
    from companion.torch import simgan as ptsg
    from companion.torch import srgan as ptsr
    from companion.torch import vae as ptv

    yield "basics", tfb.tiny_functional(), ptb.tiny_functional()
    for kind in ("dense", "deep", "conv"):
        yield f"{kind} autoencoder", tfa.build_autoencoder(kind), pta.build_autoencoder(kind)
    yield "MLP generator", tfg.build_generator(), ptg.build_generator()
    yield "MLP discriminator", tfg.build_discriminator(), ptg.build_discriminator()
    yield "DCGAN generator", tfd.make_generator(), ptd.make_generator()
    # Without batch norm the generator's layers carry biases, which must start at zero too.
    yield (
        "DCGAN generator without BN",
        tfd.make_generator(batch_norm=False),
        ptd.make_generator(batch_norm=False),
    )
    yield "DCGAN discriminator", tfd.make_discriminator(), ptd.make_discriminator()
    yield "toy discriminator", tfg.build_toy_discriminator(), ptg.build_toy_discriminator()
    for kind in ("dense", "conv"):
        yield f"{kind} conditional VAE", tfv.build_vae(kind, n_classes=10), ptv.build_vae(kind, n_classes=10)
    yield "blog posts' conv generator", tfbg.build_conv_generator(), ptbg.build_conv_generator()
    yield "blog posts' conv discriminator", tfbg.build_conv_discriminator(), ptbg.build_conv_discriminator()
    for n in (10, 0):
        yield f"cGAN generator (n_classes={n})", tfc.build_cgan_generator(n), ptc.build_cgan_generator(n)
        yield (
            f"cGAN discriminator (n_classes={n})",
            tfc.build_cgan_discriminator(n),
            ptc.build_cgan_discriminator(n),
        )
    yield "pix2pix U-Net", tfp.build_unet(), ptp.build_unet()
    yield "pix2pix PatchGAN", tfp.build_patch_discriminator(), ptp.build_patch_discriminator()
    yield "SR generator", tfsr.build_sr_generator(), ptsr.build_sr_generator()
    yield "SR generator x2", tfsr.build_sr_generator(2), ptsr.build_sr_generator(2)
    yield "SR discriminator", tfsr.build_sr_discriminator(), ptsr.build_sr_discriminator()
    yield "CycleGAN translator", tfcg.build_translator(), ptcg.build_translator()
    yield (
        "CycleGAN domain discriminator",
        tfcg.build_domain_discriminator(),
        ptcg.build_domain_discriminator(),
    )
    yield "SimGAN refiner", tfsg.build_refiner(), ptsg.build_refiner()
    yield "SimGAN local discriminator", tfsg.build_local_discriminator(), ptsg.build_local_discriminator()


def test_fresh_models_start_from_the_same_weight_distribution() -> None:
    """Per layer: the same Glorot-uniform bound, kernels spread like U(-a, a), biases zero, on both sides."""
    checked = 0
    for name, keras_model, torch_model in _architectures():
        for k_layer, t_module in bridge.paired_layers(keras_model, torch_model):
            k_weights = k_layer.get_weights()
            t_weights = [t.detach().numpy() for t in bridge.torch_tensors(t_module)]
            if isinstance(t_module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                for a, b in zip(k_weights, t_weights, strict=True):
                    np.testing.assert_array_equal(a, b.reshape(a.shape), err_msg=f"{name} {k_layer.name}")
                continue
            k_kernel, t_kernel = k_weights[0], t_weights[0]
            limit = np.sqrt(6.0 / sum(bridge.fans(k_kernel.shape)))
            for side, kernel in (("Keras", k_kernel), ("PyTorch", t_kernel)):
                assert np.abs(kernel).max() <= limit * (1 + 1e-6), (
                    f"{name} {k_layer.name} {side}: beyond the bound"
                )
                if kernel.size >= 1000:  # the std of U(-a, a) is a / sqrt(3); 5% covers sampling noise
                    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05), (
                        f"{name} {k_layer.name} {side}"
                    )
            for bias in k_weights[1:] + t_weights[1:]:
                assert not np.any(bias), f"{name} {k_layer.name}: biases must start at zero"
            checked += 1
    assert checked >= 20


# --------------------------------------------------------------------------- one device policy


def test_runtime_device_policy() -> None:
    from companion.tensorflow import runtime as tf_runtime
    from companion.torch import runtime as pt_runtime

    assert pt_runtime.device("cpu") == torch.device("cpu")
    assert tf_runtime.device("cpu") == "/CPU:0"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pt_runtime.device(None).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pt_runtime.device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        pt_runtime.device("tpu")
    with pytest.raises(ValueError, match="device must be"):
        tf_runtime.device("tpu")


def test_every_tensor_the_loop_touches_is_on_the_requested_device() -> None:
    """The PyTorch trainer moves the models and data once and feeds the step device tensors only."""
    from companion.torch import autoencoders as pta

    model = pta.dense_autoencoder(8)
    side = pta._side(model)
    trainer = side.trainer(1e-3, "cpu")
    seen = []
    step = trainer._step

    def spying(batch):
        seen.extend(t.device for t in batch.values())
        seen.extend(p.device for p in model.parameters())
        return step(batch)

    trainer._step = spying
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    plan = loop.Plan({"targets": x}, 16, inputs=lambda index, rng: {"inputs": x[index]})
    loop.fit(trainer, plan, epochs=1, log_every=0)
    assert seen and all(d == torch.device("cpu") for d in seen)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_training_resumes_like_an_unbroken_run(tmp_path: Path) -> None:
    from companion.torch import dcgan

    x = np.random.default_rng(0).random((128, 28, 28), dtype=np.float32)
    settings = dict(batch_size=32, seed=3, checkpoint_every=1, probes=0, log_every=0, device="cuda")
    _, whole = dcgan.train(x, epochs=3, out_dir=tmp_path / "a", **settings)
    dcgan.train(x, epochs=2, out_dir=tmp_path / "b", **settings)
    _, resumed = dcgan.train(x, epochs=3, out_dir=tmp_path / "b", **settings)
    np.testing.assert_allclose(whole["g_loss"], resumed["g_loss"], rtol=1e-5)


@cuda
def test_cuda_models_and_outputs_stay_on_the_gpu() -> None:
    from companion.torch import gan

    x = np.random.default_rng(0).random((200, 784), dtype=np.float32)
    run = gan.train_gan(x, epochs=1, log_every=0, device="cuda")
    assert all(p.is_cuda for p in run.generator.parameters())
    assert gan.generate(run.generator, np.zeros((2, 128), np.float32)).shape == (2, 784)
