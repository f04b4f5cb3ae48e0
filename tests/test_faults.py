"""Regression tests for the defects of issue 27 (hostile probes), one per defect, named after it,
and the fast profile of the fault-injection script (``benchmarks/faults.py --fast``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softlab.io import DamagedCacheWarning, atomic_save_npz, intact_npz, load_cached_npz


def _npz(path: Path) -> dict[str, np.ndarray]:
    arrays = {"logits": np.arange(40, dtype=np.float32).reshape(4, 10), "idx": np.arange(7)}
    atomic_save_npz(path, **arrays)
    return arrays


# ------------------------------------------------ damaged teacher / generator / synthetic caches


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "directory", "missing-array"])
def test_damaged_cached_npz_is_quarantined_and_recomputed_not_a_traceback(tmp_path, damage):
    path = tmp_path / "cache" / "logits_test.npz"
    _npz(path)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        i = data.index(b"logits.npy") + 200  # inside the compressed array data
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    required = ("logits", "weights") if damage == "missing-array" else ("logits",)
    with pytest.warns(DamagedCacheWarning, match=r"logits_test.npz is damaged .*moved to .*\.quarantine"):
        assert load_cached_npz(path, required=required) is None
    assert not path.exists()  # moved aside, so the next call recomputes and rewrites it
    assert [p.name.split(".npz")[0] for p in (path.parent / ".quarantine").iterdir()] == ["logits_test"]
    _npz(path)  # recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cached_npz(path, required=("logits",)) is not None


def test_missing_cached_npz_is_none_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cached_npz(tmp_path / "none.npz") is None
        assert not intact_npz(tmp_path / "none.npz")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_a_flipped_byte_anywhere_in_a_cached_npz_never_gives_a_wrong_number(tmp_path_factory, position, mask):
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    original = _npz(path)
    data = path.read_bytes()
    i = int(position * len(data))
    path.write_bytes(data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedCacheWarning)
        got = load_cached_npz(path, required=tuple(original))
    if got is not None:  # a flip in zip metadata (a timestamp, ...) may leave the arrays intact
        for k, v in original.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype


def test_generator_and_synthetic_and_teacher_caches_load_through_the_quarantining_loader():
    import inspect

    import softlab.generator as generator
    import softlab.teachers as teachers

    assert "load_cached_npz(weights)" in inspect.getsource(generator._load_generator)
    assert "load_cached_npz(path, required=_ARRAYS)" in inspect.getsource(generator.generate_synthetic_mnist)
    assert "intact_npz(" in inspect.getsource(teachers._load_teacher)
    assert "intact_npz(" in inspect.getsource(teachers.teacher_logits)
