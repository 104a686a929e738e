"""CycleGAN: the unpaired batches, weight transfer and loss parity between the two frameworks (cycle,
identity and adversarial terms), one train step on both sides, the one loop (training lowers the cycle
loss, turning the cycle term off, resume equals an unbroken run, run folders) and the input checks.

The two domains are toys made from MNIST: real digits (A) and the same digits with strokes thickened
by one pixel (B), shuffled apart so that no image of A meets its partner in B.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # first: Keras on TensorFlow

# isort: split
import keras
import torch

import companion
from companion import bridge
from companion.tensorflow import cyclegan as tf_cg
from companion.torch import cyclegan as pt_cg
from companion.training import cyclegan_task, loop
from companion.training.run_folder import RunFolderError
from companion.validation import InputError

SIDES = {"tensorflow": tf_cg, "torch": pt_cg}
TOL = 1e-4
TIMINGS = {"seconds", "train_seconds", "steps"}
ALL_METRICS = {"g_adv", "cycle", "identity", "d_a", "d_b"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


def thicken(images: np.ndarray) -> np.ndarray:
    """Strokes one pixel wider: the pixelwise maximum of each digit and its shifts right, down and both."""
    padded = np.pad(images, ((0, 0), (1, 0), (1, 0)))
    return np.maximum.reduce([padded[:, 1:, 1:], padded[:, :-1, 1:], padded[:, 1:, :-1], padded[:, :-1, :-1]])


@pytest.fixture(scope="module")
def domains() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(a, labels_a, b, labels_b)``: 128 real digits and 128 other digits thickened, (N, 28, 28) in [0, 1]."""
    x, y = companion.load_mnist("train", layout="hw", source="subset", limit=256, verbose=False)
    return x[:128], y[:128], thicken(x[128:]), y[128:]


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def copy_all(keras_model: tf_cg.CycleGAN, torch_model: pt_cg.CycleGAN) -> None:
    for name in cyclegan_task.NETWORKS:
        bridge.keras_to_torch(getattr(keras_model, name), getattr(torch_model, name))


def random_batches(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two unrelated batches in [-1, 1], channels last."""
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32) for _ in range(2))  # type: ignore[return-value]


# --------------------------------------------------------------------------- unpaired batches


class _Recorder:
    """A trainer that trains nothing and records which rows of A and which images of B each step saw."""

    framework = "none"
    device = "cpu"

    def __init__(self) -> None:
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []

    def upload(self, arrays) -> None:
        return None

    def step(self, index, inputs):
        self.steps.append((np.array(index), inputs["images_b"][:, 0, 0, 0].astype(int)))
        return {"loss": 0.0}

    def to_floats(self, values):
        return dict(values)


def _record(seed: int, n_a: int = 40, n_b: int = 25) -> list[tuple[np.ndarray, np.ndarray]]:
    """Steps of a 3-epoch run on A = 40 rows and B = 25 images whose pixel [0, 0] holds their row number."""
    b = np.zeros((n_b, 1, 28, 28), np.float32)
    b[:, 0, 0, 0] = np.arange(n_b)
    batches_b = cyclegan_task.UnpairedBatches(b, 8)
    plan = loop.Plan(
        {"images_a": np.zeros((n_a, 1, 28, 28), np.float32)}, 8, drop_last=True, inputs=batches_b.inputs
    )
    recorder = _Recorder()
    loop.fit(recorder, plan, epochs=3, seed=seed, log_every=0, monitor=batches_b)  # type: ignore[arg-type]
    return recorder.steps


def test_each_domain_is_shuffled_on_its_own_and_repeatably() -> None:
    steps = _record(seed=1)
    assert len(steps) == 15  # 40 // 8 steps per epoch
    for epoch in range(3):
        rows_a = np.concatenate([a for a, _ in steps[5 * epoch : 5 * epoch + 5]])
        assert sorted(rows_a) == list(range(40))  # one pass over A per epoch
        rows_b = [b for _, b in steps[5 * epoch : 5 * epoch + 5]]
        # B (25 images) gives 3 batches per permutation: no image twice among them, then a new permutation.
        assert len(set(np.concatenate(rows_b[:3]))) == 24 and len(set(np.concatenate(rows_b[3:]))) == 16
    first_pairs = {(a, b) for a_rows, b_rows in steps[:5] for a, b in zip(a_rows, b_rows, strict=True)}
    later_pairs = {(a, b) for a_rows, b_rows in steps[5:10] for a, b in zip(a_rows, b_rows, strict=True)}
    assert len(first_pairs & later_pairs) < 10  # an image of A does not keep its partner in B
    again, other = _record(seed=1), _record(seed=2)
    assert all(
        np.array_equal(x[1], y[1]) and np.array_equal(x[0], y[0]) for x, y in zip(steps, again, strict=True)
    )
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(steps, other, strict=True))


# --------------------------------------------------------------------------- the networks on both sides


def test_same_layers_parameter_counts_and_patch_field() -> None:
    kg, tg = tf_cg.build_translator(), pt_cg.build_translator()
    kd, td = tf_cg.build_domain_discriminator(), pt_cg.build_domain_discriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert sum(w.numpy().size for w in kg.trainable_weights) == count(tg) == 54_817
    assert sum(w.numpy().size for w in kd.trainable_weights) == count(td) == 8_753
    assert [layer.name for layer in kg.layers if layer.weights] == [
        name.split(".")[-1]
        for name, m in tg.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    assert kg.output_shape == (None, 28, 28, 1) and kd.output_shape == (None, 7, 7, 1)
    # Through the convolutions one interior score sees an 18x18 patch; instance norm then mixes in the
    # statistics of the whole image, so the score's gradient reaches every pixel.
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    td(x)[0, 0, 3, 3].backward()
    assert cyclegan_task.PATCH_RECEPTIVE_FIELD == 18 and (x.grad != 0).all()


@pytest.mark.parametrize("direction", ["keras_to_torch", "torch_to_keras"])
def test_weight_transfer_gives_the_same_outputs(direction: str) -> None:
    kg, tg = tf_cg.build_translator(seed=1), pt_cg.build_translator(seed=2)
    kd, td = tf_cg.build_domain_discriminator(seed=3), pt_cg.build_domain_discriminator(seed=4)
    with torch.no_grad():  # non-zero biases, so that they are copied too
        for m in (tg.to_image, td.patch1, td.patch_logits):
            m.bias.uniform_(-0.2, 0.2)
    for k, t in ((kg, tg), (kd, td)):
        bridge.keras_to_torch(k, t) if direction == "keras_to_torch" else bridge.torch_to_keras(t, k)
    x, _ = random_batches()
    with torch.no_grad():
        g_torch, d_torch = nhwc(tg(nchw(x))), nhwc(td(nchw(x)))
    np.testing.assert_allclose(kg(x, training=True).numpy(), g_torch, atol=TOL, err_msg="translator")
    np.testing.assert_allclose(kd(x, training=True).numpy(), d_torch, atol=TOL, err_msg="discriminator")
    # Instance norm keeps no statistics: inference computes what training does.
    np.testing.assert_allclose(kg(x, training=False).numpy(), g_torch, atol=TOL)


@pytest.mark.parametrize("gan_loss", cyclegan_task.GAN_LOSSES)
def test_cycle_identity_and_adversarial_terms_agree_on_the_same_batch(gan_loss: str, domains) -> None:
    a, _, b, _ = domains
    k = tf_cg.CycleGAN(gan_loss=gan_loss, device="cpu", seed=0)
    t = pt_cg.CycleGAN(gan_loss=gan_loss, device="cpu")
    copy_all(k, t)
    keras_terms, torch_terms = k.losses(a[:16], b[:16]), t.losses(a[:16], b[:16])
    assert set(keras_terms) == set(torch_terms) == ALL_METRICS
    for name in ALL_METRICS:
        assert keras_terms[name] == pytest.approx(torch_terms[name], rel=TOL, abs=TOL), name
    # The cycle term is |G_ba(G_ab(a)) - a| + |G_ab(G_ba(b)) - b| in [-1, 1]: twice the error in [0, 1] pixels.
    there_and_back = np.mean(np.abs(t.b_to_a(t.a_to_b(a[:16])) - a[:16]))
    back_and_there = np.mean(np.abs(t.a_to_b(t.b_to_a(b[:16])) - b[:16]))
    assert torch_terms["cycle"] == pytest.approx(2 * (there_and_back + back_and_there), rel=1e-5)
    identity = np.mean(np.abs(k.a_to_b(b[:16]) - b[:16])) + np.mean(np.abs(k.b_to_a(a[:16]) - a[:16]))
    assert keras_terms["identity"] == pytest.approx(2 * identity, rel=1e-5)


def test_the_adversarial_losses_at_known_scores() -> None:
    zero, one = np.zeros((2, 7, 7, 1), np.float32), np.ones((2, 7, 7, 1), np.float32)
    for module, convert in ((tf_cg, keras.ops.convert_to_tensor), (pt_cg, torch.from_numpy)):
        # LSGAN: G wants scores 1, D wants 1 on real and 0 on fake.
        assert float(module.generator_adversarial_loss(convert(zero))) == pytest.approx(1.0)
        assert float(module.generator_adversarial_loss(convert(one))) == pytest.approx(0.0)
        assert float(module.discriminator_loss(convert(one), convert(zero))) == pytest.approx(0.0)
        assert float(module.discriminator_loss(convert(zero), convert(one))) == pytest.approx(2.0)
        # BCE on logits 0: ln 2 for G, 2 ln 2 for D.
        assert float(module.generator_adversarial_loss(convert(zero), "bce")) == pytest.approx(np.log(2))
        assert float(module.discriminator_loss(convert(zero), convert(zero), "bce")) == pytest.approx(
            2 * np.log(2)
        )


def test_one_train_step_matches_across_frameworks() -> None:
    """Same weights and batches: the same step metrics, then all four networks move, no NaN."""
    k, t = tf_cg.CycleGAN(device="cpu", seed=0), pt_cg.CycleGAN(device="cpu")
    copy_all(k, t)
    before = {
        name: [p.detach().clone() for p in getattr(t, name).parameters()] for name in cyclegan_task.NETWORKS
    }
    a, b = random_batches(16, seed=4)
    steps_k = [{n: float(v) for n, v in k.train_step(a, b).items()} for _ in range(2)]
    steps_t = [{n: float(v) for n, v in t.train_step(nchw(a), nchw(b)).items()} for _ in range(2)]
    assert set(steps_k[0]) == set(steps_t[0]) == ALL_METRICS
    for name in ALL_METRICS:
        assert abs(steps_k[0][name] - steps_t[0][name]) <= TOL, name
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert abs(steps_k[1][name] - steps_t[1][name]) <= 5e-3, name
    for first, second in (steps_k, steps_t):
        assert np.isfinite(list(first.values()) + list(second.values())).all()
        assert all(abs(second[n] - first[n]) > 1e-5 for n in ALL_METRICS)
    for name, old in before.items():
        assert all((p != o).any() for p, o in zip(getattr(t, name).parameters(), old, strict=True)), name
    for name in cyclegan_task.NETWORKS:  # and the Keras networks moved as the PyTorch ones did
        for k_layer, t_module in bridge.paired_layers(getattr(k, name), getattr(t, name)):
            kernel = bridge.torch_tensors(t_module)[0].detach().numpy()
            assert np.abs(k_layer.get_weights()[0] - kernel.transpose(2, 3, 1, 0)).max() < 1e-3, name


# --------------------------------------------------------------------------- the one loop


@pytest.mark.parametrize("side", SIDES)
def test_quick_training_lowers_the_cycle_loss(side: str, domains) -> None:
    module = SIDES[side]
    a, _, b, _ = domains
    model, history = module.train(
        a, b, epochs=3, batch_size=16, steps_per_epoch=6, log_every=0, seed=1, device="cpu"
    )
    assert set(history) == ALL_METRICS | TIMINGS and history["steps"] == [6, 6, 6]
    assert history["cycle"][-1] < 0.8 * history["cycle"][0]
    assert model.metrics == ("g_adv", "cycle", "identity", "d_a", "d_b")
    for outputs in (model.a_to_b(a[:5]), model.b_to_a(b[:5]), module.translate(model.g_ab, a[:5])):
        assert outputs.shape == (5, 28, 28) and 0.0 <= outputs.min() and outputs.max() <= 1.0


@pytest.mark.parametrize("side", SIDES)
def test_without_cycle_consistency_no_cycle_term_is_computed(side: str, domains) -> None:
    module = SIDES[side]
    a, _, b, _ = domains
    settings = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2, "log_every": 0, "device": "cpu"}
    model, history = module.train(a, b, cycle_weight=0.0, gan_loss="bce", **settings)
    assert (
        set(history) == {"g_adv", "identity", "d_a", "d_b", *TIMINGS} and np.isfinite(history["g_adv"]).all()
    )
    assert "cycle" not in model.losses(a[:8], b[:8]) and model.metrics == ("g_adv", "identity", "d_a", "d_b")
    bare = module.CycleGAN(cycle_weight=0, identity_weight=0, device="cpu")
    assert set(bare.losses(a[:8], b[:8])) == {"g_adv", "d_a", "d_b"} == set(bare.metrics)


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, domains, tmp_path: Path, capsys) -> None:
    module = SIDES[side]
    a, _, b, _ = domains
    a, b = a[:64], b[:48]  # the domains need not be the same size
    settings = {"batch_size": 16, "steps_per_epoch": 2, "seed": 3, "device": "cpu", "log_every": 1}
    unbroken_model, unbroken = module.train(a, b, epochs=3, out_dir=tmp_path / "a", **settings)
    module.train(a, b, epochs=2, out_dir=tmp_path / "b", **settings)
    capsys.readouterr()
    resumed_model, resumed = module.train(a, b, epochs=3, out_dir=tmp_path / "b", **settings)
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path / 'b'} after epoch 2" in printed and "epoch 1/3" not in printed
    for name in ALL_METRICS:
        np.testing.assert_allclose(resumed[name], unbroken[name], rtol=1e-5, err_msg=name)
    expected = unbroken_model.b_to_a(b[:8])
    np.testing.assert_allclose(resumed_model.b_to_a(b[:8]), expected, atol=1e-5)
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["model"] == "cyclegan" and run["cycle_weight"] == 10.0 and run["identity_weight"] == 5.0
    assert run["gan_loss"] == "lsgan" and (run["n_a"], run["n_b"]) == (64, 48)
    assert (run["filters"], run["residual_blocks"]) == (cyclegan_task.FILTERS, cyclegan_task.RESIDUAL_BLOCKS)
    loaded = module.load(tmp_path / "b", device="cpu")
    np.testing.assert_allclose(loaded.b_to_a(b[:8]), expected, atol=1e-5)
    other = SIDES["torch" if side == "tensorflow" else "tensorflow"]
    with pytest.raises(RunFolderError, match="not a"):
        other.load(tmp_path / "b")


@pytest.mark.parametrize("side", SIDES)
def test_a_given_model_is_trained_and_must_match_the_settings(side: str, domains) -> None:
    module = SIDES[side]
    a, _, b, _ = domains
    given = module.CycleGAN(filters=8, residual_blocks=1, identity_weight=0.0, seed=5, device="cpu")
    start = given.a_to_b(a[:4])
    settings = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "log_every": 0}
    trained, _ = module.train(a, b, identity_weight=0.0, gan=given, **settings)
    assert trained is given and np.abs(given.a_to_b(a[:4]) - start).max() > 0
    with pytest.raises(InputError, match=r"gan= was built with identity_weight=0\.0"):
        module.train(a, b, gan=given, **settings)


# --------------------------------------------------------------------------- scores and bad input


class _StubClassifier:
    """Prediction: the row with the most ink, modulo 10."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images).reshape(len(images), 28, 28).mean(axis=2).argmax(axis=1) % 10


def test_label_preservation(domains) -> None:
    a, _, _, _ = domains
    stub = _StubClassifier()
    labels = stub.predict(a[:20])
    assert cyclegan_task.label_preservation(a[:20], labels, stub) == 1.0
    assert cyclegan_task.label_preservation(a[:20, None], (labels + 1) % 10, stub) == 0.0
    half = labels.copy()
    half[:10] = (half[:10] + 1) % 10
    assert cyclegan_task.label_preservation(a[:20, ..., None], half, stub) == 0.5
    cases = [
        (
            lambda: cyclegan_task.label_preservation(a[:20], labels[:10], stub),
            r"20 integer digits.*shape \(10,\)",
        ),
        (lambda: cyclegan_task.label_preservation(a[:20], labels.astype(float), stub), "integer digits"),
        (lambda: cyclegan_task.label_preservation(a[:20], labels + 10, stub), "digits 0-9"),
        (lambda: cyclegan_task.label_preservation(a[:20].reshape(20, 784), labels, stub), "28x28"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()


@pytest.mark.parametrize("side", SIDES)
def test_bad_inputs_get_clear_errors(side: str, domains) -> None:
    module = SIDES[side]
    a, _, b, _ = domains
    a, b = a[:64], b[:32]
    cases = [
        (lambda: module.train(a[:, :27, :27], b), r"domain_a has shape \(64, 27, 27\).*28x28"),
        (lambda: module.train(a, b.reshape(32, 784)), r"domain_b has shape \(32, 784\)"),
        (lambda: module.train(a * 255, b), "divide by 255"),
        (lambda: module.train(a, b, batch_size=48), "batch_size 48 exceeds the 32 images of domain_b"),
        (lambda: module.train(a, b, cycle_weight=-1.0), "cycle_weight must be a finite number >= 0"),
        (lambda: module.train(a, b, identity_weight=float("nan")), "identity_weight must be a finite"),
        (lambda: module.train(a, b, gan_loss="wgan"), "gan_loss must be 'lsgan'"),
        (lambda: module.train(a, b, beta1=1.5), "beta1"),
        (lambda: module.CycleGAN(residual_blocks=-1), "residual_blocks must be an integer >= 0"),
        (lambda: module.build_translator(0), "filters must be a positive integer"),
        (lambda: module.translate(module.build_translator(), a.reshape(64, 1, 784)), "28x28"),
        (lambda: module.CycleGAN(device="cpu").losses(a[:4], b[:4] - 0.5), r"must lie in \[0.0, 1.0\]"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
    with pytest.raises(TypeError, match="unexpected settings"):
        module.train(a, b, lambda_cycle=3)
