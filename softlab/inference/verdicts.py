"""From an arm's predictions and the claims file to the verdict table: the decision rule, one evaluator
per test kind, Holm within each family, minimum detectable effects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softlab.inference.claims import Claims, Settings, TestSpec, load_claims
from softlab.inference.estimators import (
    DIRECTIONS,
    best_of,
    difference_mde,
    holm,
    paired_difference,
    pitman_morgan,
    sign_flip_interval,
    sign_flip_test,
    swap_permutation_variance_test,
    variance_ratio_mde,
)
from softlab.inference.predictions import ArmPredictions
from softlab.inference.registry import METRICS, item_groups, leave_group_out_values
from softlab.io import atomic_path

__all__ = ["EXTRA_COLUMNS", "VERDICTS", "VERDICT_COLUMNS", "decide_verdict", "verdict_table", "write_verdicts"]

VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "equivalent", "inconclusive", "descriptive")

VERDICT_COLUMNS: tuple[str, ...] = (
    "claim",
    "arm",
    "test",
    "primary",
    "metric",
    "comparator",
    "estimate",
    "ci_low",
    "ci_high",
    "relative",
    "relative_ci_low",
    "relative_ci_high",
    "p_value",
    "p_adjusted",
    "margin",
    "seeds",
    "mde",
    "verdict",
)
"""The required columns of the verdict table, in order (extra columns follow them)."""

EXTRA_COLUMNS: tuple[str, ...] = (
    "family",
    "family_size",
    "kind",
    "method",
    "stratum",
    "condition",
    "comparator_set",
    "direction",
    "margin_scale",
    "equivalence_ci_low",
    "equivalence_ci_high",
    "df",
    "se",
    "mean_condition",
    "mean_comparator",
    "seed_correlation",
    "mde_relative",
    "n_items",
    "item_groups",
    "reference",
    "design",
    "rationale",
)


def decide_verdict(
    *,
    direction: str,
    ci: tuple[float, float],
    equivalence_ci: tuple[float, float],
    equivalence_bounds: tuple[float, float],
    p_adjusted: float,
    seeds: int,
    min_seeds: int,
    alpha: float,
    null: float = 0.0,
    descriptive: bool = False,
) -> str:
    """The verdict of one test.

    ``descriptive`` arms → ``"descriptive"``; fewer than ``min_seeds`` seeds or a missing estimate
    → ``"inconclusive"``; ``"confirmed"`` / ``"refuted"`` when ``ci`` excludes ``null`` on the
    predicted / other side (``direction`` ``"lower"``: predicted side below ``null``) **and**
    ``p_adjusted < alpha``; ``"equivalent"`` when ``equivalence_ci`` lies strictly inside
    ``equivalence_bounds`` (TOST); else ``"inconclusive"``. Confirmed/refuted take precedence: an
    effect that is significant but smaller than the margin is reported as confirmed/refuted (the
    table's ``equivalence_ci_*`` columns show it is inside the margin).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    if descriptive:
        return "descriptive"
    lo, hi = ci
    if seeds < min_seeds or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    significant = math.isfinite(p_adjusted) and p_adjusted < alpha
    below, above = hi < null, lo > null
    if significant and (below or above):
        return "confirmed" if below == (direction == "lower") else "refuted"
    elo, ehi = equivalence_ci
    blo, bhi = equivalence_bounds
    if math.isfinite(elo) and math.isfinite(ehi) and blo < elo and ehi < bhi:
        return "equivalent"
    return "inconclusive"


class _ArmEvaluator:
    """Evaluates metrics of one arm, caching ``(S, G + 1)`` leave-group-out tables."""

    def __init__(self, arm: ArmPredictions, settings: Settings, with_groups: bool) -> None:
        self.arm = arm
        self.settings = settings
        self.with_groups = with_groups
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        self._groups: dict[str, np.ndarray | None] = {}
        self.official = np.asarray(arm.official).astype(np.int64)
        self.reference = np.asarray(arm.reference, dtype=np.float64)

    def items(self, stratum: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.arm.strata[stratum]))

    def groups(self, stratum: str) -> np.ndarray | None:
        if stratum not in self._groups:
            n = self.items(stratum).size
            g = min(self.settings.item_groups, n // 2)
            self._groups[stratum] = (
                item_groups(n, g, self.settings.item_group_seed) if self.with_groups and g >= 2 else None
            )
        return self._groups[stratum]

    def values(self, condition: str, metric: str, stratum: str, with_groups: bool = True) -> np.ndarray:
        key = (condition, metric, stratum if with_groups else stratum + "#nogroups")
        if key not in self._cache:
            spec = METRICS[metric]
            idx = self.items(stratum)
            full = idx.size == self.official.size
            probs = None
            if "probs" in spec.needs:
                p = self.arm.probs[condition]
                probs = p if full else np.asarray(p)[:, idx]
            arrays = {
                name: (np.asarray(a) if full else np.asarray(a)[:, idx])
                for name, a in self.arm.item_arrays.get(condition, {}).items()
                if name in spec.needs
            }
            groups = self.groups(stratum) if with_groups else None
            self._cache[key] = leave_group_out_values(
                spec, probs, self.official[idx], self.reference[idx], arrays, groups
            )
        return self._cache[key]


def _nan_row() -> dict[str, float]:
    keys = (
        "estimate",
        "ci_low",
        "ci_high",
        "relative",
        "relative_ci_low",
        "relative_ci_high",
        "p_value",
        "equivalence_ci_low",
        "equivalence_ci_high",
        "df",
        "se",
        "mean_condition",
        "mean_comparator",
        "seed_correlation",
    )
    return dict.fromkeys(keys, math.nan)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation across seeds (NaN when undefined)."""
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _evaluate_test(ev: _ArmEvaluator, test: TestSpec, settings: Settings, descriptive: bool) -> dict[str, Any] | None:
    arm = ev.arm
    spec = METRICS[test.metric]
    if test.stratum not in arm.strata or not arm.has(test.condition, spec.needs):
        return None
    present = [c for c in test.comparators if arm.has(c, spec.needs)]
    if not present:
        return None
    n_items = int(ev.items(test.stratum).size)
    row: dict[str, Any] = _nan_row()
    row.update(
        claim=test.claim,
        arm=arm.arm,
        test=test.name,
        primary=test.primary and not descriptive,
        metric=test.metric,
        stratum=test.stratum,
        condition=test.condition,
        comparator_set=", ".join(present),
        direction=test.direction,
        margin=test.margin,
        margin_scale=test.margin_scale,
        seeds=arm.n_seeds,
        n_items=n_items,
        kind=test.kind,
        reference=arm.reference_name,
        design=arm.design,
        rationale=test.rationale,
        item_groups=0,
        comparator=present[0],
    )
    conf, eq_conf = settings.confidence, settings.equivalence_confidence
    if test.kind == "variance_ratio":
        x = ev.values(test.condition, test.metric, test.stratum, with_groups=False)[:, 0]
        y = ev.values(present[0], test.metric, test.stratum, with_groups=False)[:, 0]
        pm = pitman_morgan(x, y, conf)
        pm_eq = pitman_morgan(x, y, eq_conf)
        row.update(
            estimate=pm.ratio,
            ci_low=pm.ci_low,
            ci_high=pm.ci_high,
            relative=pm.ratio - 1.0,
            relative_ci_low=pm.ci_low - 1.0,
            relative_ci_high=pm.ci_high - 1.0,
            p_value=pm.p_value,
            equivalence_ci_low=pm_eq.ci_low,
            equivalence_ci_high=pm_eq.ci_high,
            df=float(pm.df),
            mean_condition=float(np.mean(x)),
            mean_comparator=float(np.mean(y)),
            method="pitman-morgan",
            seed_correlation=pm.r,
        )
        if descriptive:
            row.update(
                p_value=swap_permutation_variance_test(x, y), method="swap-permutation (exact) + pitman-morgan interval"
            )
        return row

    if descriptive:
        cvals = ev.values(test.condition, test.metric, test.stratum, with_groups=False)[:, 0]
        comps = [ev.values(c, test.metric, test.stratum, with_groups=False)[:, 0] for c in present]
        means = [float(v.mean()) for v in comps]
        pick = int(np.argmin(means)) if test.direction == "lower" else int(np.argmax(means))
        d = cvals - comps[pick]
        lo, hi = sign_flip_interval(d, conf)
        base = abs(means[pick]) if means[pick] != 0 else math.nan
        row.update(
            seed_correlation=_correlation(cvals, comps[pick]),
            comparator=present[pick],
            estimate=float(d.mean()),
            ci_low=lo,
            ci_high=hi,
            p_value=sign_flip_test(d),
            relative=float(d.mean()) / base,
            relative_ci_low=lo / base,
            relative_ci_high=hi / base,
            mean_condition=float(cvals.mean()),
            mean_comparator=means[pick],
            method="sign-flip permutation over seeds (exact; items fixed)",
        )
        return row

    groups = ev.groups(test.stratum)
    row["item_groups"] = 0 if groups is None else int(groups.max()) + 1
    cvals = ev.values(test.condition, test.metric, test.stratum)
    results = [paired_difference(cvals, ev.values(c, test.metric, test.stratum)) for c in present]
    method = "t, seeds x item-groups crossed variance (jackknife), Satterthwaite df"
    if test.comparator_rule == "best":
        comp = best_of(results, test.direction)
        sel = results[comp.selected]
        ci, rci = comp.interval(conf), comp.interval(conf, relative=True)
        eq = comp.interval(eq_conf, relative=test.margin_scale == "relative")
        p = comp.p_value()
        row["comparator"] = present[comp.selected]
        method += f"; best of {len(present)} (intersection-union / Bonferroni)"
    else:
        sel = results[0]
        ci, rci = sel.interval(conf), sel.interval(conf, relative=True)
        eq = sel.interval(eq_conf, relative=test.margin_scale == "relative")
        p = sel.p_value()
    comp_full = ev.values(row["comparator"], test.metric, test.stratum)[:, 0]
    row.update(
        seed_correlation=_correlation(cvals[:, 0], comp_full),
        estimate=sel.estimate,
        ci_low=ci[0],
        ci_high=ci[1],
        relative=sel.relative,
        relative_ci_low=rci[0],
        relative_ci_high=rci[1],
        p_value=p,
        equivalence_ci_low=eq[0],
        equivalence_ci_high=eq[1],
        df=sel.df,
        se=sel.se,
        mean_condition=sel.mean_condition,
        mean_comparator=sel.mean_comparator,
        method=method,
    )
    return row


def _equivalence_bounds(kind: str, margin: float) -> tuple[float, float]:
    """Equivalence region on the scale of the equivalence interval: ``(1 − m, 1/(1 − m))`` for a
    variance ratio (symmetric on the log scale), ``(−m, m)`` for a difference (absolute margin) or a
    relative effect (relative margin)."""
    if kind == "variance_ratio":
        return 1.0 - margin, 1.0 / (1.0 - margin)
    return -margin, margin


def verdict_table(
    arms: Mapping[str, ArmPredictions],
    claims: Claims | None = None,
) -> pd.DataFrame:
    """Run every pre-registered test on every arm and return one row per test that could run.

    ``arms`` maps arm names to :class:`ArmPredictions`; ``claims`` defaults to :func:`load_claims`.
    A test whose stratum, condition, every comparator or a needed item array is absent from an arm
    is skipped (it does not run and is not counted in a family). Families: ``primary`` (primary
    tests of verdict arms), ``exploratory`` (other tests of verdict arms), ``descriptive``
    (descriptive arms); Holm within each. Columns: :data:`VERDICT_COLUMNS`, then
    :data:`EXTRA_COLUMNS`. For variance ratios, ``estimate``/``ci_*`` are the ratio and
    ``relative = ratio − 1``; ``mde`` is the detectable ratio. For differences ``mde`` is the
    detectable absolute difference (``mde_relative`` over the comparator's mean). Rows are sorted:
    primary family first, then claim, arm, test order of the file.
    """
    claims = load_claims() if claims is None else claims
    st = claims.settings
    rows: list[dict[str, Any]] = []
    for key, arm in arms.items():
        if key != arm.arm:
            raise ValueError(f"arms: key {key!r} differs from ArmPredictions.arm {arm.arm!r}")
        rule, tests = claims.tests_for(arm.arm)
        descriptive = rule.role == "descriptive"
        ev = _ArmEvaluator(arm, st, with_groups=not descriptive and st.item_groups >= 2)
        for order, test in enumerate(tests):
            row = _evaluate_test(ev, test, st, descriptive)
            if row is None:
                continue
            row["family"] = "descriptive" if descriptive else ("primary" if test.primary else "exploratory")
            row["_order"] = order
            rows.append(row)
    columns = list(VERDICT_COLUMNS) + list(EXTRA_COLUMNS)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for fam in ("primary", "exploratory", "descriptive"):
        members = [r for r in rows if r["family"] == fam]
        adjusted = holm(np.array([r["p_value"] for r in members], dtype=float))
        for r, p_adj in zip(members, adjusted):
            r["p_adjusted"] = float(p_adj)
            r["family_size"] = len(members)
    for r in rows:
        level = st.alpha / max(int(r["family_size"]), 1)
        if r["kind"] == "variance_ratio":
            rho = float(r["seed_correlation"])
            mde = (
                variance_ratio_mde(int(r["seeds"]), rho, level, st.power, r["direction"])
                if math.isfinite(rho)
                else math.nan
            )
            r["mde"], r["mde_relative"] = mde, mde - 1.0
            null = 1.0
        else:
            mde = difference_mde(float(r["se"]), float(r["df"]), level, st.power)
            r["mde"] = mde
            r["mde_relative"] = mde / abs(r["mean_comparator"]) if r["mean_comparator"] else math.nan
            null = 0.0
        r["verdict"] = decide_verdict(
            direction=r["direction"],
            ci=(r["ci_low"], r["ci_high"]),
            equivalence_ci=(r["equivalence_ci_low"], r["equivalence_ci_high"]),
            equivalence_bounds=_equivalence_bounds(r["kind"], r["margin"]),
            p_adjusted=r["p_adjusted"],
            seeds=int(r["seeds"]),
            min_seeds=st.min_seeds,
            alpha=st.alpha,
            null=null,
            descriptive=r["family"] == "descriptive",
        )
    fam_order = {"primary": 0, "exploratory": 1, "descriptive": 2}
    rows.sort(key=lambda r: (fam_order[r["family"]], r["claim"], r["arm"], r["_order"]))
    table = pd.DataFrame([{c: r.get(c, math.nan) for c in columns} for r in rows], columns=columns)
    table["primary"] = table["primary"].astype(bool)
    table["seeds"] = table["seeds"].astype(int)
    table["family_size"] = table["family_size"].astype(int)
    table["item_groups"] = table["item_groups"].astype(int)
    return table


def write_verdicts(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the verdict table to ``path`` (``results/<set>/verdicts.parquet``) atomically, after
    checking it has the :data:`VERDICT_COLUMNS` in order and ``p_adjusted ≥ p_value`` wherever both
    are defined."""
    missing = [c for c in VERDICT_COLUMNS if c not in table.columns]
    if missing or list(table.columns[: len(VERDICT_COLUMNS)]) != list(VERDICT_COLUMNS):
        raise ValueError(f"table: expected the columns {list(VERDICT_COLUMNS)} first; missing {missing}")
    p, pa = table["p_value"].to_numpy(float), table["p_adjusted"].to_numpy(float)
    both = np.isfinite(p) & np.isfinite(pa)
    if np.any(pa[both] < p[both] - 1e-12):
        raise ValueError("table: p_adjusted is below p_value in some rows")
    bad = set(table["verdict"]) - set(VERDICTS)
    if bad:
        raise ValueError(f"table: unknown verdicts {sorted(bad)}; expected some of {VERDICTS}")
    dest = Path(path)
    with atomic_path(dest) as tmp:
        table.to_parquet(tmp, index=False)
    return dest
