"""FABRICATED CIFAR-10 files in the exact python format, for tests only (these are not CIFAR-10).

Moved out of :mod:`softlab.data.cifar` so the package ships no test scaffolding: the pickler
writes what Python 2's cPickle wrote for the published files, and :func:`fabricate_cifar10`
writes a small seeded data set (archive and/or extracted folder) with its own checksums.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from softlab.data.cifar import CIFAR10, ROW_BYTES, CifarSpec, _ArrayOnlyUnpickler
from softlab.io import atomic_write_bytes, md5_bytes

__all__ = ["fabricate_cifar10", "py2_pickle"]


_PurePythonPickler: Any = pickle._Pickler  # the pure-Python pickler: its dispatch is overridable


class _Py2Pickler(_PurePythonPickler):  # type: ignore[misc]  # subclassing the untyped pure-Python pickler
    """Writes pickles as Python 2's cPickle did for the CIFAR files: protocol 2, every bytes
    and str object as a Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), numpy globals under
    their Python 2 module names (``numpy.core.multiarray``)."""

    dispatch = _PurePythonPickler.dispatch.copy()

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", None) or "numpy"
        name = name or obj.__qualname__
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
        if (module, name) not in _ArrayOnlyUnpickler.ALLOWED:
            raise pickle.PicklingError(f"fabricated CIFAR pickles hold only numpy arrays, got {module}.{name}")
        self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
        self.memoize(obj)

    dispatch[type] = save_global


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled as Python 2 wrote the CIFAR-10 files (see :class:`_Py2Pickler`)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def fabricate_cifar10(
    root: str | os.PathLike[str],
    train_per_batch: int = 20,
    test_size: int = 30,
    seed: int = 0,
    extracted: bool = True,
    archive: bool = True,
) -> CifarSpec:
    """Write a small FABRICATED data set in the exact CIFAR-10 python format under ``root``.

    ``root/cifar-10-python.tar.gz`` (``archive``) and/or ``root/cifar-10-batches-py/``
    (``extracted``): five train batches of ``train_per_batch`` images, a test batch of
    ``test_size`` and ``batches.meta``, pickled as Python 2 did. Image ``i`` of class ``c`` is a
    seeded noisy picture whose colour and a bright square's position depend on ``c`` (so a
    model can learn something in a few steps). Returns the spec with the files' own MD5s — the
    published ones (:data:`CIFAR10`) stay untouched. For tests only: these are not CIFAR-10.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = CIFAR10.classes
    palette = rng.integers(0, 256, size=(len(classes), 3))

    def batch(n: int, label: str, first: int) -> bytes:
        labels = rng.integers(0, len(classes), size=n)
        img = rng.integers(0, 64, size=(n, 3, 32, 32), dtype=np.uint8)
        img += (palette[labels] // 2).astype(np.uint8)[:, :, None, None]  # < 64 + 128: no overflow
        for k, c in enumerate(labels):
            r, q = divmod(int(c), 5)
            img[k, :, 4 + 12 * r : 12 + 12 * r, 2 + 6 * q : 6 + 6 * q] = 255
        data = img.reshape(n, ROW_BYTES)
        return py2_pickle(
            {
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in labels],
                b"data": data,
                b"filenames": [f"fabricated_{first + k:05d}.png".encode() for k in range(n)],
            }
        )

    files = {
        f"data_batch_{k}": batch(train_per_batch, f"training batch {k} of 5", (k - 1) * train_per_batch)
        for k in range(1, 6)
    }
    files["test_batch"] = batch(test_size, "testing batch 1 of 1", 0)
    files["batches.meta"] = py2_pickle(
        {b"num_cases_per_batch": train_per_batch, b"label_names": [c.encode() for c in classes], b"num_vis": ROW_BYTES}
    )
    if extracted:
        for file, data in files.items():
            atomic_write_bytes(root / CIFAR10.folder / file, data)
    archive_md5 = ""
    if archive:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for file, data in [*files.items(), ("readme.html", b"<html>fabricated</html>")]:
                info = tarfile.TarInfo(f"{CIFAR10.folder}/{file}")
                info.size, info.mtime, info.mode = len(data), 1_234_567_890, 0o644
                tar.addfile(info, io.BytesIO(data))
        atomic_write_bytes(root / CIFAR10.archive, buf.getvalue())
        archive_md5 = md5_bytes(buf.getvalue())
    return CifarSpec(
        name="cifar10",
        folder=CIFAR10.folder,
        archive=CIFAR10.archive,
        archive_md5=archive_md5,
        url="file:///nonexistent/fabricated-cifar-10-python.tar.gz",
        md5={f: md5_bytes(d) for f, d in files.items()},
        split_files=CIFAR10.split_files,
        meta_file=CIFAR10.meta_file,
        classes=classes,
        sizes={"train": 5 * train_per_batch, "test": test_size},
    )
