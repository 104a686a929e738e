"""``python -m companion``: help, one-line errors, and a train / resume / sample round trip on both sides."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from companion import cli


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "companion", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_help_documents_every_flag():
    for verb, flags in (
        (
            "train",
            ["--framework", "--epochs", "--batch-size", "--seed", "--data", "--out", "--recipe", "--lr"],
        ),
        ("sample", ["--framework", "--checkpoint", "--n", "--out", "--seed"]),
    ):
        result = _run(verb, "--help")
        assert result.returncode == 0 and not result.stderr
        for flag in flags:
            assert flag in result.stdout, (verb, flag)
        parser = cli.build_parser()
        sub = parser._subparsers._group_actions[0].choices[verb]  # every option has a help text
        assert all(action.help for action in sub._actions), verb
    assert "train" in _run("--help").stdout


def test_parsing_imports_no_framework():
    code = (
        "import sys; from companion import cli; cli.build_parser().parse_args("
        "['train', 'dcgan', '--framework', 'torch', '--out', 'x']); "
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _fake_run(folder, framework="torch", model="dcgan", **settings):
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"model": model, "framework": framework, **settings}))
    return str(folder)


def _corrupt_run(folder):
    folder.mkdir()
    (folder / "run.json").write_text('{"model": "dcg')
    return str(folder)


BAD = {
    "no verb": lambda tmp: [],
    "unknown verb": lambda tmp: ["fit", "dcgan"],
    "unknown model": lambda tmp: ["train", "vae", "--framework", "torch", "--out", str(tmp / "o")],
    "unknown framework": lambda tmp: ["train", "dcgan", "--framework", "jax", "--out", str(tmp / "o")],
    "missing --out": lambda tmp: ["train", "dcgan", "--framework", "torch"],
    "zero epochs": lambda tmp: ["train", "dcgan", "--framework", "torch", "--epochs", "0", "--out", "o"],
    "negative batch": lambda tmp: ["train", "dcgan", "--framework", "torch", "--batch-size", "-8", "--out", "o"],
    "text batch": lambda tmp: ["train", "dcgan", "--framework", "torch", "--batch-size", "big", "--out", "o"],
    "bad beta1": lambda tmp: ["train", "dcgan", "--framework", "torch", "--beta1", "1.5", "--out", "o"],
    "bad data": lambda tmp: ["train", "dcgan", "--framework", "torch", "--data", "web", "--out", "o"],
    "unknown flag": lambda tmp: ["train", "dcgan", "--framework", "torch", "--out", "o", "--fast"],
    "zero samples": lambda tmp: ["sample", "dcgan", "--framework", "torch", "--checkpoint", "c", "--n", "0", "--out", "s.npy"],
    "missing checkpoint": lambda tmp: [
        "sample", "dcgan", "--framework", "torch", "--checkpoint", str(tmp / "nowhere"), "--out", "s.npy"
    ],
    "folder without run": lambda tmp: ["sample", "dcgan", "--framework", "torch", "--checkpoint", str(tmp), "--out", "s.npy"],
    "other framework's run": lambda tmp: [
        "sample", "dcgan", "--framework", "tensorflow", "--checkpoint", _fake_run(tmp / "r"), "--out", "s.npy"
    ],
    "other model's run": lambda tmp: [
        "sample", "dcgan", "--framework", "torch", "--checkpoint", _fake_run(tmp / "r", model="vae"), "--out", "s.npy"
    ],
    "train into other framework's run": lambda tmp: [
        "train", "dcgan", "--framework", "tensorflow", "--out", _fake_run(tmp / "r")
    ],
    "resume with another batch size": lambda tmp: [
        "train", "dcgan", "--framework", "torch", "--out", _fake_run(tmp / "r", batch_size=128)
    ],
    "corrupt run.json": lambda tmp: [
        "sample", "dcgan", "--framework", "torch", "--checkpoint", _corrupt_run(tmp / "r"), "--out", "s.npy"
    ],
    "out is not .npy": lambda tmp: [
        "sample", "dcgan", "--framework", "torch", "--checkpoint", _fake_run(tmp / "r"), "--out", "s.txt"
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_command_lines_give_one_line_and_nonzero_exit(case, tmp_path):
    result = _run(*BAD[case](tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    line = _one_error_line(result.stderr)
    assert "error" in line
    assert not (tmp_path / "s.npy").exists()


def tiny(epochs: int) -> list[str]:
    return [
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "2",
        "--limit",
        "32",
        "--data",
        "subset",
    ]


SECONDS = re.compile(r"^seconds/step: \d+\.\d{3}$")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_train_resume_sample_round_trip(framework, tmp_path, capfd):
    run = tmp_path / "run"
    common = ["dcgan", "--framework", framework]
    result = _run("train", *common, *tiny(2), "--checkpoint-every", "1", "--seed", "3", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert SECONDS.match(result.stdout.strip().splitlines()[-1]), result.stdout
    assert "epoch 2/2" in result.stdout
    for name in ("run.json", "history.json", "frames.npy", "training.gif"):
        assert (run / name).exists(), name

    # The same command with more epochs resumes; this and the rest run in-process, to spare a
    # second framework start-up per command.
    assert cli.main(["train", *common, *tiny(3), "--seed", "3", "--out", str(run)]) == 0
    out = capfd.readouterr().out
    assert "from epoch 2" in out and "epoch 3/3" in out and "epoch 1/" not in out
    assert SECONDS.match(out.strip().splitlines()[-1])

    samples = tmp_path / "samples.npy"
    assert cli.main(["sample", *common, "--checkpoint", str(run), "--n", "5", "--out", str(samples)]) == 0
    assert "wrote 5 samples" in capfd.readouterr().out
    x = np.load(samples)
    assert x.shape == (5, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.01
    assert cli.main(["sample", *common, "--checkpoint", str(run), "--n", "5", "--out", str(samples)]) == 0
    np.testing.assert_array_equal(np.load(samples), x)  # same seed, same samples
    capfd.readouterr()

    # A resume with other settings is refused in one line.
    assert cli.main(["train", *common, *tiny(3), "--seed", "4", "--out", str(run)]) != 0
    assert "--seed 3" in _one_error_line(capfd.readouterr().err)

    # A damaged checkpoint is reported in one line on stderr, with no traceback.
    files = [run / "checkpoint.pt"] if framework == "torch" else list((run / "checkpoints").glob("ckpt-*"))
    for path in files:
        path.write_bytes(b"\x00 not a checkpoint")
    assert cli.main(["sample", *common, "--checkpoint", str(run), "--out", str(tmp_path / "x.npy")]) == 1
    assert "corrupt" in _one_error_line(capfd.readouterr().err)
    assert not (tmp_path / "x.npy").exists()
