"""Execution settings: torch threads, device names and the glibc allocator tuning."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import softlab.runtime as R

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Bytes that glibc serves from fresh mmap() regions (mallinfo2().hblkhd) before and after one
# 64 MiB malloc: with the default 128 KiB..32 MiB mmap threshold the block is mapped fresh; after
# tune_cpu_allocator (threshold 1 GiB) it comes from the heap and hblkhd does not grow.
_PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "tuned":
    from softlab.runtime import tune_cpu_allocator
    assert tune_cpu_allocator() is True
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(ctypes.c_void_p(block))
"""


def _mmapped_bytes_of_a_64mib_malloc(mode: str) -> int:
    root = Path(R.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, cwd=root)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC or not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"), reason="needs glibc >= 2.33")
def test_tuned_allocator_serves_large_blocks_from_the_heap():
    assert _mmapped_bytes_of_a_64mib_malloc("default") >= 64 << 20  # glibc maps a 64 MiB block fresh ...
    assert _mmapped_bytes_of_a_64mib_malloc("tuned") == 0  # ... unless the thresholds were raised


def test_allocator_tuning_reports_failure_without_glibc(monkeypatch):
    monkeypatch.setattr(R, "_ALLOCATOR_TUNED", False)
    assert R.tune_cpu_allocator("libsoftlab-no-such-libc.so") is False
    assert R._ALLOCATOR_TUNED is False  # a later call tries again


def test_allocator_is_tuned_once_per_process(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(R, "_ALLOCATOR_TUNED", False)
    monkeypatch.setattr(R.ctypes, "CDLL", lambda name: FakeLibc())
    assert R.tune_cpu_allocator() is True and R.tune_cpu_allocator() is True
    assert calls == [(R.M_MMAP_THRESHOLD, R.MMAP_THRESHOLD_BYTES), (R.M_TRIM_THRESHOLD, R.TRIM_THRESHOLD_BYTES)]


def test_refused_threshold_is_not_reported_as_tuned(monkeypatch):
    class RefusingLibc:
        def mallopt(self, param: int, value: int) -> int:
            return 0

    monkeypatch.setattr(R, "_ALLOCATOR_TUNED", False)
    monkeypatch.setattr(R.ctypes, "CDLL", lambda name: RefusingLibc())
    assert R.tune_cpu_allocator() is False


def test_resolve_device():
    assert R.resolve_device("cpu") == torch.device("cpu")
    assert R.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu' or 'cuda"):
        R.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            R.resolve_device("cuda:0")


def test_torch_threads_restores_the_previous_setting(monkeypatch):
    monkeypatch.delenv("SOFTLAB_TORCH_THREADS", raising=False)
    before = torch.get_num_threads()
    with R.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("SOFTLAB_TORCH_THREADS", "1")
    with R.torch_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "1.5", "２"])
def test_a_bad_thread_count_in_the_environment_is_an_error_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("SOFTLAB_TORCH_THREADS", bad)
    before = torch.get_num_threads()
    with (
        pytest.raises(ValueError, match=r"^\$SOFTLAB_TORCH_THREADS: expected a positive integer.*got"),
        R.torch_threads(),
    ):
        pass  # pragma: no cover
    assert torch.get_num_threads() == before  # nothing was changed


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("SOFTLAB_TORCH_THREADS", " 3 ")
    assert R.env_torch_threads(default=7) == 3
    monkeypatch.setenv("SOFTLAB_TORCH_THREADS", "")
    assert R.env_torch_threads(default=7) == 7
    monkeypatch.delenv("SOFTLAB_TORCH_THREADS")
    assert R.env_torch_threads(default=7) == 7


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "1.5"])
def test_cpu_workers_from_the_environment(monkeypatch, bad):
    monkeypatch.setenv("SOFTLAB_CPU_WORKERS", " 2 ")
    assert R.env_cpu_workers() == 2
    monkeypatch.delenv("SOFTLAB_CPU_WORKERS")
    assert R.env_cpu_workers() == 1
    monkeypatch.setenv("SOFTLAB_CPU_WORKERS", bad)
    with pytest.raises(ValueError, match=r"^\$SOFTLAB_CPU_WORKERS: expected a positive integer"):
        R.env_cpu_workers()
