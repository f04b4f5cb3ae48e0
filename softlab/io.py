"""Low-level helpers shared by every layer: atomic writes, checksums, config hashing.

Nothing half-written is ever read back: every writer here writes to a temporary file in
the destination folder and renames it into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


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
