"""The verdict machinery checked on real runs, not only on simulation (issue 21, item 5).

Reads a many-seed pool of real runs (by default the ``stability`` set's Fashion-MNIST-H runs of
``human/human`` and ``human/synthetic``, each seed a full re-run of the pipeline: own split, own
teacher, own initialisation) and prints, one per line:

* ``placebo_false_verdicts=<x>``: A/A tests. A "book" draws 20 distinct seeds of the pool; the
  primary tests' condition (``human/human``) on its first 10 seeds is compared with an independently
  seeded copy of itself (the same condition on the other 10) by the claim-1 test (difference of the
  debiased soft-reference calibration error on hard items, relative scale, margin 10%) and the
  claim-2 test (Pitman–Morgan variance ratio of held-out accuracy, margin 15%), Holm over the two,
  verdicts by ``softlab.inference.decide_verdict``. ``x`` is the share of books with any
  ``confirmed``/``refuted`` (target ≤ 0.05), with its Monte-Carlo error ``sqrt(x(1 − x)/B)``
  (books overlap in seeds, so that error is a lower bound).
* ``real_coverage_claim1=<x>``: the claim-1 comparison available in the pool (``human/human``
  against ``human/synthetic``, debiased soft-reference calibration error on hard items, absolute
  difference with the item-group jackknife). Truth = the estimate on the whole pool; ``x`` = the
  share of disjoint 10-seed blocks whose 95% interval covers it (target ≥ 0.90); the truth's own
  standard error (from the whole pool) is printed beside it.
* ``real_coverage_claim2=<x>``: the same for the variance ratio of held-out accuracy (Pitman–Morgan
  95% interval per block); the truth's error is a seed bootstrap of the pool's ratio.
* ``run_seconds=<x>``: the script's own time (the training of the pool is not included when the
  runs are cached).

Usage::

    python benchmarks/real_checks.py                    # the stability set's pool (trains what is missing)
    python benchmarks/real_checks.py --params smoke --seeds 40   # a small own pool
    python benchmarks/real_checks.py --books 200

The core (:func:`placebo_false_verdicts`, :func:`real_coverage`) works on per-seed tables, so the
tests run it in seconds on simulated pools (``tests/test_real_checks.py``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softlab.inference import (
    METRICS,
    decide_verdict,
    holm,
    item_groups,
    leave_group_out_values,
    paired_difference,
    pitman_morgan,
)

BOOK_SEEDS = 10
CONDITION = "human/human"
COMPARATOR = "human/synthetic"
CLAIM1 = ("debiased_ce_soft", "hard", 0.10)  # metric, stratum, relative margin (params/claims.yml)
CLAIM2 = ("accuracy", "all", 0.15)  # metric, stratum, relative margin of the variance ratio
ALPHA, CONFIDENCE, EQUIVALENCE_CONFIDENCE, MIN_SEEDS = 0.05, 0.95, 0.90, 10


@dataclass(frozen=True)
class Pool:
    """Per-seed values of a many-seed pool.

    ``claim1``: condition → ``(S, G + 1)`` leave-group-out table of the claim-1 metric
    (``softlab.inference.leave_group_out_values``); ``claim2``: condition → ``(S,)`` per-seed
    claim-2 metric. Rows are seeds, in the same order for every condition."""

    claim1: dict[str, np.ndarray]
    claim2: dict[str, np.ndarray]

    @property
    def n_seeds(self) -> int:
        return int(next(iter(self.claim2.values())).shape[0])


def pool_from_predictions(preds: Any, item_group_count: int = 20, item_group_seed: int = 11) -> Pool:
    """A :class:`Pool` from ``softlab.inference.ArmPredictions`` holding both conditions."""
    out: dict[str, dict[str, np.ndarray]] = {"claim1": {}, "claim2": {}}
    for key, (metric, stratum, _) in (("claim1", CLAIM1), ("claim2", CLAIM2)):
        mask = np.asarray(preds.strata[stratum], dtype=bool)
        groups = item_groups(int(mask.sum()), item_group_count, item_group_seed) if key == "claim1" else None
        for cond in (CONDITION, COMPARATOR):
            arrays = {k: np.asarray(v)[:, mask] for k, v in preds.item_arrays.get(cond, {}).items()}
            values = leave_group_out_values(
                METRICS[metric],
                np.asarray(preds.probs[cond])[:, mask],
                preds.official[mask],
                preds.reference[mask],
                arrays,
                groups,
            )
            out[key][cond] = values if key == "claim1" else values[:, 0]
    return Pool(out["claim1"], out["claim2"])


def _aa_verdicts(pool: Pool, a: np.ndarray, b: np.ndarray) -> list[str]:
    """Verdicts of the two A/A tests of one book: seeds ``a`` (the condition) against seeds ``b``
    (its independently seeded copy)."""
    c1 = pool.claim1[CONDITION]
    diff = paired_difference(c1[a], c1[b])
    m1 = CLAIM1[2]
    x, y = pool.claim2[CONDITION][a], pool.claim2[CONDITION][b]
    pm, pm_eq = pitman_morgan(x, y, CONFIDENCE), pitman_morgan(x, y, EQUIVALENCE_CONFIDENCE)
    m2 = CLAIM2[2]
    p_adj = holm([diff.p_value(), pm.p_value])
    return [
        decide_verdict(
            direction="lower",
            ci=diff.interval(CONFIDENCE, relative=True),
            equivalence_ci=diff.interval(EQUIVALENCE_CONFIDENCE, relative=True),
            equivalence_bounds=(-m1, m1),
            p_adjusted=float(p_adj[0]),
            seeds=len(a),
            min_seeds=MIN_SEEDS,
            alpha=ALPHA,
        ),
        decide_verdict(
            direction="lower",
            ci=(pm.ci_low, pm.ci_high),
            equivalence_ci=(pm_eq.ci_low, pm_eq.ci_high),
            equivalence_bounds=(1.0 - m2, 1.0 / (1.0 - m2)),
            p_adjusted=float(p_adj[1]),
            seeds=len(a),
            min_seeds=MIN_SEEDS,
            alpha=ALPHA,
            null=1.0,
        ),
    ]


def placebo_false_verdicts(pool: Pool, books: int = 200, seed: int = 0) -> tuple[float, float]:
    """(share of A/A books with any confirmed/refuted, its Monte-Carlo error)."""
    if pool.n_seeds < 2 * BOOK_SEEDS:
        raise ValueError(f"pool: A/A books need {2 * BOOK_SEEDS} seeds, the pool has {pool.n_seeds}")
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(books):
        pick = rng.choice(pool.n_seeds, size=2 * BOOK_SEEDS, replace=False)
        verdicts = _aa_verdicts(pool, pick[:BOOK_SEEDS], pick[BOOK_SEEDS:])
        false += any(v in ("confirmed", "refuted") for v in verdicts)
    rate = false / books
    return rate, math.sqrt(rate * (1.0 - rate) / books)


@dataclass(frozen=True)
class Coverage:
    coverage: float
    blocks: int
    truth: float
    truth_se: float


def real_coverage(pool: Pool, claim: str, seed: int = 0, n_boot: int = 500) -> Coverage:
    """Share of disjoint :data:`BOOK_SEEDS`-seed blocks whose 95% interval covers the whole pool's
    estimate (claim ``"1"``: paired difference; ``"2"``: Pitman–Morgan variance ratio)."""
    blocks = pool.n_seeds // BOOK_SEEDS
    if blocks < 2:
        raise ValueError(f"pool: coverage needs at least {2 * BOOK_SEEDS} seeds, the pool has {pool.n_seeds}")
    covered = 0
    if claim == "1":
        c, b = pool.claim1[CONDITION], pool.claim1[COMPARATOR]
        whole = paired_difference(c, b)
        truth, truth_se = whole.estimate, whole.se
        for k in range(blocks):
            s = slice(k * BOOK_SEEDS, (k + 1) * BOOK_SEEDS)
            lo, hi = paired_difference(c[s], b[s]).interval(CONFIDENCE)
            covered += lo <= truth <= hi
    elif claim == "2":
        x, y = pool.claim2[CONDITION], pool.claim2[COMPARATOR]
        truth = float(np.var(x, ddof=1) / np.var(y, ddof=1))
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(n_boot):
            i = rng.integers(0, len(x), len(x))
            boot.append(np.var(x[i], ddof=1) / np.var(y[i], ddof=1))
        truth_se = float(np.std(boot, ddof=1))
        for k in range(blocks):
            s = slice(k * BOOK_SEEDS, (k + 1) * BOOK_SEEDS)
            pm = pitman_morgan(x[s], y[s], CONFIDENCE)
            covered += pm.ci_low <= truth <= pm.ci_high
    else:
        raise ValueError(f"claim: expected '1' or '2', got {claim!r}")
    return Coverage(covered / blocks, blocks, float(truth), float(truth_se))


def pool_from_runs(params_name: str, seeds: int | None, progress: bool, chunk: int = 100) -> Pool:
    """Train (or load from the cache) the set's Fashion-MNIST-H runs of both conditions, read
    ``chunk`` seeds at a time (``softlab.report.chunked_predictions``: all 1,100 seeds of the
    stability set at once do not fit in 24 GB); the per-seed tables are concatenated in seed order."""
    from softlab.experiment import configs_from_params
    from softlab.params import load_params
    from softlab.report import chunked_predictions

    p = load_params(params_name)
    p["conditions"] = [CONDITION, COMPARATOR]
    p["arms"] = ["fashion-mnist"]
    p["record_dynamics"] = False  # the pool needs held-out predictions only (the stability set records none)
    if seeds is not None:
        p["seeds"] = seeds
    arms, train, seed_list = configs_from_params(p)
    parts = [
        pool_from_predictions(preds)
        for preds in chunked_predictions(arms["fashion-mnist"], train, seed_list, chunk, progress)
    ]
    return Pool(
        {c: np.concatenate([part.claim1[c] for part in parts]) for c in parts[0].claim1},
        {c: np.concatenate([part.claim2[c] for part in parts]) for c in parts[0].claim2},
    )


def report(pool: Pool, books: int, t0: float) -> dict[str, float]:
    rate, mc = placebo_false_verdicts(pool, books)
    c1, c2 = real_coverage(pool, "1"), real_coverage(pool, "2")
    out = {
        "placebo_false_verdicts": rate,
        "placebo_mc_error": mc,
        "placebo_books": books,
        "real_coverage_claim1": c1.coverage,
        "claim1_blocks": c1.blocks,
        "claim1_truth": c1.truth,
        "claim1_truth_se": c1.truth_se,
        "real_coverage_claim2": c2.coverage,
        "claim2_blocks": c2.blocks,
        "claim2_truth": c2.truth,
        "claim2_truth_se": c2.truth_se,
        "pool_seeds": pool.n_seeds,
        "run_seconds": time.perf_counter() - t0,
    }
    print(f"placebo_false_verdicts={rate:.3f} (Monte-Carlo error {mc:.3f}, {books} books of 2x{BOOK_SEEDS} seeds)")
    print(
        f"real_coverage_claim1={c1.coverage:.3f} ({c1.blocks} disjoint blocks; truth {c1.truth:.5g} "
        f"± {c1.truth_se:.2g} from {pool.n_seeds} seeds)"
    )
    print(
        f"real_coverage_claim2={c2.coverage:.3f} ({c2.blocks} disjoint blocks; truth ratio {c2.truth:.4g} "
        f"± {c2.truth_se:.2g}, seed bootstrap)"
    )
    print(f"run_seconds={out['run_seconds']:.1f}")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="stability", help="parameter set whose runs form the pool")
    ap.add_argument("--seeds", type=int, default=None, help="seeds of the pool (default: the set's)")
    ap.add_argument("--books", type=int, default=200, help="A/A books (at least 20)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    if args.books < 20:
        ap.error("--books: expected at least 20 resampled books")
    t0 = time.perf_counter()
    pool = pool_from_runs(args.params, args.seeds, args.progress)
    return report(pool, args.books, t0)


if __name__ == "__main__":
    main(sys.argv[1:])
