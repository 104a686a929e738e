"""SimGAN: weight transfer and loss parity between the two frameworks, one train step on both sides,
the history buffer (determinism, both frameworks filling the same buffer, checkpoint and resume),
the one loop (learning, resume equals an unbroken run, run folders), the classifier measure and
the input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import companion.tensorflow  # first: Keras on TensorFlow

# isort: split
import torch

import companion
from companion import bridge
from companion.synthetic_digits import render_digits
from companion.tensorflow import simgan as tf_sg
from companion.torch import simgan as pt_sg
from companion.training import simgan_task
from companion.training.run_folder import RunFolderError, epoch_name
from companion.validation import InputError

SIDES = {"tensorflow": tf_sg, "torch": pt_sg}
TOL = 1e-4
TIMINGS = {"seconds", "train_seconds", "steps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def domains() -> tuple[np.ndarray, np.ndarray]:
    """128 typeset digits and 96 real ones, (N, 28, 28) in [0, 1]: unpaired, of different sizes."""
    synthetic, _ = render_digits(128, seed=0)
    real, _ = companion.load_mnist("train", layout="hw", source="subset", limit=96, verbose=False)
    return synthetic, real


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def batch(n: int = 8, seed: int = 0) -> np.ndarray:
    """Random images in [-1, 1], channels last."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32)


# --------------------------------------------------------------------------- the networks on both sides


def test_same_layers_and_parameter_counts() -> None:
    kr, tr = tf_sg.build_refiner(), pt_sg.build_refiner()
    kd, td = tf_sg.build_local_discriminator(), pt_sg.build_local_discriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # 3x3x1x32+32, 6 x (3x3x32x32+32), 32+1; D: 4x4x1x32+32, 4x4x32x64+64, 3x3x64+1.
    assert sum(w.numpy().size for w in kr.trainable_weights) == count(tr) == 55_841
    assert sum(w.numpy().size for w in kd.trainable_weights) == count(td) == 33_953
    assert [layer.name for layer in kr.layers if layer.weights] == [n for n, _ in tr.named_children()]
    assert kr.output_shape == (None, 28, 28, 1) and kd.output_shape == (None, 7, 7, 1)
    assert tf_sg.PATCH_RECEPTIVE_FIELD == pt_sg.PATCH_RECEPTIVE_FIELD == 18
    assert len(tf_sg.build_refiner(blocks=0).layers) < len(kr.layers)


@pytest.mark.parametrize("direction", ["keras_to_torch", "torch_to_keras"])
def test_weight_transfer_gives_the_same_outputs(direction: str) -> None:
    kr, tr = tf_sg.build_refiner(seed=1), pt_sg.build_refiner(seed=2)
    kd, td = tf_sg.build_local_discriminator(seed=3), pt_sg.build_local_discriminator(seed=4)
    for k, t in ((kr, tr), (kd, td)):
        if direction == "keras_to_torch":
            bridge.keras_to_torch(k, t)
        else:
            bridge.torch_to_keras(t, k)
    x = batch()
    with torch.no_grad():
        r_torch, d_torch = nhwc(tr(nchw(x))), nhwc(td(nchw(x)))
    np.testing.assert_allclose(kr(x).numpy(), r_torch, atol=TOL, err_msg="refiner")
    np.testing.assert_allclose(kd(x).numpy(), d_torch, atol=TOL, err_msg="local discriminator")
    assert np.abs(r_torch).max() < 1.0  # tanh


def test_losses_agree_on_the_same_batch() -> None:
    """Same weights, same batch: the same refiner loss (self-regularisation included) and D loss."""
    kr, tr = tf_sg.build_refiner(seed=1), pt_sg.build_refiner()
    kd, td = tf_sg.build_local_discriminator(seed=2), pt_sg.build_local_discriminator()
    bridge.keras_to_torch(kr, tr)
    bridge.keras_to_torch(kd, td)
    synthetic, real, history = batch(8, seed=3), batch(8, seed=4), batch(4, seed=5)
    refined_k = kr(synthetic)
    logits_k = [kd(refined_k), kd(real), kd(history)]
    with torch.no_grad():
        refined_t = tr(nchw(synthetic))
        logits_t = [td(refined_t), td(nchw(real)), td(nchw(history))]
    for weight in (0.0, 1.0):
        w = np.array([weight], np.float32)
        keras_values = [
            *(float(v) for v in tf_sg.refiner_loss(logits_k[0], refined_k, synthetic, 2.5)),
            float(tf_sg.discriminator_loss(logits_k[1], logits_k[0], logits_k[2], w)),
        ]
        torch_values = [
            *(float(v) for v in pt_sg.refiner_loss(logits_t[0], refined_t, nchw(synthetic), 2.5)),
            float(pt_sg.discriminator_loss(logits_t[1], logits_t[0], logits_t[2], torch.from_numpy(w))),
        ]
        np.testing.assert_allclose(keras_values, torch_values, rtol=TOL, atol=TOL)
    total, adversarial, regularisation = torch_values[:3]
    assert total == pytest.approx(adversarial + 2.5 * regularisation, rel=1e-6)
    assert regularisation == pytest.approx(np.mean(np.abs(refined_k.numpy() - synthetic)), rel=1e-5)
    # At logits 0 every cross-entropy is ln 2: R's adversarial loss ln 2, D's 2 ln 2 with or without history.
    zero, half = torch.zeros(4, 1, 7, 7), torch.zeros(2, 1, 7, 7)
    for weight in (0.0, 1.0):
        d = pt_sg.discriminator_loss(zero, zero, half, torch.tensor([weight]))
        assert float(d) == pytest.approx(2 * np.log(2), rel=1e-6)
    assert float(tf_sg.refiner_loss(zero.numpy(), zero.numpy(), zero.numpy())[1]) == pytest.approx(np.log(2))
    # The history counts: confident "real" verdicts on history images raise D's loss only with weight 1.
    fooled = torch.full((2, 1, 7, 7), 5.0)
    with_history = float(pt_sg.discriminator_loss(zero, zero, fooled, torch.tensor([1.0])))
    assert with_history > 2 * np.log(2) + 1 and float(
        pt_sg.discriminator_loss(zero, zero, fooled, torch.tensor([0.0]))
    ) == pytest.approx(2 * np.log(2))


def test_one_train_step_matches_across_frameworks() -> None:
    """Same weights and batch: the same step metrics and refined images, then both move."""
    k, t = tf_sg.SimGAN(device="cpu", seed=0), pt_sg.SimGAN(device="cpu")
    bridge.keras_to_torch(k.refiner, t.refiner)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    synthetic, real, history = batch(16, seed=6), batch(16, seed=7), batch(8, seed=8)
    w = np.ones(1, np.float32)
    steps_k = [k.train_step(synthetic, real, history, w) for _ in range(2)]
    steps_t = [
        t.train_step(nchw(synthetic), nchw(real), nchw(history), torch.from_numpy(w)) for _ in range(2)
    ]
    np.testing.assert_allclose(steps_k[0]["refined"].numpy(), nhwc(steps_t[0]["refined"]), atol=TOL)
    for name in simgan_task.METRICS:
        assert abs(float(steps_k[0][name]) - float(steps_t[0][name])) <= TOL, name
        # Adam adds epsilon at a different place on each side, so one update agrees to ~1e-3.
        assert abs(float(steps_k[1][name]) - float(steps_t[1][name])) <= 5e-3, name
    for first, second in (steps_k, steps_t):
        assert abs(float(second["d_loss"]) - float(first["d_loss"])) > 1e-5
        assert abs(float(second["r_reg"]) - float(first["r_reg"])) > 1e-5


# --------------------------------------------------------------------------- the history buffer


def _fill(buffer: simgan_task.HistoryBuffer, steps: int, seed: int) -> list[np.ndarray]:
    """Run ``steps`` draw/push rounds (half = 4) with refined images numbered by step; return the draws."""
    rng = np.random.default_rng(seed)
    draws = []
    for step in range(steps):
        history, weight = buffer.draw(4, rng)
        draws.append(history if weight[0] else None)
        buffer.push(np.full((8, 2), step, np.float32))  # only the first half goes in
    return draws


def test_history_buffer_fills_then_replaces_random_slots_deterministically() -> None:
    a, b = simgan_task.HistoryBuffer(10, (2,)), simgan_task.HistoryBuffer(10, (2,))
    rng = np.random.default_rng(0)
    history, weight = a.draw(4, rng)
    assert weight.tolist() == [0.0] and not history.any() and history.shape == (4, 2)
    a.push(np.full((8, 2), 7.0, np.float32))
    assert a.filled == 4 and (a.images[:4] == 7).all() and not a.images[4:].any()
    a = simgan_task.HistoryBuffer(10, (2,))
    draws_a, draws_b = _fill(a, 6, seed=1), _fill(b, 6, seed=1)
    for x, y in zip(draws_a, draws_b, strict=True):
        assert (x is None and y is None) or np.array_equal(x, y)
    np.testing.assert_array_equal(a.images, b.images)
    assert draws_a[0] is None and all(d is not None for d in draws_a[1:])
    # 3 rounds fill 4 + 4 + 2 free slots (the third also overwrites 2 random ones); later rounds only replace.
    assert a.filled == 10
    assert set(np.unique(a.images)) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0} and 5.0 in a.images
    other = simgan_task.HistoryBuffer(10, (2,))
    _fill(other, 6, seed=2)
    assert not np.array_equal(other.images, a.images)


def test_history_buffer_state_round_trip_continues_identically() -> None:
    whole = simgan_task.HistoryBuffer(10, (2,))
    _fill(whole, 3, seed=5)
    saved = whole.state()
    resumed = simgan_task.HistoryBuffer(10, (2,))
    resumed.load_state({name: array.copy() for name, array in saved.items()})
    assert resumed.filled == whole.filled and np.array_equal(resumed.images, whole.images)
    assert _fill(whole, 4, seed=6)[-1].tolist() == _fill(resumed, 4, seed=6)[-1].tolist()
    np.testing.assert_array_equal(resumed.images, whole.images)
    with pytest.raises(InputError, match="history_size"):
        simgan_task.HistoryBuffer(4, (2,)).load_state(saved)
    with pytest.raises(RuntimeError, match="draw"):
        simgan_task.HistoryBuffer(4, (2,)).push(np.zeros((2, 2), np.float32))


def test_both_frameworks_fill_the_same_buffer(domains, tmp_path: Path) -> None:
    """Same start (weights copied through gan=) and seed: the checkpointed buffers agree image for image."""
    synthetic, real = domains
    k, t = tf_sg.SimGAN(device="cpu", seed=0), pt_sg.SimGAN(device="cpu")
    bridge.keras_to_torch(k.refiner, t.refiner)
    bridge.keras_to_torch(k.discriminator, t.discriminator)
    settings = dict(
        epochs=1, batch_size=16, steps_per_epoch=4, history_size=24, seed=2, log_every=0, device="cpu"
    )
    tf_sg.train(synthetic, real, gan=k, out_dir=tmp_path / "k", **settings)
    pt_sg.train(synthetic, real, gan=t, out_dir=tmp_path / "t", **settings)
    kept = [np.load(tmp_path / side / epoch_name(1) / "history_images.npy") for side in ("k", "t")]
    assert kept[0].shape == (24, 28, 28, 1) and kept[1].shape == (24, 1, 28, 28)
    np.testing.assert_allclose(kept[0][..., 0], kept[1][:, 0], atol=5e-3)


# --------------------------------------------------------------------------- the one loop


@pytest.mark.parametrize("side", SIDES)
def test_quick_training_learns(side: str, domains) -> None:
    module = SIDES[side]
    synthetic, real = domains
    model, history = module.train(
        synthetic, real, epochs=3, batch_size=32, steps_per_epoch=4, log_every=0, seed=1, device="cpu"
    )
    assert set(history) == {*simgan_task.METRICS, *TIMINGS} and history["steps"] == [4, 4, 4]
    # The refiner starts far from its input and learns to stay close to it (self-regularisation).
    assert history["r_reg"][-1] < 0.8 * history["r_reg"][0]
    refined = model.refine(synthetic[:5])
    assert refined.shape == (5, 28, 28) and 0.0 <= refined.min() and refined.max() <= 1.0
    assert model.patch_logits(real[:3]).shape == (3, 7, 7)


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, domains, tmp_path: Path, capsys) -> None:
    module = SIDES[side]
    synthetic, real = domains[0][:64], domains[1]
    # history_size 24 with half-batches of 8: full after 3 steps, so random replacement runs too.
    settings = {"batch_size": 16, "steps_per_epoch": 2, "history_size": 24, "seed": 3, "device": "cpu"}
    unbroken_model, unbroken = module.train(synthetic, real, epochs=3, out_dir=tmp_path / "a", **settings)
    module.train(synthetic, real, epochs=2, out_dir=tmp_path / "b", **settings)
    capsys.readouterr()
    resumed_model, resumed = module.train(synthetic, real, epochs=3, out_dir=tmp_path / "b", **settings)
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path / 'b'} after epoch 2" in printed and "epoch 1/3" not in printed
    for name in simgan_task.METRICS:
        np.testing.assert_allclose(resumed[name], unbroken[name], rtol=1e-5, err_msg=name)
    expected = unbroken_model.refine(synthetic[:8])
    np.testing.assert_allclose(resumed_model.refine(synthetic[:8]), expected, atol=1e-5)
    buffers = [np.load(tmp_path / run / epoch_name(3) / "history_images.npy") for run in ("a", "b")]
    assert len(buffers[0]) == 24
    np.testing.assert_allclose(buffers[1], buffers[0], atol=1e-5)
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["model"] == "simgan" and run["self_regularisation"] == simgan_task.SELF_REGULARISATION
    assert run["history"] is True and run["history_size"] == 24 and run["blocks"] == simgan_task.BLOCKS
    assert run["n_synthetic"] == 64 and run["n_real"] == 96
    loaded = module.load(tmp_path / "b", device="cpu")
    np.testing.assert_allclose(loaded.refine(synthetic[:8]), expected, atol=1e-5)
    other = SIDES["torch" if side == "tensorflow" else "tensorflow"]
    with pytest.raises(RunFolderError, match="not a"):
        other.load(tmp_path / "b")


def test_without_history_no_buffer_is_kept(domains, tmp_path: Path) -> None:
    synthetic, real = domains
    _, history = pt_sg.train(
        synthetic, real, epochs=1, batch_size=16, steps_per_epoch=2, history=False, log_every=0,
        out_dir=tmp_path, device="cpu",
    )  # fmt: skip
    assert np.isfinite(history["d_loss"]).all()
    assert not (tmp_path / epoch_name(1) / "history_images.npy").exists()


# --------------------------------------------------------------------------- the classifier measure and bad input


def test_classifier_measure_reads_its_own_domain(domains) -> None:
    images, labels = render_digits(300, seed=5)
    test_images, test_labels = render_digits(100, seed=6)
    accuracy = simgan_task.train_digit_classifier_on(images, labels, test_images, test_labels, seed=0)
    assert 0.6 < accuracy <= 1.0  # typeset digits are easy to read among themselves
    with pytest.raises(InputError, match="test_labels must be 100 integer digits"):
        simgan_task.train_digit_classifier_on(images, labels, test_images, test_labels[:50])
    with pytest.raises(InputError, match="digits 0-9"):
        simgan_task.train_digit_classifier_on(images, labels + 1, test_images, test_labels)
    with pytest.raises(InputError, match="single digit"):
        simgan_task.train_digit_classifier_on(images, np.zeros(300, np.int64), test_images, test_labels)


@pytest.mark.parametrize("side", SIDES)
def test_bad_inputs_get_clear_errors(side: str, domains) -> None:
    module = SIDES[side]
    synthetic, real = domains[0][:64], domains[1][:64]
    cases = [
        (lambda: module.train(synthetic[:, :27, :27], real), r"synthetic has shape \(64, 27, 27\).*28x28"),
        (lambda: module.train(synthetic, real.reshape(64, 784)), r"real has shape \(64, 784\)"),
        (lambda: module.train(synthetic * 255, real), "divide by 255"),
        (lambda: module.train(synthetic, real, batch_size=128), "batch_size 128 exceeds the 64 synthetic"),
        (lambda: module.train(synthetic, real[:16], batch_size=32), "batch_size 32 exceeds the 16 real"),
        (lambda: module.train(synthetic, real, batch_size=15), "batch_size must be an even number"),
        (lambda: module.train(synthetic, real, self_regularisation=-1.0), "self_regularisation must be"),
        (lambda: module.train(synthetic, real, history="yes"), "history must be True"),
        (lambda: module.train(synthetic, real, history_size=8, batch_size=32), "history_size 8 holds fewer"),
        (lambda: module.train(synthetic, real, gan=module.SimGAN(lr=1e-3)), "gan= was built with lr=0.001"),
        (lambda: module.SimGAN(blocks=-1), "blocks must be an integer >= 0"),
        (lambda: module.build_refiner(0), "filters must be a positive integer"),
        (lambda: module.refine(module.build_refiner(), synthetic.reshape(64, 1, 784)), "28x28"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
    with pytest.raises(TypeError, match="unexpected settings"):
        module.train(synthetic, real, epoch=3)
