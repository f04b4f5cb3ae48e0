"""benchmarks/real_checks.py: A/A placebo rate and real-run coverage, on simulated pools (seconds)
and on a small real pool (slow)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rc():
    spec = importlib.util.spec_from_file_location("real_checks", ROOT / "benchmarks" / "real_checks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _normal_pool(rc, n_seeds: int, seed: int, effect: float = 0.0, sd_ratio: float = 1.0, rho: float = 0.5):
    """Exchangeable seeds: claim-1 values (seed variance only, G = 0) and claim-2 accuracies
    correlated ``rho`` between the conditions, the condition's SD ``sd_ratio`` times the other's."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n_seeds)
    c1 = {rc.CONDITION: (0.01 + effect + 0.001 * z[:, :1]), rc.COMPARATOR: (0.01 + 0.001 * z[:, 1:])}
    z2 = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n_seeds)
    c2 = {rc.CONDITION: 0.8 + 0.004 * sd_ratio * z2[:, 0], rc.COMPARATOR: 0.8 + 0.004 * z2[:, 1]}
    return rc.Pool(c1, c2)


def test_placebo_rate_on_an_exchangeable_pool_is_near_its_level(rc):
    pool = _normal_pool(rc, 400, seed=1)
    rate, mc = rc.placebo_false_verdicts(pool, books=400, seed=2)
    assert mc == pytest.approx(math.sqrt(rate * (1 - rate) / 400))
    assert rate <= 0.10  # two A/A tests, Holm at 5%: about 5% or less


def test_placebo_rate_rises_when_the_tests_are_too_lax(rc, monkeypatch):
    """The same exchangeable pool judged at a 50% level with 50% intervals: far more A/A books get a
    confirmed/refuted verdict, so the check measures what it says."""
    pool = _normal_pool(rc, 400, seed=1)
    strict, _ = rc.placebo_false_verdicts(pool, books=200, seed=3)
    monkeypatch.setattr(rc, "ALPHA", 0.5)
    monkeypatch.setattr(rc, "CONFIDENCE", 0.5)
    lax, _ = rc.placebo_false_verdicts(pool, books=200, seed=3)
    assert lax > max(0.3, 3 * strict)


def test_real_coverage_is_near_nominal_and_falls_with_too_narrow_intervals(rc, monkeypatch):
    pool = _normal_pool(rc, 1000, seed=4, effect=-0.0005, sd_ratio=0.8)
    c1, c2 = rc.real_coverage(pool, "1"), rc.real_coverage(pool, "2", n_boot=200)
    assert c1.blocks == c2.blocks == 100
    assert c1.truth == pytest.approx(np.mean(pool.claim1[rc.CONDITION] - pool.claim1[rc.COMPARATOR]))
    x, y = pool.claim2[rc.CONDITION], pool.claim2[rc.COMPARATOR]
    assert c2.truth == pytest.approx(np.var(x, ddof=1) / np.var(y, ddof=1))
    assert 0.88 <= c1.coverage <= 1.0 and 0.88 <= c2.coverage <= 1.0
    monkeypatch.setattr(rc, "CONFIDENCE", 0.5)
    assert rc.real_coverage(pool, "1").coverage < 0.7 and rc.real_coverage(pool, "2", n_boot=50).coverage < 0.7


def test_too_small_pools_are_refused_with_the_count(rc):
    pool = _normal_pool(rc, 15, seed=0)
    with pytest.raises(ValueError, match="need 20 seeds, the pool has 15"):
        rc.placebo_false_verdicts(pool)
    with pytest.raises(ValueError, match="at least 20 seeds"):
        rc.real_coverage(pool, "1")


@pytest.mark.slow
def test_real_checks_on_a_small_real_pool(rc, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    out = rc.main(["--params", "smoke", "--seeds", "20", "--books", "20"])
    printed = capsys.readouterr().out
    for name in ("placebo_false_verdicts=", "real_coverage_claim1=", "real_coverage_claim2=", "run_seconds="):
        assert name in printed
    assert out["pool_seeds"] == 20 and 0 <= out["placebo_false_verdicts"] <= 1
    assert out["claim1_blocks"] == 2
