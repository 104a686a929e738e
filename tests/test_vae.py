"""The VAE chapter's models: both frameworks compute the same VAE, and the VAE's numerics are right.

Parity: weights copied with ``companion.bridge`` both ways give the same encoder and decoder outputs
(<= 1e-4), and the same images with the same noise eps give the same ELBO terms (<= 1e-5 relative).
Numerics (``companion.theory.vae``): the closed-form KL agrees with a Monte Carlo estimate and two
wrong formulas do not; the IWAE bound rises with k; the gradient through the reparameterised sample
equals a finite difference (and a gradient that skips the sample does not). Training: it lowers the
loss, a resumed run equals an unbroken one, and bad input is refused with a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import companion
from companion import bridge
from companion.tensorflow import vae as tf_vae
from companion.theory import vae as theory
from companion.torch import vae as pt_vae
from companion.training import vae_task
from companion.training.run_folder import RunFolderError
from companion.validation import InputError

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

SIDES = {"tensorflow": tf_vae, "torch": pt_vae}
MODELS = [("dense", 0), ("dense", 10), ("conv", 0), ("conv", 10)]
IDS = ["dense", "dense-conditional", "conv", "conv-conditional"]
TOL = 1e-4
TIMINGS = ("seconds", "train_seconds", "steps")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: small networks, one thread


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Real digits, flat (N, 784) in [0, 1], and their labels."""
    return companion.load_mnist("train", source="subset", limit=1200, verbose=False)


def shaped(model, x: np.ndarray) -> np.ndarray:
    """Flat images -> the model's layout (one channel: NHWC and NCHW are the same pixel order)."""
    return x.reshape(len(x), *model.example_shape)


def flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1)


def pair(kind: str, n_classes: int, latent_size: int = 8, seed: int = 1):
    companion.seed_everything(seed)
    return tf_vae.build_vae(kind, latent_size, n_classes), pt_vae.build_vae(kind, latent_size, n_classes)


def noise(n: int, latent_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, latent_size), dtype=np.float32)


# --------------------------------------------------------------------------- both frameworks, one model


def test_same_names_and_constants_on_both_sides() -> None:
    names = ["VAE", "KINDS", "LATENT_SIZE", "build_vae", "reparameterise", "loss_terms", "encode", "decode"]
    names += ["reconstruct", "sample", "elbo_terms", "iwae_bound", "kl_per_unit", "count_parameters"]
    names += ["vae_step", "fit_vae", "load_vae"]
    for name in names:
        assert hasattr(tf_vae, name) and hasattr(pt_vae, name), name
    assert tf_vae.KINDS == pt_vae.KINDS == ("dense", "conv")
    assert tf_vae.LATENT_SIZE == pt_vae.LATENT_SIZE == 16


@pytest.mark.parametrize(("kind", "n_classes"), MODELS, ids=IDS)
def test_shapes_and_parameter_counts(kind: str, n_classes: int, digits) -> None:
    k, t = pair(kind, n_classes)
    # Weights plus biases, layer by layer; the label's one-hot row adds n_classes inputs to the heads
    # and to the decoder's first layer.
    if kind == "dense":
        encoder = 512 * (784 + 1) + 2 * (512 + n_classes + 1) * 8
        decoder = (8 + n_classes + 1) * 512 + (512 + 1) * 784
    else:
        encoder = (9 + 1) * 32 + (9 * 32 + 1) * 64 + 2 * (7 * 7 * 64 + n_classes + 1) * 8
        decoder = (8 + n_classes + 1) * 7 * 7 * 64 + (9 * 64 + 1) * 32 + (9 * 32 + 1)
    assert tf_vae.count_parameters(k) == pt_vae.count_parameters(t) == encoder + decoder
    assert k.example_shape == ((784,) if kind == "dense" else (28, 28, 1))
    assert t.example_shape == ((784,) if kind == "dense" else (1, 28, 28))
    x, y = digits[0][:5], digits[1][:5] if n_classes else None
    for module, model in ((tf_vae, k), (pt_vae, t)):
        mean, log_var = module.encode(model, shaped(model, x), y)
        assert mean.shape == log_var.shape == (5, 8)
        out = module.reconstruct(model, shaped(model, x), y)
        assert out.shape == (5, *model.example_shape) and 0.0 <= out.min() and out.max() <= 1.0
        assert module.sample(model, 3, 7 if n_classes else None).shape == (3, *model.example_shape)


@pytest.mark.parametrize(("kind", "n_classes"), MODELS, ids=IDS)
def test_keras_weights_in_torch_give_the_same_outputs(kind: str, n_classes: int, digits) -> None:
    k, t = pair(kind, n_classes, seed=2)
    x, y = digits[0][:64], digits[1][:64] if n_classes else None
    z = noise(64, 8)
    before = np.abs(flat(tf_vae.decode(k, z, y)) - flat(pt_vae.decode(t, z, y))).max()
    assert before > 1e-3  # independent initialisations really differ, so the checks below mean something
    bridge.keras_to_torch(k, t)
    for a, b in zip(tf_vae.encode(k, shaped(k, x), y), pt_vae.encode(t, shaped(t, x), y), strict=True):
        assert np.abs(a - b).max() <= TOL
    assert np.abs(flat(tf_vae.decode(k, z, y)) - flat(pt_vae.decode(t, z, y))).max() <= TOL
    labels = 3 if n_classes else None
    assert np.abs(flat(tf_vae.sample(k, 16, labels)) - flat(pt_vae.sample(t, 16, labels))).max() <= TOL


@pytest.mark.parametrize(("kind", "n_classes"), MODELS, ids=IDS)
def test_torch_weights_in_keras_give_the_same_outputs(kind: str, n_classes: int, digits) -> None:
    k, t = pair(kind, n_classes, seed=3)
    bridge.torch_to_keras(t, k)
    x, y = digits[0][:64], digits[1][:64] if n_classes else None
    for a, b in zip(tf_vae.encode(k, shaped(k, x), y), pt_vae.encode(t, shaped(t, x), y), strict=True):
        assert np.abs(a - b).max() <= TOL
    z = noise(64, 8, seed=1)
    assert np.abs(flat(tf_vae.decode(k, z, y)) - flat(pt_vae.decode(t, z, y))).max() <= TOL
    out_k, out_t = tf_vae.reconstruct(k, shaped(k, x), y), pt_vae.reconstruct(t, shaped(t, x), y)
    assert np.abs(flat(out_k) - flat(out_t)).max() <= TOL


def _numpy_elbo_terms(k, x: np.ndarray, eps: np.ndarray, y: np.ndarray | None) -> tuple[float, float]:
    """The ELBO terms from the Keras model's raw outputs and the NumPy formulas of companion.theory."""
    onehot = vae_task.one_hot(y, k.n_classes)
    mean, log_var = tf_vae.encode(k, x, y)
    z = (mean + np.exp(0.5 * log_var) * eps).astype(np.float32)
    logits = k.logits(tf.constant(z), None if onehot is None else tf.constant(onehot)).numpy()
    reconstruction = -theory.bernoulli_log_likelihood(x, logits).mean()
    return float(reconstruction), float(theory.gaussian_kl(mean, log_var).mean())


@pytest.mark.parametrize(("kind", "n_classes"), MODELS, ids=IDS)
def test_the_same_batch_and_eps_give_the_same_elbo_terms(kind: str, n_classes: int, digits) -> None:
    k, t = pair(kind, n_classes, seed=4)
    bridge.keras_to_torch(k, t)
    x, y = digits[0][:100], digits[1][:100] if n_classes else None
    eps = noise(100, 8, seed=5)
    terms_k = tf_vae.elbo_terms(k, shaped(k, x), eps, y, beta=2.0)
    terms_t = pt_vae.elbo_terms(t, shaped(t, x), eps, y, beta=2.0)
    assert set(terms_k) == set(terms_t) == {"reconstruction", "kl", "elbo", "loss"}
    for name in terms_k:
        assert terms_k[name] == pytest.approx(terms_t[name], rel=1e-5), name
    assert terms_k["elbo"] == pytest.approx(-(terms_k["reconstruction"] + terms_k["kl"]), rel=1e-12)
    assert terms_k["loss"] == pytest.approx(terms_k["reconstruction"] + 2.0 * terms_k["kl"], rel=1e-12)
    reconstruction, kl = _numpy_elbo_terms(k, shaped(k, x), eps, y)  # float64 NumPy, same definitions
    assert terms_k["reconstruction"] == pytest.approx(reconstruction, rel=1e-5)
    assert terms_k["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-5)
    # Other noise gives another reconstruction term: eps really is what the terms were computed with.
    other = tf_vae.elbo_terms(k, shaped(k, x), -eps, y)
    assert abs(other["reconstruction"] - terms_k["reconstruction"]) > 1e-3
    # The KL per unit adds up to the KL term, which does not depend on eps.
    assert pt_vae.kl_per_unit(t, shaped(t, x), y).sum() == pytest.approx(terms_t["kl"], rel=1e-5)


def test_reparameterise_is_mean_plus_scaled_noise() -> None:
    rng = np.random.default_rng(0)
    mean, log_var, eps = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
    expected = mean + np.exp(log_var / 2) * eps
    got_k = tf_vae.reparameterise(tf.constant(mean), tf.constant(log_var), tf.constant(eps)).numpy()
    got_t = pt_vae.reparameterise(torch.from_numpy(mean), torch.from_numpy(log_var), torch.from_numpy(eps))
    np.testing.assert_allclose(got_k, expected, rtol=1e-6)
    np.testing.assert_allclose(got_t.numpy(), expected, rtol=1e-6)


def test_the_frameworks_train_the_same_model_from_the_same_start(digits, monkeypatch) -> None:
    """Equal weights, the same seeded batches, eps and warm-up, the same Adam (with a negligible epsilon,
    which Keras and PyTorch add at different places): the same losses, epoch by epoch."""
    monkeypatch.setitem(vae_task.VAE_ADAM, "epsilon", 1e-12)
    k, t = pair("dense", 10, seed=6)
    bridge.keras_to_torch(k, t)
    x, y = digits[0][:256], digits[1][:256]
    settings = {"epochs": 2, "batch_size": 32, "warmup_epochs": 2, "seed": 7, "log_every": 0}
    h_k = tf_vae.fit_vae(k, x, None, y, **settings)
    h_t = pt_vae.fit_vae(t, x, None, y, **settings)
    assert h_k["steps"] == h_t["steps"] == [8, 8]
    assert h_k["beta"] == h_t["beta"] == [0.5, 1.0]
    for name in ("loss", "reconstruction", "kl"):
        np.testing.assert_allclose(h_k[name], h_t[name], rtol=1e-4, err_msg=name)
    assert np.abs(tf_vae.decode(k, noise(8, 8), 3) - pt_vae.decode(t, noise(8, 8), 3)).max() <= 1e-3


# --------------------------------------------------------------------------- the numerics


def test_closed_form_kl_matches_monte_carlo_and_wrong_formulas_do_not() -> None:
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 1.0, (6, 4))
    log_var = rng.uniform(-2.0, -0.3, (6, 4))  # variances below 1, so that a flipped log_var sign shows
    n = 200_000
    mc = theory.monte_carlo_kl(mean, log_var, n, seed=1)
    # The estimate's standard error per image, from the same draws: the tolerance is five of them.
    z = mean + np.exp(0.5 * log_var) * np.random.default_rng(1).standard_normal((n, *mean.shape))
    values = theory.log_normal(z, mean, log_var) - theory.log_normal(z)
    tolerance = 5.0 * values.std(axis=0) / np.sqrt(n)
    np.testing.assert_allclose(values.mean(axis=0), mc, rtol=1e-12)  # the same draws as monte_carlo_kl
    closed = theory.gaussian_kl(mean, log_var)
    assert np.all(np.abs(closed - mc) <= tolerance)
    wrong = {
        "without the 1/2": np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1),
        "+log_var": 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 + log_var, axis=1),
        "-mean^2": 0.5 * np.sum(np.exp(log_var) - mean**2 - 1.0 - log_var, axis=1),
    }
    for name, value in wrong.items():
        assert np.all(np.abs(value - mc) > tolerance), name  # the check would catch each of these
    assert np.all(closed >= 0) and theory.gaussian_kl(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 0.0


def test_log_mean_exp_and_bernoulli_likelihood_are_stable() -> None:
    a = np.array([[0.0, np.log(3.0)], [-1000.0, -1000.0 + np.log(3.0)]])
    np.testing.assert_allclose(theory.log_mean_exp(a), [np.log(2.0), -1000.0 + np.log(2.0)], rtol=1e-12)
    assert theory.log_mean_exp(np.full(3, -np.inf)) == -np.inf
    x = np.array([[0.0, 1.0, 0.3]])
    logits = np.array([[-2.0, 0.5, 1.0]])
    p = 1.0 / (1.0 + np.exp(-logits))
    naive = np.sum(x * np.log(p) + (1.0 - x) * np.log(1.0 - p), axis=1)
    np.testing.assert_allclose(theory.bernoulli_log_likelihood(x, logits), naive, rtol=1e-12)
    extreme = theory.bernoulli_log_likelihood(np.array([[0.0, 1.0]]), np.array([[-200.0, 200.0]]))
    assert np.isfinite(extreme).all() and abs(extreme[0]) < 1e-80


def test_active_units_counts_units_whose_mean_varies() -> None:
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 2.0)], axis=1)
    assert theory.active_units(means) == 1  # variances about 1, 0.0025 and 0
    assert theory.active_units(means, threshold=0.001) == 2


@pytest.fixture(scope="module")
def trained(digits) -> tuple:
    """A dense VAE trained briefly in PyTorch, its weights copied into Keras, and held-out digits."""
    x, _ = digits
    companion.seed_everything(8)
    t = pt_vae.build_vae("dense", 8)
    pt_vae.fit_vae(t, x[:700], epochs=4, batch_size=64, seed=8, log_every=0)
    k = tf_vae.build_vae("dense", 8)
    bridge.torch_to_keras(t, k)
    return k, t, x[700:1200]


def test_iwae_bound_rises_with_k(trained) -> None:
    k_model, t_model, held_out = trained
    # One batch of 500 images: the k = 5 draws include the k = 1 draw and the k = 50 draws the k = 5
    # ones (the same seeded stream), so noise cannot reorder the three means.
    bounds = {k: pt_vae.iwae_bound(t_model, held_out, k, seed=3, batch_size=500) for k in (1, 5, 50)}
    assert bounds[1] < bounds[5] < bounds[50] < 0
    assert bounds[50] - bounds[1] > 1.0  # a clear rise in nats per image, not round-off
    # k = 1 is the one-sample ELBO: log p(x | z) + log p(z) - log q(z | x) at the same z (the KL term
    # estimated from that z, not in closed form); both frameworks draw the same z and agree.
    eps = np.random.default_rng(3).standard_normal((500, 8))
    mean, log_var = pt_vae.encode(t_model, held_out)
    z = mean + np.exp(0.5 * log_var) * eps
    one_sample_kl = np.mean(theory.log_normal(z, mean, log_var) - theory.log_normal(z))
    reconstruction = pt_vae.elbo_terms(t_model, held_out, eps)["reconstruction"]
    assert bounds[1] == pytest.approx(-(reconstruction + one_sample_kl), rel=1e-5)
    assert tf_vae.iwae_bound(k_model, held_out, 5, seed=3, batch_size=500) == pytest.approx(
        bounds[5], rel=1e-5
    )


def _loss_through_sample(side: str, model, x: np.ndarray, eps: np.ndarray, mean, log_var, skip_sample: bool):
    """Reconstruction + KL of one image as a function of (mean, log_var), in the framework; with
    ``skip_sample`` the sample z is a constant, as if it had been drawn without reparameterising."""
    if side == "torch":
        z = pt_vae.reparameterise(mean, log_var, torch.from_numpy(eps))
        z = z.detach() if skip_sample else z
        logits = model.logits(z)
        rec = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(x), reduction="sum"
        )
        return rec + 0.5 * torch.sum(torch.exp(log_var) + mean**2 - 1.0 - log_var)
    z = tf_vae.reparameterise(mean, log_var, eps)
    z = tf.stop_gradient(z) if skip_sample else z
    rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=model.logits(z)))
    return rec + 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var)


def _gradient(side: str, model, x, eps, mean0, log_var0, skip_sample: bool) -> np.ndarray:
    if side == "torch":
        mean, log_var = (torch.tensor(a, requires_grad=True) for a in (mean0, log_var0))
        _loss_through_sample(side, model, x, eps, mean, log_var, skip_sample).backward()
        return np.concatenate([mean.grad.numpy().ravel(), log_var.grad.numpy().ravel()])
    mean, log_var = tf.Variable(mean0), tf.Variable(log_var0)
    with tf.GradientTape() as tape:
        loss = _loss_through_sample(side, model, x, eps, mean, log_var, skip_sample)
    return np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, [mean, log_var])])


@pytest.mark.parametrize("side", SIDES)
def test_gradient_through_the_reparameterised_sample_equals_a_finite_difference(side: str, trained) -> None:
    k_model, t_model, held_out = trained
    model = t_model if side == "torch" else k_model
    module = SIDES[side]
    x = held_out[:1]
    mean0, log_var0 = (a.astype(np.float32) for a in module.encode(model, x))
    eps = noise(1, 8, seed=9)
    analytic = _gradient(side, model, x, eps, mean0, log_var0, skip_sample=False)
    skipped = _gradient(side, model, x, eps, mean0, log_var0, skip_sample=True)
    point = np.concatenate([mean0.ravel(), log_var0.ravel()]).astype(np.float64)

    def loss_at(values: np.ndarray) -> float:  # float32 forward pass at a perturbed (mean, log_var)
        mean, log_var = (part.reshape(1, 8).astype(np.float32) for part in (values[:8], values[8:]))
        if side == "tensorflow":
            return float(_loss_through_sample(side, model, x, eps, mean, log_var, skip_sample=False))
        with torch.no_grad():
            mean, log_var = torch.from_numpy(mean), torch.from_numpy(log_var)
            return float(_loss_through_sample(side, model, x, eps, mean, log_var, skip_sample=False))

    h = 1e-2
    numeric = np.array([(loss_at(point + h * e) - loss_at(point - h * e)) / (2 * h) for e in np.eye(16)])
    tolerance = 0.02 * np.abs(numeric) + 0.02  # float32 losses of ~100 nats, differenced over 2h
    assert np.all(np.abs(analytic - numeric) <= tolerance)
    # A gradient that stops at the sample misses the decoder's part and fails the same check.
    assert np.abs(skipped - numeric).max() > 10 * tolerance.max()


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("kind", "n_classes"), [("dense", 0), ("conv", 10)], ids=["dense", "conv-conditional"]
)
def test_training_lowers_the_loss(side: str, kind: str, n_classes: int, digits) -> None:
    module = SIDES[side]
    x, y = digits
    companion.seed_everything(0)
    model = module.build_vae(kind, 8, n_classes)
    labels = (y[:512], y[512:640]) if n_classes else (None, None)
    eps = noise(128, 8)
    before = module.elbo_terms(model, shaped(model, x[512:640]), eps, labels[1])
    history = module.fit_vae(
        model,
        shaped(model, x[:512]),
        shaped(model, x[512:640]),
        *labels,
        epochs=2,
        batch_size=32,
        log_every=0,
    )
    assert set(history) == {"loss", "reconstruction", "kl", "beta", "val_elbo", *TIMINGS}
    assert history["steps"] == [16, 16] and history["beta"] == [1.0, 1.0]
    assert history["loss"][1] < history["loss"][0]
    np.testing.assert_allclose(history["loss"], np.add(history["reconstruction"], history["kl"]), rtol=1e-5)
    assert history["val_elbo"][-1] > before["elbo"] + 50  # nats per image: a large gain in two epochs


@pytest.mark.parametrize("side", SIDES)
def test_resume_equals_an_unbroken_run(side: str, digits, tmp_path: Path, capsys) -> None:
    module = SIDES[side]
    x, y = digits
    x_train, y_train, x_val, y_val = x[:384], y[:384], x[384:512], y[384:512]
    settings = {"batch_size": 64, "seed": 3, "warmup_epochs": 3, "beta": 2.0, "log_every": 1}
    companion.seed_everything(0)
    first, twin = module.build_vae("dense", 4, 10), module.build_vae("dense", 4, 10)
    if side == "torch":
        twin.load_state_dict(first.state_dict())
    else:
        twin.set_weights(first.get_weights())
    unbroken = module.fit_vae(twin, x_train, x_val, y_train, y_val, epochs=4, **settings)
    module.fit_vae(first, x_train, x_val, y_train, y_val, epochs=2, out_dir=tmp_path, **settings)
    capsys.readouterr()
    # Fresh weights: everything must come from the checkpoint.
    resumed_model = module.build_vae("dense", 4, 10)
    resumed = module.fit_vae(
        resumed_model, x_train, x_val, y_train, y_val, epochs=4, out_dir=tmp_path, **settings
    )
    printed = capsys.readouterr().out
    assert f"resuming {tmp_path} after epoch 2" in printed and "epoch 1/4" not in printed
    assert resumed["beta"] == unbroken["beta"] == pytest.approx([2 / 3, 4 / 3, 2.0, 2.0])
    for name in ("loss", "reconstruction", "kl", "val_elbo"):
        np.testing.assert_allclose(resumed[name], unbroken[name], rtol=1e-4, err_msg=name)
    z = noise(10, 4)
    np.testing.assert_allclose(module.decode(resumed_model, z, 5), module.decode(twin, z, 5), atol=1e-4)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"] == "cvae" and run["n_classes"] == 10 and run["warmup_epochs"] == 3
    loaded = module.load_vae(tmp_path)
    assert (loaded.kind, loaded.latent_size, loaded.n_classes) == ("dense", 4, 10)
    np.testing.assert_allclose(module.decode(loaded, z, 5), module.decode(resumed_model, z, 5), atol=1e-6)
    with pytest.raises(RunFolderError, match="not a"):
        SIDES["torch" if side == "tensorflow" else "tensorflow"].load_vae(tmp_path)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("side", SIDES)
def test_bad_architectures_are_refused(side: str) -> None:
    module = SIDES[side]
    for args, words in [
        (("dense", 0), "latent_size must be a positive integer"),
        (("dense", 2.5), "latent_size"),
        (("deep", 8), "kind must be one of"),
        (("dense", 8, -1), "n_classes must be 0"),
        (("dense", 8, 1), "n_classes must be 0"),
    ]:
        with pytest.raises(InputError, match=words):
            module.build_vae(*args)


@pytest.mark.parametrize("side", SIDES)
def test_bad_inputs_get_clear_errors(side: str, digits) -> None:
    module = SIDES[side]
    x, y = digits[0][:64], digits[1][:64]
    plain, conditional = module.build_vae("dense", 4), module.build_vae("dense", 4, 10)
    eps = noise(64, 4)
    cases = [
        (lambda: module.fit_vae(plain, x, beta=-0.5), "beta must be a finite number >= 0"),
        (lambda: module.fit_vae(plain, x, warmup_epochs=-1), "warmup_epochs must be an integer >= 0"),
        (lambda: module.fit_vae(plain, x * 255.0), "divide by 255"),
        (lambda: module.encode(plain, x - 0.5), r"must lie in \[0.0, 1.0\]"),
        (lambda: module.encode(plain, x.reshape(64, 28, 28)), "shape"),
        (lambda: module.fit_vae(conditional, x), "needs y_train"),
        (lambda: module.encode(conditional, x), "needs labels"),
        (lambda: module.sample(conditional, 4), "needs labels"),
        (lambda: module.fit_vae(plain, x, None, y), "unconditional and takes no y_train"),
        (lambda: module.decode(plain, eps, y), "unconditional"),
        (lambda: module.encode(conditional, x, y + 1), r"must lie in \[0, 10\)"),
        (lambda: module.sample(conditional, 4, 10), r"must lie in \[0, 10\)"),
        (lambda: module.encode(conditional, x, y[:10]), r"shape \(64,\)"),
        (lambda: module.encode(conditional, x, y.astype(float)), "must be integers"),
        (lambda: module.fit_vae(conditional, x, x, y, None), "needs y_val"),
        (lambda: module.elbo_terms(plain, x, eps[:, :3]), r"eps must be finite numbers of shape \(64, 4\)"),
        (lambda: module.elbo_terms(plain, x, eps, beta=-1.0), "beta must be"),
        (lambda: module.iwae_bound(plain, x, 0), "k must be a positive integer"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()
