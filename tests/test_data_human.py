"""Human labels: real files (pinned SHA-256), fallbacks, the MTurk mapping rule."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from softlab.data import human, load_human, mode_shifted
from softlab.data.annotations import human_mode
from softlab.data.images import load_images
from softlab.paths import PROJECT_ROOT


def test_fashion_mnist_h_has_10k_items_and_18pc_mode_shifts():
    fmh = load_human("fashion-mnist-h")
    assert fmh.counts.shape == (10000, 10) and fmh.n_items == 10000
    votes = fmh.votes()
    assert votes.min() == 53 and votes.max() == 79 and np.median(votes) == 67
    assert votes.sum() == 667020
    assert np.array_equal(fmh.official, load_images("fashion-mnist", "test").labels)
    shifted = mode_shifted(fmh.counts, fmh.official)
    # exact share, ties resolved towards the official label
    assert shifted.sum() == 1754
    plain = (fmh.counts.argmax(1) != fmh.official).mean()  # ties to lowest index
    print(
        f"Fashion-MNIST-H: human majority != official on {shifted.mean():.2%} (ties to official), "
        f"{plain:.2%} (ties to lowest)"
    )


def test_mnist_mturk_spread_rule_and_alignment():
    m = load_human("mnist-mturk")
    assert m.n_items == 100 and m.counts.shape == (100, 10)
    records = json.loads((PROJECT_ROOT.parent / "shared/data/human/mnist-label-errors/mnist_mturk.json").read_text())
    assert np.allclose(m.votes(), [sum(r["mturk"].values()) for r in records])
    assert np.array_equal(m.official, load_images("mnist", "test").labels[m.items])
    assert np.array_equal(human_mode(m.counts, m.official) != m.official, mode_shifted(m.counts, m.official))


def test_mturk_neither_rules_on_a_hand_case():
    rec = [
        {"id": 7, "given_original_label": 1, "our_guessed_label": 7, "mturk": {"given": 2, "guessed": 1, "neither": 4}}
    ]
    _, spread, _ = human.mturk_to_counts(rec, "spread")
    assert spread[0, 1] == 2 and spread[0, 7] == 1 and np.isclose(spread[0, 0], 0.5) and np.isclose(spread.sum(), 7)
    _, drop, _ = human.mturk_to_counts(rec, "drop")
    assert drop.sum() == 3 and drop[0, 0] == 0
    _, uni, _ = human.mturk_to_counts(rec, "uniform")
    assert np.isclose(uni[0, 1], 2.4) and np.isclose(uni[0, 0], 0.4)
    only_neither = [{**rec[0], "mturk": {"given": 0, "guessed": 0, "neither": 5}}]
    _, drop2, _ = human.mturk_to_counts(only_neither, "drop")
    assert np.isclose(drop2.sum(), 1.0) and drop2[0, 1] == 0 and drop2[0, 7] == 0
    with pytest.raises(ValueError, match="neither"):
        human.mturk_to_counts(rec, "ignore")


def test_cifar10h_loader():
    c = load_human("cifar10h")
    assert c.counts.shape == (10000, 10) and c.votes().min() == 47 and c.official is None


def test_cleanlab_probs_align_with_mnist_test_labels():
    probs, labels = human.load_mnist_cleanlab_probs()
    assert probs.shape == (10000, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(labels, load_images("mnist", "test").labels)
    assert (probs.argmax(1) == labels).mean() > 0.97


def test_download_failure_falls_back_to_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "data"))
    calls = []

    def no_network(url, timeout=20.0):
        calls.append(url)
        raise OSError("no network")

    monkeypatch.setattr(human, "_download", no_network)
    path, origin = human.fetch_human_file("mnist-label-errors/mnist_mturk.json")
    assert calls and calls[0].startswith("https://raw.githubusercontent.com/cleanlab/label-errors/")
    assert path.is_relative_to(tmp_path) and "mnist_mturk.json" in origin


def test_corrupted_human_copy_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "data"))
    bad = tmp_path / "mine" / "fashion-mnist-h"
    bad.mkdir(parents=True)
    src = PROJECT_ROOT.parent / "shared/data/human/fashion-mnist-h/fmh_counts.csv"
    text = src.read_text().replace("0,0,0,1,1,1,1,26,0,42", "0,0,0,1,1,1,1,26,0,41", 1)
    (bad / "fmh_counts.csv").write_text(text)
    monkeypatch.setenv("SOFTLAB_HUMAN_DIR", str(tmp_path / "mine"))
    monkeypatch.setattr(human, "human_dirs", lambda: [tmp_path / "mine"])
    monkeypatch.setattr(human, "_download", lambda url, timeout=20.0: (_ for _ in ()).throw(OSError("offline")))
    with pytest.warns(UserWarning, match="SHA-256 mismatch"), pytest.raises(human.HumanDataError) as err:
        human.fetch_human_file("fashion-mnist-h/fmh_counts.csv")
    assert "bec7efff" in str(err.value) and "SOFTLAB_HUMAN_DIR" in str(err.value)


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="source"):
        load_human("imagenet-h")


def test_shared_copy_matches_sha256sums():
    sums = (PROJECT_ROOT.parent / "shared/data/human/SHA256SUMS").read_text().split("\n")
    pinned = {line.split()[1][2:]: line.split()[0] for line in sums if line.strip()}
    for relpath, f in human.HUMAN_FILES.items():
        assert pinned[relpath] == f.sha256


def test_offline_switch_skips_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SOFTLAB_OFFLINE", "1")
    calls = []
    monkeypatch.setattr(human, "_download", lambda url, timeout=20.0: calls.append(url) or b"")
    path, _ = human.fetch_human_file("mnist-label-errors/mnist_mturk.json")  # the local copy serves
    assert calls == [] and path.is_relative_to(tmp_path)
    monkeypatch.setattr(human, "human_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(human.HumanDataError, match="skipped, offline") as err:
        human.fetch_human_file("cifar-10h/cifar10h-counts.npy")
    assert calls == [] and "needs the network" in str(err.value)


def test_human_files_verified_in_SOFTLAB_HUMAN_DIR_are_present_not_missing(tmp_path, monkeypatch):
    shared = PROJECT_ROOT.parent / "shared/data/human"
    mine = tmp_path / "mine"
    shutil.copytree(shared, mine)
    (mine / "cifar-10h" / "cifar10h-counts.npy").write_bytes(b"not the real file")
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SOFTLAB_HUMAN_DIR", str(mine))
    rows = {r["file"]: r for r in human.human_cache_info()}
    fmh = rows["fashion-mnist-h/fmh_counts.csv"]
    assert fmh["status"] == "ok" and fmh["origin"].startswith("SOFTLAB_HUMAN_DIR") and str(mine) in fmh["path"]
    assert rows["cifar-10h/cifar10h-counts.npy"]["status"] == "MISMATCH"  # checked, not assumed
