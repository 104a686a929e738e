"""Package structure, run settings, plots, atomic writes and the chapter-1 density model."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import companion
from companion import plots
from companion.density import PcaGaussianMixture
from companion.training import atomic_files as checkpoints

PACKAGE = Path(companion.__file__).parent


def test_import_companion_loads_no_framework():
    code = "import sys, companion, companion.data, companion.plots, companion.evaluation.metrics; " + (
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names.add(node.name)
    return names


def test_framework_subpackages_mirror_each_other():
    tf_files = {p.name for p in (PACKAGE / "tensorflow").glob("*.py")}
    torch_files = {p.name for p in (PACKAGE / "torch").glob("*.py")}
    assert tf_files == torch_files
    for name in sorted(tf_files - {"__init__.py"}):
        tf_names = _public_names(PACKAGE / "tensorflow" / name)
        torch_names = _public_names(PACKAGE / "torch" / name)

        # Every function a chapter calls on one side exists on the other. Allowed to differ:
        # class names (nn.Module subclasses) and idioms named after their framework.
        def shared(names, own):
            return {n for n in names if n[0].islower() and own not in n}

        assert shared(tf_names, "keras") == shared(torch_names, "torch"), name


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_subpackages_never_import_each_other():
    for side, other in [("tensorflow", "torch"), ("torch", "tensorflow")]:
        for path in (PACKAGE / side).glob("*.py"):
            imported = _imported_modules(path)
            assert not any(
                m == f"companion.{other}" or m.startswith(f"companion.{other}.") for m in imported
            ), path
            assert other not in {m.split(".")[0] for m in imported}, path


def test_pick_follows_quick_mode(monkeypatch):
    monkeypatch.setenv("COMPANION_QUICK", "1")
    assert companion.pick(full=50, quick=2) == 2
    monkeypatch.setenv("COMPANION_QUICK", "0")
    assert companion.pick(full=50, quick=2) == 50


def test_seed_everything_repeats_numpy_tensorflow_and_torch():
    import tensorflow as tf
    import torch

    def draw():
        return np.random.rand(3), tf.random.normal((3,)).numpy(), torch.randn(3).numpy()

    companion.seed_everything(123)
    first = draw()
    companion.seed_everything(123)
    second = draw()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="non-negative int"):
        companion.seed_everything(-1)


def test_tile_and_image_layouts():
    batch = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    grid = plots.tile(batch, ncols=3, pad=2)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    np.testing.assert_array_equal(grid[2:30, 2:30], batch[0, 0])
    with pytest.raises(ValueError, match="cannot read images of shape"):
        plots.to_hw(np.zeros((4, 10)))


def test_training_gif_has_one_upscaled_frame_per_epoch(tmp_path):
    import imageio.v3 as iio

    frames = [np.full((4, 28, 28), v, np.float32) for v in (0.0, 0.5, 1.0)]
    path = plots.training_gif(frames, tmp_path / "progress.gif", ncols=2, scale=3)
    movie = iio.imread(path, index=None)
    assert movie.shape[0] == 3
    assert movie.shape[1:3] == (3 * (2 * 30 + 2), 3 * (2 * 30 + 2))


def test_training_gif_writes_a_caption_band_above_each_frame(tmp_path):
    import imageio.v3 as iio

    frames = [np.zeros((4, 28, 28), np.float32)] * 2
    plain = iio.imread(plots.training_gif(frames, tmp_path / "plain.gif", ncols=2, scale=2), index=None)
    path = plots.training_gif(
        frames, tmp_path / "captioned.gif", ncols=2, scale=2, captions=["epoch 1", "epoch 2"]
    )
    movie = iio.imread(path, index=None)
    assert movie.shape[1] == plain.shape[1] + 18 and movie.shape[2] == plain.shape[2]
    band = movie[:, :18].reshape(2, 18, -1)
    assert (band < 128).any(axis=(1, 2)).all()  # some dark text pixels in every band
    assert not np.array_equal(band[0], band[1])  # "epoch 1" and "epoch 2" differ
    with pytest.raises(ValueError, match="one per frame"):
        plots.training_gif(frames, tmp_path / "bad.gif", captions=["epoch 1"])


def test_loss_curves_draw_every_series():
    fig = plots.loss_curves(
        {"TensorFlow": {"train": [3, 2, 1], "val": [3, 2, 2]}, "PyTorch": {"train": [3, 2, 1]}}
    )
    assert len(fig.axes[0].lines) == 3
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.json"
    checkpoints.write_json(target, {"epoch": 3})

    def broken(tmp):
        tmp.write_text('{"epoch": 4, "trunc')
        raise KeyboardInterrupt  # e.g. the user interrupts the kernel mid-write

    with pytest.raises(KeyboardInterrupt):
        checkpoints.atomic_write(target, broken)
    assert checkpoints.read_json(target) == {"epoch": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind


def test_density_model_scores_digits_above_noise_and_samples_reproducibly():
    x, _ = companion.load_mnist("train", source="subset", limit=1500, verbose=False)
    model = PcaGaussianMixture(n_pca=20, n_mixture=5, seed=0).fit(x)
    noise = np.random.default_rng(0).random((100, 784), dtype=np.float32)
    assert model.log_likelihood(x[:200]) > model.log_likelihood(noise) + 1000
    samples = model.sample(6, seed=1)
    assert samples.shape == (6, 784) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, model.sample(6, seed=1))
    with pytest.raises(ValueError, match="flat images"):
        model.fit(x.reshape(-1, 28, 28))
