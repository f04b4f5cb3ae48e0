"""CIFAR-10 in torchvision's python format: a small FABRICATED archive in the exact format (the
real images cannot be downloaded on this offline machine), checked against torchvision's own
reader; checksum failures; the one-line 'not available' error; one smoke training step."""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from dataclasses import replace

import numpy as np
import pytest
from _cifar_fabrication import fabricate_cifar10, py2_pickle

from softlab.cli import main
from softlab.data import DataError, DataUnavailable, cifar, load_cifar10h, load_human, load_images
from softlab.data.cifar import (
    CIFAR10,
    load_cifar10,
    parse_batch,
)
from softlab.io import md5_bytes
from softlab.models import ModelConfig
from softlab.train import Member, TrainConfig, train_members, train_single_reference

TORCHVISION_CIFAR10 = pytest.importorskip("torchvision.datasets").CIFAR10


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fabricated CIFAR-10 (5 × 20 train, 30 test) in SOFTLAB_DATA_DIR, folder and archive."""
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    spec = fabricate_cifar10(tmp_path, train_per_batch=20, test_size=30, seed=1)
    return tmp_path, spec


def _patch_torchvision(monkeypatch, spec):
    """torchvision's CIFAR10 with the fabricated files' checksums instead of the published ones."""
    monkeypatch.setattr(TORCHVISION_CIFAR10, "train_list", [[f, spec.md5[f]] for f in spec.split_files["train"]])
    monkeypatch.setattr(TORCHVISION_CIFAR10, "test_list", [["test_batch", spec.md5["test_batch"]]])
    monkeypatch.setattr(TORCHVISION_CIFAR10, "meta", {**TORCHVISION_CIFAR10.meta, "md5": spec.md5["batches.meta"]})


def test_published_checksums_are_torchvisions():
    tv = TORCHVISION_CIFAR10
    assert CIFAR10.archive_md5 == tv.tgz_md5 and CIFAR10.url == tv.url and CIFAR10.archive == tv.filename
    assert CIFAR10.folder == tv.base_folder
    assert dict(CIFAR10.md5) == {**dict(tv.train_list), **dict(tv.test_list), tv.meta["filename"]: tv.meta["md5"]}
    assert CIFAR10.split_files["train"] == tuple(f for f, _ in tv.train_list)


def test_fabricated_files_are_python2_protocol2_pickles(fake):
    root, spec = fake
    raw = (root / "cifar-10-batches-py" / "test_batch").read_bytes()
    assert raw[:3] == b"\x80\x02}"  # PROTO 2, EMPTY_DICT — as Python 2's cPickle wrote them
    assert b"U\x04data" in raw and b"cnumpy.core.multiarray\n_reconstruct\n" in raw  # py2 str keys, py2 module names
    assert b"T" + (30 * 3072).to_bytes(4, "little") in raw  # the pixel data as one BINSTRING
    d = pickle.loads(raw, encoding="latin1")  # how torchvision reads them
    assert set(d) == {"batch_label", "labels", "data", "filenames"}
    assert d["data"].dtype == np.uint8 and d["data"].shape == (30, 3072) and len(d["labels"]) == 30
    assert (
        pickle.loads((root / "cifar-10-batches-py" / "batches.meta").read_bytes(), encoding="bytes")[b"label_names"][0]
        == b"airplane"
    )
    with tarfile.open(root / "cifar-10-python.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted(f"cifar-10-batches-py/{f}" for f in [*spec.md5, "readme.html"])


def test_loader_matches_torchvision_and_the_documented_pixel_layout(fake, monkeypatch):
    root, spec = fake
    for split, n in (("test", 30), ("train", 100)):
        ours = load_cifar10(split, sources=("cache",), spec=spec)
        assert ours.images.shape == (n, 32, 32, 3) and ours.images.dtype == np.uint8 and not ours.images.flags.writeable
        assert ours.labels.dtype == np.int64 and ours.classes == CIFAR10.classes
        _patch_torchvision(monkeypatch, spec)
        tv = TORCHVISION_CIFAR10(str(root), train=(split == "train"), download=False)
        assert np.array_equal(ours.images, tv.data) and ours.labels.tolist() == tv.targets
        assert tuple(tv.classes) == ours.classes
    # independent of torchvision: row k of b'data' holds the R, G, B planes, each row-major 32 × 32
    d = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    test = load_cifar10("test", sources=("cache",), spec=spec)
    for k, y, x, c in [(0, 0, 0, 0), (3, 5, 31, 2), (29, 31, 7, 1)]:
        assert test.images[k, y, x, c] == d[b"data"][k, c * 1024 + y * 32 + x]


def test_load_images_serves_cifar10_and_as_float_is_channels_first(fake, monkeypatch):
    _, spec = fake
    monkeypatch.setattr(cifar, "CIFAR10", spec)  # the default spec, for load_images' fixed call
    test = load_images("cifar10", "test", sources=("cache",))
    assert test.dataset == "cifar10" and test.split == "test" and len(test) == 30
    assert test.input_shape == (3, 32, 32)
    x = test.as_float()
    assert x.shape == (30, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[4, 2, 10, 3] == np.float32(test.images[4, 10, 3, 2]) / np.float32(255.0)
    xt, yt = test.tensors()
    assert tuple(xt.shape) == (30, 3, 32, 32) and yt.tolist() == test.labels.tolist()
    assert load_images("mnist", "test").input_shape == (1, 28, 28)


def test_archive_only_is_extracted_into_torchvisions_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    spec = fabricate_cifar10(tmp_path, train_per_batch=4, test_size=6, seed=2, extracted=False)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    origins = cifar.fetch("test", sources=("cache",), spec=spec)
    assert set(origins) == {"test_batch", "batches.meta"}
    assert all(o.startswith(f"archive {tmp_path / 'cifar-10-python.tar.gz'}") for o in origins.values())
    assert md5_bytes((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()) == spec.md5["test_batch"]
    assert len(load_cifar10("train", sources=("cache",), spec=spec)) == 20  # the rest on demand
    rows = {r["file"]: r for r in cifar.cache_info(spec)}
    assert {r["status"] for r in rows.values()} == {"ok"} and rows["data_batch_3"]["origin"].startswith("archive")


def test_a_corrupted_cached_batch_is_refused_and_restored_from_the_archive(fake):
    root, spec = fake
    path = root / "cifar-10-batches-py" / "test_batch"
    good = path.read_bytes()
    path.write_bytes(good[:-10])
    with pytest.warns(UserWarning, match=r"test_batch from cache .*MD5 mismatch \(expected " + spec.md5["test_batch"]):
        test = load_cifar10("test", sources=("cache",), spec=spec)
    assert len(test) == 30 and path.read_bytes() == good
    assert cifar.cache_info(spec)[5]["status"] == "ok"


def test_corrupted_files_everywhere_give_one_line_naming_what_to_download(fake):
    root, spec = fake
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a batch")
    (root / "cifar-10-python.tar.gz").write_bytes(b"not an archive")
    with pytest.warns(UserWarning, match="MD5 mismatch") as record, pytest.raises(DataUnavailable) as info:
        load_cifar10("test", sources=("cache", "registry"), spec=spec)
    assert {str(w.message).split(" from ")[0] for w in record} == {"test_batch", "cifar-10-python.tar.gz"}
    line = str(info.value)
    assert "\n" not in line and line == info.value.line
    assert "test_batch, cifar-10-python.tar.gz failed its MD5 check" in line
    assert spec.url in line and spec.archive_md5 in line and str(root) in line
    assert "softlab data fetch --dataset cifar10" in line
    assert any("registry: no package registry ships cifar10" in f for f in info.value.failures)
    assert isinstance(info.value, DataError)
    assert "MISMATCH" in cifar.cache_info(spec)[5]["status"]


def test_an_archive_with_the_wrong_checksum_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    spec = fabricate_cifar10(tmp_path, train_per_batch=2, test_size=3, extracted=False)
    wrong = replace(spec, archive_md5="0" * 32)
    with (
        pytest.warns(UserWarning, match=r"cifar-10-python.tar.gz from archive .*MD5 mismatch \(expected 0{32}"),
        pytest.raises(DataUnavailable, match="failed its MD5 check"),
    ):
        load_cifar10("test", sources=("cache",), spec=wrong)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    # a member whose own checksum differs is refused too, even from a verified archive
    bad_member = replace(spec, md5={**spec.md5, "test_batch": "f" * 32})
    with pytest.warns(UserWarning, match=r"test_batch in cifar-10-python.tar.gz"), pytest.raises(DataUnavailable):
        load_cifar10("test", sources=("cache",), spec=bad_member)


def test_missing_images_raise_data_unavailable_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailable) as info:
        load_images("cifar10", "test", sources=("cache", "registry"))  # the real, published checksums
    line = str(info.value)
    assert line == (
        f"cifar10 images not available: download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
        f"(MD5 c58f30108f718f92721af3b95e74349a) and put it in {tmp_path} (SOFTLAB_DATA_DIR), or extract it "
        f"there as {tmp_path / 'cifar-10-batches-py'}/, then run `softlab data fetch --dataset cifar10`"
    )
    assert any("test_batch: not cached" in f for f in info.value.failures)
    # the mirror source fails (here: a URL that cannot exist) and is reported the same way
    spec = replace(CIFAR10, url="file:///nonexistent/cifar-10-python.tar.gz")
    with pytest.raises(DataUnavailable) as info:
        load_cifar10("test", spec=spec)
    assert any(f.startswith("  - mirror: file:///nonexistent") for f in info.value.failures)
    with pytest.raises(ValueError, match="split"):
        load_cifar10("validation")
    with pytest.raises(ValueError, match="sources"):
        load_cifar10("test", sources=("internet",))


def test_batches_are_unpickled_without_arbitrary_globals():
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(DataError, match=r"posix.system is not allowed"):
        parse_batch(pickle.dumps({b"data": Evil()}, protocol=2), "evil_batch")


@pytest.mark.parametrize(
    "content, word",
    [
        ({b"labels": [0]}, "missing key b'data'"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"0\.\.9"),
    ],
)
def test_malformed_batches_are_named(content, word):
    with pytest.raises(DataError, match=f"bad_batch: .*{word}"):
        parse_batch(py2_pickle(content), "bad_batch")
    with pytest.raises(DataError, match="not a CIFAR python-format pickle"):
        parse_batch(b"\x00garbage", "bad_batch")


def test_cifar10h_counts_align_with_the_test_images(tmp_path, monkeypatch):
    human = load_human("cifar10h")
    assert human.counts.shape == (10000, 10) and human.classes == CIFAR10.classes
    assert human.items.tolist() == list(range(10000)) and (human.votes() >= 47).all()
    monkeypatch.setenv("SOFTLAB_HUMAN_DIR", str(_human_dir()))
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    spec = fabricate_cifar10(tmp_path, train_per_batch=1, test_size=10000, archive=False)
    h = load_cifar10h(sources=("cache",), download=False, spec=spec)
    test = load_cifar10("test", sources=("cache",), spec=spec)
    assert h.dataset == "cifar10" and h.split == "test" and np.array_equal(h.counts, human.counts)
    assert np.array_equal(h.official, test.labels) and h.items.tolist() == list(range(10000))
    small = fabricate_cifar10(tmp_path / "small", train_per_batch=1, test_size=30, archive=False)
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "small"))
    with pytest.raises(DataError, match=r"one row per test image .*\(30, 10\)"):
        load_cifar10h(sources=("cache",), download=False, spec=small)


def _human_dir():
    from softlab.data.human import fetch_human_file

    path, _ = fetch_human_file("cifar-10h/cifar10h-counts.npy", download=False)
    return path.parent.parent


def test_cli_lists_cifar10_and_skips_it_with_one_line_when_unavailable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    assert main(["data", "fetch", "--no-human", "--dataset", "cifar10", "--sources", "cache"]) == 1
    assert "FAILED cifar10: cifar10 images not available" in capsys.readouterr().err
    monkeypatch.setattr("softlab.data.images.DATASETS", {})  # only the optional set, offline
    assert main(["data", "fetch", "--no-human", "--sources", "cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skip cifar10: cifar10 images not available") and out.count("\n") == 1
    assert main(["data", "info"]) == 0
    assert [line.split()[:3] for line in capsys.readouterr().out.splitlines() if "test_batch" in line] == [
        ["cifar10", "test_batch", "missing"]
    ]


def _fabricated_xy(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    spec = fabricate_cifar10(tmp_path, train_per_batch=24, test_size=16, seed=3, archive=False)
    train = load_cifar10("train", sources=("cache",), spec=spec)
    test = load_cifar10("test", sources=("cache",), spec=spec)
    return train, test


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_one_smoke_training_step_on_fabricated_cifar(tmp_path, monkeypatch, kind):
    train, test = _fabricated_xy(tmp_path, monkeypatch)
    x = train.as_float()
    targets = np.full((len(x), 10), 0.02, dtype=np.float32)
    targets[np.arange(len(x)), train.labels] = 0.82  # a soft label per item
    cfg = TrainConfig(
        model=ModelConfig(kind, hidden=32, width=4, in_shape=train.input_shape), epochs=2, batch_size=32, lr=3e-3
    )
    members = [Member(seed=s, targets=targets, train_idx=np.arange(len(x)), watch_idx=np.arange(8)) for s in (0, 1, 2)]
    results = train_members(x, members, cfg, eval_sets={"test": test.as_float()}, progress=False)
    for r in results:
        assert not r.diverged and r.eval_probs["test"].shape == (16, 10)
        np.testing.assert_allclose(r.eval_probs["test"].sum(1), 1.0, rtol=1e-5)
        assert r.dynamics is not None and r.dynamics.shape == (2, len(x), 10)
        assert np.isfinite(r.train_loss).all() and r.train_loss[1] < r.train_loss[0]
    # the batched (grouped-convolution) path computes what one plain nn.Module does on 3 channels
    ref = train_single_reference(x, members[1], cfg, eval_sets={"test": test.as_float()})
    np.testing.assert_allclose(results[1].eval_probs["test"], ref.eval_probs["test"], atol=5e-4)
    np.testing.assert_allclose(results[1].train_loss, ref.train_loss, rtol=1e-4)


def test_wrong_input_shape_is_named(tmp_path, monkeypatch):
    train, _ = _fabricated_xy(tmp_path, monkeypatch)
    cfg = TrainConfig(model=ModelConfig("cnn"), epochs=1)  # default (1, 28, 28): not CIFAR's
    member = Member(seed=0, targets=np.full((len(train), 10), 0.1, np.float32), train_idx=np.arange(len(train)))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 28, 28\), got \(120, 3, 32, 32\)"):
        train_members(train.as_float(), [member], cfg, progress=False)


def test_py2_pickle_round_trips_through_both_encodings():
    obj = {b"label_names": [b"a", b"b"], b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"num_vis": 3}
    raw = py2_pickle(obj)
    for enc in ("bytes", "latin1"):
        back = pickle.load(io.BytesIO(raw), encoding=enc)
        key = (lambda k: k) if enc == "bytes" else (lambda k: k.decode())
        assert np.array_equal(back[key(b"data")], obj[b"data"]) and back[key(b"num_vis")] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from numpy.core names on load
        cifar._unpickle(raw, "x")
