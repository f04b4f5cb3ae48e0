"""Execution settings shared by every layer that runs torch: threads, device, allocator.

Nothing here changes what is computed, only where and how fast. torch is imported when a
function needs it, so importing this module stays cheap.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CPU_WORKERS_ENV",
    "THREADS_ENV",
    "env_cpu_workers",
    "env_torch_threads",
    "resolve_device",
    "torch_threads",
    "tune_cpu_allocator",
]


THREADS_ENV = "SOFTLAB_TORCH_THREADS"
CPU_WORKERS_ENV = "SOFTLAB_CPU_WORKERS"


def _env_positive_int(name: str, default: int, what: str) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = int(text) if text.isascii() and text.isdigit() else 0  # plain ASCII digits only
    if value < 1:
        raise ValueError(f"${name}: expected a positive integer ({what}), got {text!r}")
    return value


def env_torch_threads(default: int) -> int:
    """``$SOFTLAB_TORCH_THREADS`` as a positive int, or ``default`` when unset or empty.

    Raises ``ValueError`` naming the variable when it holds anything else (``abc``, ``0``, ``-2``).
    """
    return _env_positive_int(THREADS_ENV, default, "torch threads")


def env_cpu_workers(default: int = 1) -> int:
    """``$SOFTLAB_CPU_WORKERS`` (batched groups trained side by side on CPU, see
    ``softlab.train.TrainConfig.cpu_workers``) as a positive int, or ``default`` when unset or
    empty; ``ValueError`` naming the variable for anything else."""
    return _env_positive_int(CPU_WORKERS_ENV, default, "CPU training workers")


@contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then restore the previous setting.

    ``n=None`` uses ``$SOFTLAB_TORCH_THREADS`` when set, else leaves torch's own setting. On
    shared, oversubscribed cores one thread can be several times faster for small models than
    two; on an idle machine torch's default (all cores) is the better choice
    (``benchmarks/bench_trainer.py`` measures both on the machine at hand).
    """
    import torch

    old = torch.get_num_threads()
    want = n if n is not None else env_torch_threads(default=old)
    torch.set_num_threads(max(1, want))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else → ``torch.device``.

    Raises ``ValueError`` for a name torch does not know, or for CUDA where there is none.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:n]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


_ALLOCATOR_TUNED = False

#: glibc ``mallopt`` parameters and the values :func:`tune_cpu_allocator` sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


def tune_cpu_allocator(libc_name: str = "libc.so.6") -> bool:
    """Raise glibc malloc's mmap and trim thresholds (once per process); True if applied.

    The trainer's batched activations are tens of MB: with glibc's defaults each such buffer is
    mapped fresh (and page-faulted) at every step; above the raised thresholds it is served from
    the heap and reused. Memory is returned to the OS less eagerly. False where there is no glibc
    (``libc_name`` cannot be loaded or has no ``mallopt``) or ``mallopt`` refuses a value.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        libc = ctypes.CDLL(libc_name)
        ok = (
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        )
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR_TUNED = ok
    return ok
