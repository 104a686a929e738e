"""``python -m companion``: help, exit codes and one-line errors, and dry-run train / resume / sample /
evaluate round trips of every model in both frameworks (``sample cvae --label K`` too)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from companion import cli

SECONDS = re.compile(r"^seconds/step: \d+\.\d{3}$")


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch):
    # --quiet sets COMPANION_PROGRESS in this process; monkeypatch puts the old value back afterwards.
    monkeypatch.setenv("COMPANION_PROGRESS", "0")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``cli.main(argv)`` in this process: ``(exit status, stdout, stderr)``."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse: --help (0) and bad flags (2)
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------------- help and start-up


def test_help_documents_every_flag(capsys):
    for verb, flags in (
        (
            "train",
            [
                *("--framework", "--epochs", "--batch-size", "--seed", "--data", "--out", "--recipe", "--lr"),
                *("--dry-run", "--overwrite", "--device", "--traceback", "--quiet", "--checkpoint-every"),
            ],
        ),
        ("sample", ["--framework", "--checkpoint", "--n", "--out", "--seed", "--device"]),
        ("evaluate", ["--framework", "--checkpoint", "--n", "--seed"]),
    ):
        code, out, err = run_cli(capsys, verb, "--help")
        assert code == 0 and not err
        for flag in flags:
            assert flag in out, (verb, flag)
        for model in cli.MODELS:
            assert model in out, (verb, model)
        sub = cli.build_parser()._subparsers._group_actions[0].choices[verb]
        assert all(action.help for action in sub._actions), verb  # every option has a help text
    assert set(cli.MODELS) == {
        "autoencoder",
        "denoising",
        "mlp-gan",
        "dcgan",
        "vae",
        "cvae",
        "cgan",
        "pix2pix",
        "srgan",
    }


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "companion", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and not result.stderr
    assert "train" in result.stdout and "sample" in result.stdout and "evaluate" in result.stdout


def _modules_after(code: str) -> str:
    script = (
        f"import sys; from companion import cli; {code}; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_parsing_and_early_errors_import_no_framework(tmp_path):
    parse = "cli.build_parser().parse_args(['train', 'dcgan', '--framework', 'torch', '--out', 'x'])"
    assert _modules_after(parse) == "[]"
    # Too many samples is refused before anything is loaded.
    refused = (
        "assert cli.main(['sample', 'dcgan', '--framework', 'tensorflow', '--checkpoint', "
        f"{str(tmp_path / 'nowhere')!r}, '--n', '2000000', '--out', 's.npy']) == 1"
    )
    assert _modules_after(refused) == "[]"


# ---------------------------------------------------------------------- bad command lines


def _fake_run(folder, framework="torch", model="dcgan", **settings):
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"model": model, "framework": framework, **settings}))
    return str(folder)


def _corrupt_run(folder):
    folder.mkdir()
    (folder / "run.json").write_text('{"model": "dcg')
    return str(folder)


TRAIN = ["train", "dcgan", "--framework", "torch"]
SAMPLE = ["sample", "dcgan", "--framework", "torch"]

BAD_FLAGS = {  # argparse refuses these: exit status 2
    "no verb": lambda tmp: [],
    "unknown verb": lambda tmp: ["fit", "dcgan"],
    "unknown model": lambda tmp: ["train", "vqvae", "--framework", "torch", "--out", "o"],
    "text label": lambda tmp: [*SAMPLE, "--checkpoint", "c", "--label", "three", "--out", "s.npy"],
    "unknown framework": lambda tmp: ["train", "dcgan", "--framework", "jax", "--out", "o"],
    "missing framework": lambda tmp: ["train", "dcgan", "--out", "o"],
    "missing --out": lambda tmp: TRAIN,
    "zero epochs": lambda tmp: [*TRAIN, "--epochs", "0", "--out", "o"],
    "negative batch": lambda tmp: [*TRAIN, "--batch-size", "-8", "--out", "o"],
    "text batch": lambda tmp: [*TRAIN, "--batch-size", "big", "--out", "o"],
    "infinite lr": lambda tmp: [*TRAIN, "--lr", "inf", "--out", "o"],
    "bad beta1": lambda tmp: [*TRAIN, "--beta1", "1.5", "--out", "o"],
    "bad data": lambda tmp: [*TRAIN, "--data", "web", "--out", "o"],
    "bad recipe": lambda tmp: [*TRAIN, "--recipe", "paper", "--out", "o"],
    "unknown flag": lambda tmp: [*TRAIN, "--out", "o", "--fast"],
    "zero samples": lambda tmp: [*SAMPLE, "--checkpoint", "c", "--n", "0", "--out", "s.npy"],
    "sample without --out": lambda tmp: [*SAMPLE, "--checkpoint", "c"],
}

KNOWN_ERRORS = {  # reported in one line, exit status 1: (arguments, words the line must hold)
    "empty --out": (lambda tmp: [*TRAIN, "--out", ""], "--out needs a folder name"),
    "--out is a file": (lambda tmp: [*TRAIN, "--out", tmp / "s.npy"], "is a file"),
    "tutorial recipe for mlp-gan": (
        lambda tmp: ["train", "mlp-gan", "--framework", "torch", "--recipe", "tutorial", "--out", "o"],
        "--recipe tutorial exists for dcgan only",
    ),
    "--kind for dcgan": (lambda tmp: [*TRAIN, "--kind", "conv", "--out", "o"], "--kind is for"),
    "--beta for dcgan": (lambda tmp: [*TRAIN, "--beta", "2", "--out", "o"], "--beta is for vae and cvae only"),
    "--kind deep for vae": (
        lambda tmp: ["train", "vae", "--framework", "torch", "--kind", "deep", "--out", "o"],
        "--kind deep is an autoencoder; a vae or cvae is dense or conv",
    ),
    "--code-size for cvae": (
        lambda tmp: ["train", "cvae", "--framework", "torch", "--code-size", "8", "--out", "o"],
        "a vae or cvae takes --latent-size",
    ),
    "sample a label that is no digit": (
        lambda tmp: ["sample", "cvae", "--framework", "torch", "--checkpoint", _fake_run(tmp / "r", model="cvae"), "--label", "12", "--out", "s.npy"],
        "--label must be a digit from 0 to 9, got 12",
    ),
    "sample a label from a vae": (
        lambda tmp: ["sample", "vae", "--framework", "torch", "--checkpoint", _fake_run(tmp / "r", model="vae"), "--label", "3", "--out", "s.npy"],
        "--label is for cvae and cgan only",
    ),
    "--noise for autoencoder": (
        lambda tmp: ["train", "autoencoder", "--framework", "torch", "--noise", "0.3", "--out", "o"],
        "--noise is for denoising only",
    ),
    "train into other framework's run": (
        lambda tmp: ["train", "dcgan", "--framework", "tensorflow", "--out", _fake_run(tmp / "r")],
        "holds a torch run; use that framework (--framework torch)",
    ),
    "train into other model's run": (
        lambda tmp: [*TRAIN, "--out", _fake_run(tmp / "r", model="mlp-gan")],
        "holds a 'mlp-gan' run, not 'dcgan'",
    ),
    "resume with another batch size": (
        lambda tmp: [*TRAIN, "--out", _fake_run(tmp / "r", batch_size=128, seed=0)],
        "was trained with --batch-size 128, not 64; pass --batch-size 128",
    ),
    "resume with another seed": (
        lambda tmp: [*TRAIN, "--seed", "4", "--out", _fake_run(tmp / "r", seed=3)],
        "was trained with --seed 3, not 4",
    ),
    "missing checkpoint": (
        lambda tmp: [*SAMPLE, "--checkpoint", tmp / "nowhere", "--out", "s.npy"],
        "does not exist",
    ),
    "folder without run": (lambda tmp: [*SAMPLE, "--checkpoint", tmp, "--out", "s.npy"], "run.json is missing"),
    "run without checkpoint": (
        lambda tmp: [*SAMPLE, "--checkpoint", _fake_run(tmp / "r"), "--out", "s.npy"],
        "no checkpoint yet",
    ),
    "other framework's run": (
        lambda tmp: ["sample", "dcgan", "--framework", "tensorflow", "--checkpoint", _fake_run(tmp / "r"), "--out", "s.npy"],
        "was trained with --framework torch, not tensorflow",
    ),
    "other model's run": (
        lambda tmp: [*SAMPLE, "--checkpoint", _fake_run(tmp / "r", model="vae"), "--out", "s.npy"],
        "holds a 'vae' run, not 'dcgan'",
    ),
    "corrupt run.json": (
        lambda tmp: [*SAMPLE, "--checkpoint", _corrupt_run(tmp / "r"), "--out", "s.npy"],
        "unreadable or truncated",
    ),
    "sample --out not .npy": (
        lambda tmp: [*SAMPLE, "--checkpoint", _fake_run(tmp / "r"), "--out", "s.txt"],
        "must end in .npy",
    ),
    "sample --out is a folder": (
        lambda tmp: [*SAMPLE, "--checkpoint", _fake_run(tmp / "r"), "--out", _fake_run(tmp / "d.npy")],
        "is a folder",
    ),
    "sample --out under a file": (
        lambda tmp: [*SAMPLE, "--checkpoint", _fake_run(tmp / "r"), "--out", tmp / "s.npy" / "x.npy"],
        "which is a file",
    ),
    "too many samples": (
        # refused before the (missing) folder is even looked at
        lambda tmp: [*SAMPLE, "--checkpoint", tmp / "nowhere", "--n", "2000000", "--out", "s.npy"],
        "--n 2,000,000 would need 6.3 GB; ask for at most 1,000,000",
    ),
    "evaluate other framework's run": (
        lambda tmp: ["evaluate", "dcgan", "--framework", "tensorflow", "--checkpoint", _fake_run(tmp / "r")],
        "--framework torch",
    ),
}  # fmt: skip


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working folder holding one plain file, s.npy (so that relative outputs land here)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.npy").write_bytes(b"not samples")
    return tmp_path


def _untouched(tmp):
    assert (tmp / "s.npy").read_bytes() == b"not samples"
    assert not (tmp / "o").exists() and not (tmp / "s.txt").exists()


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_exit_2_with_one_line(case, workdir, capsys):
    code, out, err = run_cli(capsys, *BAD_FLAGS[case](workdir))
    assert code == 2
    assert "error:" in one_error_line(err) and not out
    _untouched(workdir)


@pytest.mark.parametrize("case", sorted(KNOWN_ERRORS))
def test_known_errors_exit_1_with_one_line(case, workdir, capsys):
    argv, words = KNOWN_ERRORS[case]
    argv = argv(workdir)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("error: ") and words in line, line
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before  # nothing written
    _untouched(workdir)


def test_traceback_flag_and_unknown_errors_show_the_traceback(workdir, capsys, monkeypatch):
    with pytest.raises(cli.CliError, match="--out needs a folder name"):
        cli.main([*TRAIN, "--out", "", "--traceback"])

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_train", bug)
    with pytest.raises(ZeroDivisionError):  # not a known error: not turned into one line
        cli.main([*TRAIN, "--out", "o"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train", interrupted)
    code, _, err = run_cli(capsys, *TRAIN, "--out", "o")
    assert code == 130 and "run the same command again to resume" in one_error_line(err)


def test_flag_names_of_settings():
    assert cli.flag_name("batch_size") == "--batch-size"
    assert cli.flag_name("learning_rate") == "--lr"
    assert cli.flag_name("steps_per_epoch") == "--steps-per-epoch (or --dry-run)"
    assert cli.flag_name("n_train") == "--limit (or --dry-run)"


def test_a_mismatch_the_early_check_misses_is_still_named_by_its_flag(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "mlp-gan", "--framework", "torch", "--data", "subset", "--out", out, "--quiet"]
    assert cli.main([*argv, "--dry-run"]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--dry-run", "--limit", "100"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--limit" in err[0] and "256, not 100" in err[0] and "--overwrite" in err[0]


# ---------------------------------------------------------------------- dry-run round trips


ROUND_TRIPS = {  # model, framework, steps of a two-epoch dry run, evaluate's first line
    "dcgan-torch": ("dcgan", "torch", 2 * 2, "Frechet distance"),
    "mlp-gan-torch": ("mlp-gan", "torch", 2 * (256 // 32), "Frechet distance"),
    "autoencoder-tensorflow": ("autoencoder", "tensorflow", 2 * (256 // 32), "test MSE"),
    # Every other model and framework too, so that the CLI trains, resumes and samples all of them.
    "dcgan-tensorflow": ("dcgan", "tensorflow", 2 * 2, "Frechet distance"),
    "mlp-gan-tensorflow": ("mlp-gan", "tensorflow", 2 * (256 // 32), "Frechet distance"),
    "autoencoder-torch": ("autoencoder", "torch", 2 * (256 // 32), "test MSE"),
    "denoising-torch": ("denoising", "torch", 2 * (256 // 32), "test MSE"),
    "denoising-tensorflow": ("denoising", "tensorflow", 2 * (256 // 32), "test MSE"),
    "vae-torch": ("vae", "torch", 2 * (256 // 32), "test ELBO"),
    "vae-tensorflow": ("vae", "tensorflow", 2 * (256 // 32), "test ELBO"),
    "cvae-torch": ("cvae", "torch", 2 * (256 // 32), "read as the digit asked for"),
    "cvae-tensorflow": ("cvae", "tensorflow", 2 * (256 // 32), "read as the digit asked for"),
    "cgan-torch": ("cgan", "torch", 2 * 2, "read as the digit asked for"),
    "cgan-tensorflow": ("cgan", "tensorflow", 2 * 2, "read as the digit asked for"),
    "pix2pix-torch": ("pix2pix", "torch", 2 * 2, "L1 to the true digits"),
    "pix2pix-tensorflow": ("pix2pix", "tensorflow", 2 * 2, "L1 to the true digits"),
    "srgan-torch": ("srgan", "torch", 2 * 2, "PSNR"),
    "srgan-tensorflow": ("srgan", "tensorflow", 2 * 2, "PSNR"),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_dry_run_train_resume_sample_evaluate(case, tmp_path, capsys):
    model, framework, steps, score = ROUND_TRIPS[case]
    run = tmp_path / "run"
    common = [model, "--framework", framework, "--data", "subset"]
    train = ["train", *common, "--dry-run", "--out", run]

    code, out, err = run_cli(capsys, *train, "--quiet")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert SECONDS.match(lines[-1]), out
    assert f"{run}: 2 epochs, {steps} steps in all" in lines[-2]
    assert "epoch 1/2" not in out  # --quiet: no per-epoch lines
    settings = json.loads((run / "run.json").read_text())
    assert settings["model"] == model and settings["framework"] == framework
    assert settings["n_train"] == cli.DRY_RUN["limit"] and settings["batch_size"] == 32
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 2
    assert (run / "epoch_0002").is_dir() and (run / "history.json").exists()
    if model == "dcgan":
        assert np.load(run / "frames.npy").shape == (2, 16, 28, 28)
        assert (run / "training.gif").exists() and (run / "probes" / "epoch_0002.npy").exists()

    # The same command again: nothing left to do.
    code, out, _ = run_cli(capsys, *train)
    assert code == 0
    assert "already trained for 2 epochs" in out and f"{run}: 2 epochs" in out
    # More epochs resume after the last checkpoint.
    code, out, _ = run_cli(capsys, *train, "--epochs", "3")
    assert code == 0
    assert f"resuming {run} after epoch 2" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert f"{run}: 3 epochs, {steps * 3 // 2} steps in all" in out and SECONDS.match(
        out.strip().splitlines()[-1]
    )
    assert len(json.loads((run / "history.json").read_text())["seconds"]) == 3

    # Other settings are refused in one line naming the flag; nothing is changed.
    code, _, err = run_cli(capsys, *train, "--batch-size", "16")
    assert code == 1
    assert "--batch-size 32, not 16" in one_error_line(err)
    other = "tensorflow" if framework == "torch" else "torch"
    code, _, err = run_cli(capsys, "train", model, "--framework", other, "--dry-run", "--out", run)
    assert code == 1 and f"--framework {framework}" in one_error_line(err)
    # Settings checked only once the data are loaded (here the number of images) are refused too.
    code, _, err = run_cli(capsys, *train, "--limit", "100")
    assert code == 1 and "256, not 100" in one_error_line(err)
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 3

    samples = tmp_path / "samples.npy"
    sample = ["sample", *common, "--checkpoint", run, "--n", "5", "--out", samples]
    code, out, _ = run_cli(capsys, *sample)
    assert code == 0 and f"wrote 5 samples (28, 28) in [0, 1] to {samples}" in out
    x = np.load(samples)
    assert x.shape == (5, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.01
    assert run_cli(capsys, *sample)[0] == 0
    np.testing.assert_array_equal(np.load(samples), x)  # same seed, same samples
    assert run_cli(capsys, *sample, "--seed", "1")[0] == 0
    if model in cli.TRANSLATORS:  # outputs for the first held-out digits: no noise to reseed
        np.testing.assert_array_equal(np.load(samples), x)
    else:
        assert np.abs(np.load(samples) - x).max() > 1e-3  # another seed, other samples

    code, out, err = run_cli(capsys, "evaluate", *common, "--checkpoint", run, "--n", "300")
    assert code == 0, err
    assert score in out
    numbers = [float(n) for n in re.findall(r"[-+]?\d+\.\d+", out)]
    assert numbers and np.isfinite(numbers).all()

    # --overwrite starts again: the old epochs are gone.
    code, out, _ = run_cli(capsys, *train, "--batch-size", "16", "--overwrite", "--quiet")
    assert code == 0 and f"{run}: 2 epochs" in out
    assert json.loads((run / "run.json").read_text())["batch_size"] == 16
    assert not (run / "epoch_0003").exists()


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_cvae_writes_the_digit_asked_for(framework, tmp_path, capsys):
    run, samples = tmp_path / "run", tmp_path / "threes.npy"
    common = ["cvae", "--framework", framework, "--data", "subset"]
    code, _, err = run_cli(capsys, "train", *common, "--dry-run", "--quiet", "--out", run)
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["n_classes"] == 10
    sample = ["sample", *common, "--checkpoint", run, "--n", "5", "--out", samples]
    code, out, _ = run_cli(capsys, *sample, "--label", "3")
    assert code == 0 and f"wrote 5 samples (28, 28) in [0, 1] to {samples}" in out
    threes = np.load(samples)
    assert threes.shape == (5, 28, 28) and threes.dtype == np.float32
    assert 0.0 <= threes.min() and threes.max() <= 1.0
    assert run_cli(capsys, *sample, "--label", "7")[0] == 0
    assert np.abs(np.load(samples) - threes).max() > 1e-4  # the label reaches the decoder
    for bad in ("10", "-1"):
        code, _, err = run_cli(capsys, *sample, "--label", bad)
        assert code == 1 and f"--label must be a digit from 0 to 9, got {bad}" in one_error_line(err)
    assert np.load(samples).shape == (5, 28, 28)  # the refused calls left the file alone


def test_damaged_checkpoint_gives_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["dcgan", "--framework", "torch", "--data", "subset"]
    assert run_cli(capsys, "train", *common, "--dry-run", "--epochs", "1", "--quiet", "--out", run)[0] == 0
    (run / "epoch_0001" / "state.pt").write_bytes(b"\x00 not a checkpoint")
    out = tmp_path / "x.npy"
    code, _, err = run_cli(capsys, "sample", *common, "--checkpoint", run, "--out", out)
    assert code == 1 and "damaged" in one_error_line(err)
    assert not out.exists()
    # Resuming from it is refused the same way, and the checkpoint is left for the user to inspect.
    code, _, err = run_cli(capsys, "train", *common, "--dry-run", "--epochs", "2", "--out", run)
    assert code == 1 and "damaged" in one_error_line(err)
    assert (run / "epoch_0001" / "state.pt").read_bytes() == b"\x00 not a checkpoint"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has a GPU")
def test_an_unavailable_device_is_refused_in_flags_before_any_data(workdir, capsys, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the device was checked")

    monkeypatch.setattr(cli, "_load_images", no_data)
    code, _, err = run_cli(
        capsys,
        "train",
        "mlp-gan",
        "--framework",
        "torch",
        "--data",
        "subset",
        "--device",
        "cuda",
        "--out",
        "o",
    )
    assert code == 1 and "use --device cpu" in one_error_line(err)
    _untouched(workdir)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_the_seed_fixes_the_starting_weights(framework, tmp_path, capsys):
    # Two dry runs with the same --seed give the same losses, another seed other ones.
    def losses(folder, seed):
        argv = ["train", "mlp-gan", "--framework", framework, "--data", "subset", "--dry-run"]
        code, _, _ = run_cli(capsys, *argv, "--seed", seed, "--out", tmp_path / folder, "--quiet")
        assert code == 0
        return json.loads((tmp_path / folder / "history.json").read_text())["d_loss"]

    assert losses("a", 3) == losses("b", 3)
    assert losses("a", 3) != losses("c", 4)


def test_conditional_gan_flags(tmp_path, capsys):
    """Each chapter-8 flag belongs to one model; pix2pix and srgan sample held-out digits only."""
    run = tmp_path / "run"
    for args, wanted in (
        (["train", "cgan", "--task", "outline"], "--task is for pix2pix only"),
        (["train", "pix2pix", "--factor", "2"], "--factor is for srgan only"),
        (["train", "cgan", "--adversarial-weight", "0"], "--adversarial-weight is for srgan only"),
        (["train", "srgan", "--l1-only"], "--l1-only is for pix2pix only"),
        (["train", "mlp-gan", "--beta1", "0.5"], "--beta1 is for dcgan, cgan, pix2pix, srgan only"),
    ):
        code, _, err = run_cli(capsys, *args, "--framework", "torch", "--dry-run", "--out", run)
        assert code == 1 and wanted in one_error_line(err), (args, err)
    common = ["pix2pix", "--framework", "torch", "--data", "subset"]
    code, _, err = run_cli(
        capsys, "train", *common, "--dry-run", "--quiet", "--task", "outline", "--out", run
    )
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["task"] == "outline"
    code, _, err = run_cli(capsys, "train", *common, "--dry-run", "--quiet", "--out", run)
    assert code == 1 and "--task outline" in one_error_line(err)
    sample = ["sample", *common, "--checkpoint", run, "--out", tmp_path / "x.npy"]
    code, _, err = run_cli(capsys, *sample, "--label", "3")
    assert code == 1 and "--label is for cvae and cgan only" in one_error_line(err)
    code, _, err = run_cli(capsys, *sample, "--n", "5000")
    assert code == 1 and "exceeds the 1,000 held-out digits" in one_error_line(err)
