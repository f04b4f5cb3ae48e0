"""Public human-label sources, downloaded from their original repositories (pinned by commit
and SHA-256) with a fallback to local copies.

Search order for each file: the verified local cache (``SOFTLAB_DATA_DIR/human``), the original
public repository (pinned URL), ``SOFTLAB_HUMAN_DIR``, and the project's sibling folder
``../shared/data/human`` (used on machines without internet). Every candidate's SHA-256 is
checked; a mismatching file is reported and skipped, never used. With ``SOFTLAB_OFFLINE=1``
(``--offline``) the download is skipped.

Sources (see the book's introduction for provenance and licences):

- ``fashion-mnist-h``: vote counts for all 10,000 Fashion-MNIST test images (53–79 votes each),
  Ishida et al., ICLR 2023 (GPL-3.0 repository).
- ``mnist-mturk``: 100 MNIST test images flagged as possible label errors; 5–10 Mechanical Turk
  workers chose the given label, one proposed alternative, or *neither* (Northcutt et al., 2021,
  Apache-2.0). How *neither* votes become a 10-class distribution is set by ``neither``:

  - ``"spread"`` (default): each *neither* vote is split evenly over the 8 classes that are
    neither the given nor the proposed label (the worker said it is one of those);
  - ``"drop"``: *neither* votes are ignored (items with only *neither* votes get a uniform
    distribution over those 8 classes — they carry no other information);
  - ``"uniform"``: each *neither* vote is split evenly over all 10 classes.

- ``cifar10h``: vote counts for the 10,000 CIFAR-10 test images (Peterson et al., ICCV 2019;
  CC BY-NC-SA 4.0). Loader only: the CIFAR-10 images are not available offline.
- ``mnist-cleanlab-cv`` (model soft label, not human): cross-validated out-of-sample model
  probabilities for the 10,000 MNIST test images, from the same repository as ``mnist-mturk``.
"""

from __future__ import annotations

import json
import os
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from softlab.data.annotations import soft_labels
from softlab.data.cifar import CifarSpec, load_cifar10
from softlab.data.images import load_images
from softlab.data.imageset import OFFLINE_HINT, SOURCES, DataError, offline
from softlab.io import atomic_write_bytes, sha256_bytes
from softlab.paths import data_dir, human_dirs

CLEANLAB = "https://raw.githubusercontent.com/cleanlab/label-errors/6d5d6b31a13216290afc40e5c6319399c4d15c06/"
IRREDUCIBLE = "https://raw.githubusercontent.com/takashiishida/irreducible/4bc347d387c103c355d2ebff0b3983e73f4a9bc2/"
CIFAR10H = "https://raw.githubusercontent.com/jcpeterson/cifar-10h/48da312b193b82e6939ec20f23d1f09cbdd849c8/"


@dataclass(frozen=True)
class HumanFile:
    relpath: str  # path under the human folder
    url: str
    sha256: str


HUMAN_FILES: dict[str, HumanFile] = {
    f.relpath: f
    for f in (
        HumanFile(
            "fashion-mnist-h/fmh_counts.csv",
            IRREDUCIBLE + "data/fmh_counts.csv",
            "bec7efff5d6f901a6224758d71caadb436dbd8de1284b0be7089d193be94ddbc",
        ),
        HumanFile(
            "mnist-label-errors/mnist_mturk.json",
            CLEANLAB + "mturk/mnist_mturk.json",
            "448bd00fc9df262c68d50d48709d7fa3d5dc966bc66580e5df20e0dcba6e5612",
        ),
        HumanFile(
            "mnist-label-errors/mnist_test_set_pyx.npy",
            CLEANLAB + "cross_validated_predicted_probabilities/mnist_test_set_pyx.npy",
            "403d0f1188c8940ceb47994a2cd9eb2aee6946810b5488d9d4501c97e09f30c2",
        ),
        HumanFile(
            "mnist-label-errors/mnist_test_set_original_labels.npy",
            CLEANLAB + "original_test_labels/mnist_test_set_original_labels.npy",
            "9c4b8d0ef379b2ce0d312470484d79e282a47e092738fca1edff326f9b67c20e",
        ),
        HumanFile(
            "cifar-10h/cifar10h-counts.npy",
            CIFAR10H + "data/cifar10h-counts.npy",
            "9b36b4550349af56c79083356312eb4af856cc5fd3caf1f669d40b9d0bbb69ff",
        ),
    )
}

SOURCE_FILES = {
    "fashion-mnist-h": ("fashion-mnist-h/fmh_counts.csv",),
    "mnist-mturk": ("mnist-label-errors/mnist_mturk.json",),
    "cifar10h": ("cifar-10h/cifar10h-counts.npy",),
    "mnist-cleanlab-cv": (
        "mnist-label-errors/mnist_test_set_pyx.npy",
        "mnist-label-errors/mnist_test_set_original_labels.npy",
    ),
}
HUMAN_SOURCES = ("fashion-mnist-h", "mnist-mturk", "cifar10h")
NEITHER_RULES = ("spread", "drop", "uniform")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class HumanDataError(RuntimeError):
    """A human-label file could not be found in any verified copy, or is malformed."""


def human_cache_dir() -> Path:
    return data_dir() / "human"


def _download(url: str, timeout: float = 20.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def fetch_human_file(relpath: str, download: bool = True) -> tuple[Path, str]:
    """Return (verified local path, origin) of one human-label file, caching it.

    ``download=False`` or ``SOFTLAB_OFFLINE=1`` uses local copies only."""
    f = HUMAN_FILES[relpath]
    local_only = offline()
    download = download and not local_only
    cached = human_cache_dir() / relpath
    failures: list[str] = []
    candidates: list[tuple[str, object]] = [("cache", cached)]
    if download:
        candidates.append(("download", f.url))
    candidates += [("local", d / relpath) for d in human_dirs() if d != human_cache_dir()]
    for kind, where in candidates:
        try:
            if kind == "download":
                data = _download(str(where))
            else:
                path = Path(str(where))
                if not path.exists():
                    failures.append(f"  - {kind}: {path} not found")
                    continue
                data = path.read_bytes()
        except Exception as exc:
            failures.append(f"  - {kind}: {where}: {exc}")
            continue
        actual = sha256_bytes(data)
        if actual != f.sha256:
            msg = f"{where}: SHA-256 mismatch for {relpath} (expected {f.sha256}, got {actual}); not used"
            warnings.warn(msg, stacklevel=2)
            failures.append(f"  - {kind}: {msg}")
            continue
        if kind != "cache":
            atomic_write_bytes(cached, data)
            atomic_write_bytes(cached.with_name(f".{cached.name}.origin"), str(where).encode())
        origin_file = cached.with_name(f".{cached.name}.origin")
        origin = origin_file.read_text() if origin_file.exists() else str(where)
        return cached, origin
    skipped = f"\n  - download: skipped, {OFFLINE_HINT}" if local_only else ""
    raise HumanDataError(
        f"{relpath}: no verified copy found (expected SHA-256 {f.sha256}):\n"
        + "\n".join(failures)
        + skipped
        + "\nSet SOFTLAB_HUMAN_DIR to a folder holding the file, or run `softlab data fetch` on a machine with internet"
        + (" (the download needs the network)." if local_only else ".")
    )


@dataclass(frozen=True)
class HumanLabels:
    """Human vote counts for a subset of a dataset split.

    ``items`` are indices into ``dataset``/``split``; ``counts`` (n_items × n_classes) may be
    fractional where a mapping rule spreads votes (``mnist-mturk``'s *neither*); ``official``
    holds the official labels of those items (None where unknown offline: ``cifar10h``).
    """

    source: str
    dataset: str
    split: str
    items: np.ndarray
    counts: np.ndarray
    classes: tuple[str, ...]
    official: np.ndarray | None

    @property
    def n_items(self) -> int:
        return len(self.items)

    def soft(self) -> NDArray[np.float64]:
        """The soft labels: normalised counts (:func:`softlab.data.annotations.soft_labels`)."""
        return soft_labels(self.counts)

    def votes(self) -> np.ndarray:
        return self.counts.sum(axis=1)


def _read_fmh(path: Path) -> np.ndarray:
    rows = []
    for k, line in enumerate(path.read_text().splitlines()):
        fields = line.strip().split(",")
        if len(fields) != 10:
            raise HumanDataError(f"{path}: row {k}: expected 10 comma-separated counts, got {len(fields)}")
        try:
            rows.append([int(x) for x in fields])
        except ValueError:
            raise HumanDataError(f"{path}: row {k}: non-integer count in {line!r}") from None
    counts = np.asarray(rows, dtype=np.float64)
    if counts.shape != (10000, 10):
        raise HumanDataError(f"{path}: expected 10000 rows, got {counts.shape[0]}")
    return counts


def mturk_to_counts(
    records: list[dict[str, Any]], neither: str = "spread", n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map (given, guessed, neither) votes to a 10-class count matrix. Returns (items, counts, given)."""
    if neither not in NEITHER_RULES:
        raise ValueError(f"neither: expected one of {NEITHER_RULES}, got {neither!r}")
    items, given_labels = [], []
    counts = np.zeros((len(records), n_classes))
    for k, rec in enumerate(records):
        given, guessed = int(rec["given_original_label"]), int(rec["our_guessed_label"])
        votes = rec["mturk"]
        counts[k, given] += votes["given"]
        counts[k, guessed] += votes["guessed"]
        others = [c for c in range(n_classes) if c not in (given, guessed)]
        n_neither = votes["neither"]
        if neither == "spread" or (neither == "drop" and counts[k].sum() == 0):
            counts[k, others] += (n_neither if neither == "spread" else 1) / len(others)
        elif neither == "uniform":
            counts[k] += n_neither / n_classes
        items.append(int(rec["id"]))
        given_labels.append(given)
    return np.asarray(items, dtype=np.int64), counts, np.asarray(given_labels, dtype=np.int64)


def load_human(source: str, neither: str = "spread", download: bool = True) -> HumanLabels:
    """Load a public human-label source (see the module docstring for ``neither``)."""
    if source not in HUMAN_SOURCES:
        raise ValueError(f"source: expected one of {HUMAN_SOURCES}, got {source!r}")
    path, _ = fetch_human_file(SOURCE_FILES[source][0], download=download)
    if source == "fashion-mnist-h":
        counts = _read_fmh(path)
        test = load_images("fashion-mnist", "test")
        return HumanLabels(
            source, "fashion-mnist", "test", np.arange(10000, dtype=np.int64), counts, test.classes, test.labels.copy()
        )
    if source == "mnist-mturk":
        records = json.loads(path.read_text())
        items, counts, given = mturk_to_counts(records, neither)
        return HumanLabels(source, "mnist", "test", items, counts, tuple(str(d) for d in range(10)), given)
    counts = np.load(path, allow_pickle=False).astype(np.float64)
    return HumanLabels(source, "cifar10", "test", np.arange(len(counts), dtype=np.int64), counts, CIFAR10_CLASSES, None)


def load_cifar10h(
    sources: Sequence[str] = SOURCES, download: bool = True, spec: CifarSpec | None = None
) -> HumanLabels:
    """CIFAR-10H vote counts aligned with the CIFAR-10 test images, official labels filled in.

    Row ``i`` of the counts (Peterson et al., 2019) is test image ``i`` (``test_batch`` order);
    checks that there is one row per test image and one column per class, and that the class
    order of the counts (:data:`CIFAR10_CLASSES`) is ``batches.meta``'s.
    Raises :class:`softlab.data.cifar.DataUnavailable` when the images are not available.
    """
    test = load_cifar10("test", sources, spec)
    human = load_human("cifar10h", download=download)
    if human.counts.shape != (len(test), len(test.classes)):
        raise DataError(
            f"cifar10h: counts have shape {human.counts.shape}, expected one row per test image and one "
            f"column per class: ({len(test)}, {len(test.classes)})"
        )
    if tuple(CIFAR10_CLASSES) != tuple(test.classes):
        raise DataError(f"cifar10h: class order {CIFAR10_CLASSES} differs from batches.meta's {test.classes}")
    return HumanLabels("cifar10h", "cifar10", "test", human.items, human.counts, test.classes, test.labels.copy())


def load_mnist_cleanlab_probs(download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated out-of-sample model probabilities (10000, 10) float32 for the MNIST test
    set, and the original labels they were computed against."""
    p_path, _ = fetch_human_file(SOURCE_FILES["mnist-cleanlab-cv"][0], download=download)
    l_path, _ = fetch_human_file(SOURCE_FILES["mnist-cleanlab-cv"][1], download=download)
    probs = np.load(p_path, allow_pickle=False)
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs, np.load(l_path, allow_pickle=False).astype(np.int64)


def _local_copy(relpath: str) -> tuple[Path, str] | None:
    """The first local copy of ``relpath`` outside the cache (``SOFTLAB_HUMAN_DIR``, then the
    project's sibling folder) and which folder it is in."""
    env = os.environ.get("SOFTLAB_HUMAN_DIR")
    for d in human_dirs():
        if d == human_cache_dir():
            continue
        path = d / relpath
        if path.is_file():
            kind = "SOFTLAB_HUMAN_DIR" if env and d == Path(env).expanduser() else "local folder"
            return path, kind
    return None


def human_cache_info() -> list[dict[str, str]]:
    """One row per human-label file: status ``ok`` (verified), ``MISMATCH`` or ``missing``.

    A file not cached yet but present in ``SOFTLAB_HUMAN_DIR`` (or the sibling folder) is
    checked there: ``ok`` when its SHA-256 matches (it is cached on first use)."""
    rows = []
    for relpath, f in HUMAN_FILES.items():
        cached = human_cache_dir() / relpath
        path = cached
        if cached.is_file():
            ok = sha256_bytes(cached.read_bytes()) == f.sha256
            status = "ok" if ok else "MISMATCH"
            origin_file = cached.with_name(f".{cached.name}.origin")
            origin = origin_file.read_text(errors="replace") if origin_file.is_file() else "unknown"
        elif (copy := _local_copy(relpath)) is not None:
            path, kind = copy
            ok = sha256_bytes(path.read_bytes()) == f.sha256
            status = "ok" if ok else "MISMATCH"
            origin = f"{kind} {path} ({'verified' if ok else 'checksum differs, not used'}; cached on first use)"
        else:
            status, origin = "missing", "-"
        rows.append(
            {
                "dataset": "human",
                "file": relpath,
                "path": str(path),
                "status": status,
                "expected_sha256": f.sha256,
                "origin": origin,
            }
        )
    return rows
