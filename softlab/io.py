"""Low-level helpers shared by every layer: atomic writes, checksums, config hashing.

Nothing half-written is ever read back: every writer here writes to a temporary file in
the destination folder and renames it into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``.

    If the body raises, the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically and return ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_save_npz(dest: str | os.PathLike[str], **arrays: npt.ArrayLike) -> Path:
    """Save arrays to a compressed ``.npz`` atomically (never pickled)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, allow_pickle=False, **arrays)  # load_npz reads with allow_pickle=False too
    return Path(dest)


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


QUARANTINE_DIR = ".quarantine"


class DamagedCacheWarning(UserWarning):
    """A cached file failed to load; it was moved to quarantine (and will be recomputed)."""


def quarantine_file(path: str | os.PathLike[str], reason: str) -> Path | None:
    """Move a damaged cache file to ``<its folder>/.quarantine/<name>.<UTC time>`` (never
    deleted; a second copy gets ``.1``, ...), with a one-line :class:`DamagedCacheWarning`.
    Returns the new path, or None when the file had already gone (moved by another process)."""
    path = Path(path)
    qdir = path.parent / QUARANTINE_DIR
    qdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = qdir / f"{path.name}.{stamp}", 1
    while os.path.lexists(dest):
        dest, n = qdir / f"{path.name}.{stamp}.{n}", n + 1
    try:
        os.rename(path, dest)
    except FileNotFoundError:
        return None
    warnings.warn(f"{path} is damaged ({reason}); moved to {dest} and will be recomputed", DamagedCacheWarning, 2)
    return dest


def load_cached_npz(path: str | os.PathLike[str], required: Sequence[str] = ()) -> dict[str, np.ndarray] | None:
    """The arrays of a cached ``.npz``, or None when there is none to use: missing, or damaged
    (empty, truncated, a flipped byte — the zip CRC of every array is checked as it is read —,
    a folder where the file should be, or lacking one of the ``required`` arrays). A damaged
    entry is quarantined (:func:`quarantine_file`), so the caller recomputes it instead of
    failing on every rerun."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    try:
        arrays = load_npz(path)
        missing = [k for k in required if k not in arrays]
        if missing:
            raise KeyError(f"no array {missing[0]!r}")
    except FileNotFoundError:  # removed meanwhile by another process
        return None
    except Exception as exc:  # zip/zlib/npy errors of all kinds (a flipped compression-method
        # byte raises NotImplementedError): whatever the damage, the entry is unusable and is recomputed
        why = "a folder where a file should be" if path.is_dir() else " ".join(str(exc).split()) or type(exc).__name__
        quarantine_file(path, why)  # os.rename moves a folder as well as a file
        return None
    return arrays


def load_cached_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """A cached table, or None when there is none to use: missing, or damaged (empty, truncated, a
    flipped byte, a folder where the file should be, or columns other than ``columns``). A damaged
    entry is quarantined (:func:`quarantine_file`), so the caller recomputes it instead of failing
    on every rerun."""
    import pandas as pd

    path = Path(path)
    if not os.path.lexists(path):
        return None
    try:
        table = pd.read_parquet(path)
        if columns is not None and list(table.columns) != list(columns):
            raise ValueError(f"columns {list(table.columns)[:4]}..., expected {list(columns)[:4]}...")
    except FileNotFoundError:  # removed meanwhile by another process
        return None
    except Exception as exc:  # any reader error: the entry is unusable and is recomputed
        why = "a folder where a file should be" if path.is_dir() else " ".join(str(exc).split())[:200]
        quarantine_file(path, why or type(exc).__name__)
        return None
    return table


def intact_npz(*paths: str | os.PathLike[str]) -> bool:
    """Whether every cached ``.npz`` in ``paths`` exists and loads (damaged ones are quarantined
    by :func:`load_cached_npz`, so a False means "recompute")."""
    return all(load_cached_npz(p) is not None for p in paths)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file's bytes (:func:`hashlib.file_digest`: read in chunks, never whole)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return _file_digest(path, "sha256")


def md5_file(path: str | os.PathLike[str]) -> str:
    return _file_digest(path, "md5")


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {
            "__ndarray__": sha256_bytes(np.ascontiguousarray(obj).tobytes()),
            "shape": list(obj.shape),
            "dtype": str(obj.dtype),
        }
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return "NaN"
    return obj


def config_key(config: Mapping[str, Any], length: int = 16) -> str:
    """A stable hex key for a configuration (order of keys does not matter)."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
