"""load_mnist: the shipped subset, the cache, downloads, checksums, layouts and bad arguments."""

import gzip
import hashlib
import io
import urllib.error

import numpy as np
import pytest

from companion import data
from companion.data import MnistDataError, load_mnist


def _idx_gz(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the official gzip-compressed IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_official(monkeypatch):
    """Replace the official test files by 3 tiny images whose hashes we know; return their bytes."""
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    payloads = {
        "t10k-images-idx3-ubyte.gz": _idx_gz(images),
        "t10k-labels-idx1-ubyte.gz": _idx_gz(np.array([7, 2, 1])),
    }
    files = dict(data.FILES)
    for kind, name in [("images", "t10k-images-idx3-ubyte.gz"), ("labels", "t10k-labels-idx1-ubyte.gz")]:
        files[("test", kind)] = (name, hashlib.sha256(payloads[name]).hexdigest())
    monkeypatch.setattr(data, "FILES", files)
    return payloads


def _serve(monkeypatch, payloads, calls=None):
    def fake_urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[-1]
        if calls is not None:
            calls.append(name)
        return io.BytesIO(payloads[name])

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)


def _offline(monkeypatch):
    def fail(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", fail)


def test_subset_split_is_balanced_and_disjoint(capsys):
    x_train, y_train = load_mnist("train", source="subset", layout="flat")
    x_test, y_test = load_mnist("test", source="subset", layout="flat")
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    train_rows = {row.tobytes() for row in (x_train * 255).round().astype(np.uint8)}
    assert not any(row.tobytes() in train_rows for row in (x_test * 255).round().astype(np.uint8))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("5,000-image MNIST subset" in line for line in lines)


def test_limit_keeps_every_digit():
    _, y = load_mnist("train", source="subset", limit=50, verbose=False)
    assert len(y) == 50 and set(y.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("scale", "low", "high", "dtype"),
    [("unit", 0.0, 1.0, np.float32), ("symmetric", -1.0, 1.0, np.float32), ("raw", 0, 255, np.uint8)],
)
def test_scales(scale, low, high, dtype):
    x, _ = load_mnist("test", source="subset", scale=scale, verbose=False)
    assert x.dtype == dtype and x.min() == low and x.max() == high


def test_layouts_hold_the_same_pixels():
    shapes = {"flat": (1000, 784), "hw": (1000, 28, 28), "nhwc": (1000, 28, 28, 1), "nchw": (1000, 1, 28, 28)}
    arrays = {}
    for layout, shape in shapes.items():
        arrays[layout], _ = load_mnist("test", source="subset", layout=layout, verbose=False)
        assert arrays[layout].shape == shape
        assert arrays[layout].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arrays["nhwc"][..., 0], arrays["nchw"][:, 0])
    np.testing.assert_array_equal(arrays["flat"].reshape(-1, 28, 28), arrays["hw"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split must be 'train' or 'test'"),
        ({"scale": "0-1"}, "scale must be one of"),
        ({"layout": "chw"}, "layout must be one of"),
        ({"source": "internet"}, "source must be 'auto' or 'subset'"),
        ({"limit": 0}, "limit must be a positive int"),
        ({"limit": 2.5}, "limit must be a positive int"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(**kwargs)


def test_quick_mode_and_env_pick_the_subset(monkeypatch):
    monkeypatch.setenv("COMPANION_QUICK", "1")
    assert data.default_source() == "subset"
    monkeypatch.setenv("COMPANION_QUICK", "0")
    monkeypatch.setenv("COMPANION_DATA", "subset")
    assert data.default_source() == "subset"
    monkeypatch.setenv("COMPANION_DATA", "cloud")
    with pytest.raises(ValueError, match="COMPANION_DATA must be"):
        data.default_source()


def test_offline_without_cache_explains_what_to_do(monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(MnistDataError) as err:
        load_mnist("train", source="auto", cache_dir=tmp_path)
    text = str(err.value)
    assert "network is unreachable" in text
    assert "source='subset'" in text and "COMPANION_DATA_DIR" in text and str(tmp_path) in text
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_download_verifies_and_caches(monkeypatch, tmp_path, tiny_official):
    calls = []
    _serve(monkeypatch, tiny_official, calls)
    x, y = load_mnist("test", source="auto", cache_dir=tmp_path, scale="raw", layout="hw", verbose=False)
    assert x.shape == (3, 28, 28) and y.tolist() == [7, 2, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(tiny_official)
    _offline(monkeypatch)  # the second load must come from the cache alone
    x2, _ = load_mnist("test", source="auto", cache_dir=tmp_path, scale="raw", layout="hw", verbose=False)
    np.testing.assert_array_equal(x, x2)
    assert len(calls) == 2


def test_download_with_wrong_checksum_is_rejected(monkeypatch, tmp_path, tiny_official):
    tampered = dict(tiny_official)
    tampered["t10k-labels-idx1-ubyte.gz"] = _idx_gz(np.array([0, 0, 0]))
    _serve(monkeypatch, tampered)
    with pytest.raises(MnistDataError, match="failed its SHA-256 check"):
        load_mnist("test", source="auto", cache_dir=tmp_path)
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_cache_is_detected_and_not_used(monkeypatch, tmp_path, tiny_official, damage):
    for name, payload in tiny_official.items():
        (tmp_path / name).write_bytes(payload)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = images.read_bytes()
    images.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else blob[:-1] + bytes([blob[-1] ^ 1]))
    _offline(monkeypatch)
    with pytest.raises(MnistDataError, match="corrupted or truncated") as err:
        load_mnist("test", source="auto", cache_dir=tmp_path)
    assert "source='subset'" in str(err.value)
    assert (tmp_path / "t10k-images-idx3-ubyte.gz.corrupt").exists()
    # Back online, the damaged file is replaced by a verified download.
    _serve(monkeypatch, tiny_official)
    x, _ = load_mnist("test", source="auto", cache_dir=tmp_path, verbose=False)
    assert x.shape == (3, 784)
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes() == tiny_official["t10k-images-idx3-ubyte.gz"]


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path / "mnist"))
    assert data.default_cache_dir() == tmp_path / "mnist"


def test_no_download_when_disabled(monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(MnistDataError, match="download=False"):
        load_mnist("test", source="auto", cache_dir=tmp_path, download=False)
