"""One evaluator per test kind: what a test estimates, its interval, p-value, margin region and verdict.

A kind turns one pre-registered test on one arm into the numbers of a verdict-table row
(:meth:`TestKind.evaluate`), says where its equivalence region lies (:meth:`TestKind.equivalence_bounds`),
reads a row's effect on the scale of its margin (:meth:`TestKind.effect_on_margin_scale`, used by
the figures and pages of :mod:`softlab.present`), decides ``beyond_margin`` and the verdict. Kinds:

* ``difference`` — paired difference condition − comparator (or best of several comparators);
* ``variance_ratio`` — Pitman–Morgan ratio of the across-seed variances;
* ``bound`` — one condition's own value against a pre-registered bound ``|θ| ≤ m`` (the claim
  predicts it lies within; e.g. "synthetic-label models do not mirror human uncertainty").

**The five outcomes** (:func:`decide_verdict`, Lakens, Scheel & Isager 2018), in this order:
``confirmed`` — significant after Holm in the predicted direction and the equivalence interval
not inside ±margin; ``refuted`` — significant the other way, not inside; ``negligible`` —
significant, but the equivalence interval lies inside ±margin (a real difference smaller than the
smallest effect of interest); ``equivalent`` — not significant and inside; ``inconclusive`` —
otherwise. A ``bound`` test (:func:`decide_bound_verdict`) is ``confirmed`` when its TOST against
``±m`` is significant after Holm (the value lies within the bound), ``refuted`` when its interval
at the family-wise level (Bonferroni, ``1 − α/family``) lies wholly beyond the bound, else
``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from softlab.inference.claims import Settings, TestSpec
from softlab.inference.estimators import (
    DIRECTIONS,
    best_of,
    crossed_variance,
    difference_mde,
    paired_difference,
    pitman_morgan,
    pseudo_values,
    sign_flip_interval,
    sign_flip_test,
    swap_permutation_variance_test,
    variance_ratio_mde,
)
from softlab.inference.values import ArmValues

__all__ = [
    "KIND_EVALUATORS",
    "BoundKind",
    "DifferenceKind",
    "TestKind",
    "VarianceRatioKind",
    "decide_bound_verdict",
    "decide_verdict",
    "kind_of",
]

NUMBER_FIELDS: tuple[str, ...] = (
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
    """The verdict of one directional test (``difference``, ``variance_ratio``).

    ``descriptive`` arms → ``"descriptive"``; fewer than ``min_seeds`` seeds or a missing estimate
    → ``"inconclusive"``. *Significant*: ``ci`` excludes ``null`` and ``p_adjusted < alpha``;
    *inside*: ``equivalence_ci`` lies strictly inside ``equivalence_bounds`` (TOST). Then, in
    order: significant and inside → ``"negligible"``; significant on the predicted / other side
    (``direction`` ``"lower"``: predicted side below ``null``) → ``"confirmed"`` / ``"refuted"``;
    inside → ``"equivalent"``; else ``"inconclusive"``.
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
    elo, ehi = equivalence_ci
    blo, bhi = equivalence_bounds
    inside = math.isfinite(elo) and math.isfinite(ehi) and blo < elo and ehi < bhi
    if significant and (below or above):
        if inside:
            return "negligible"
        return "confirmed" if below == (direction == "lower") else "refuted"
    return "equivalent" if inside else "inconclusive"


def decide_bound_verdict(
    *,
    p_adjusted: float,
    family_ci: tuple[float, float],
    bound: float,
    seeds: int,
    min_seeds: int,
    alpha: float,
    descriptive: bool = False,
) -> str:
    """The verdict of a ``bound`` test (predicted: ``|θ| ≤ bound``): ``"confirmed"`` when the
    Holm-adjusted TOST p-value is below ``alpha``; ``"refuted"`` when ``family_ci`` (the interval at
    ``1 − alpha/family size``) lies wholly outside ``[−bound, bound]``; else ``"inconclusive"``."""
    if descriptive:
        return "descriptive"
    lo, hi = family_ci
    if seeds < min_seeds or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return "confirmed"
    if lo > bound or hi < -bound:
        return "refuted"
    return "inconclusive"


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation across seeds (NaN when undefined)."""
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _t(p: float, df: float) -> float:
    return float(sps.t.ppf(p, df)) if df > 0 and math.isfinite(df) else math.nan


class TestKind:
    """What every kind provides; see the module docstring."""

    __test__ = False  # not a pytest test class
    name: ClassVar[str] = ""
    null: ClassVar[float] = 0.0

    def available(self, ev: ArmValues, test: TestSpec) -> list[str] | None:
        """The comparators present in the arm, or None when the test cannot run there."""
        if not ev.has(test.condition, test.metric, test.stratum, test.split):
            return None
        present = [c for c in test.comparators if ev.has(c, test.metric, test.stratum, test.split)]
        return present or None

    def evaluate(
        self, ev: ArmValues, test: TestSpec, present: list[str], settings: Settings, descriptive: bool
    ) -> dict[str, Any]:
        raise NotImplementedError

    def equivalence_bounds(self, margin: float) -> tuple[float, float]:
        """The equivalence region on the scale of the equivalence interval: ``(−m, m)``."""
        return -margin, margin

    def effect_on_margin_scale(self, row: Any) -> tuple[float, float, float]:
        """(estimate, low, high) of a table row on the scale its margin is stated in."""
        if str(getattr(row, "margin_scale", "absolute")) == "relative":
            return float(row.relative), float(row.relative_ci_low), float(row.relative_ci_high)
        return float(row.estimate), float(row.ci_low), float(row.ci_high)

    def beyond_margin(self, row: Any) -> bool:
        """Whether the whole 95% interval lies beyond the margin on the estimate's side (the effect is
        at least the smallest effect of interest)."""
        est, lo, hi = self.effect_on_margin_scale(row)
        lo_b, hi_b = self.equivalence_bounds(float(row.margin))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return False
        return bool(lo > hi_b) if est >= self.null else bool(hi < lo_b)

    def mde(self, row: dict[str, Any], level: float, power: float) -> tuple[float, float]:
        """(minimum detectable effect, the same relative to the comparator) at two-sided ``level``."""
        mde = difference_mde(float(row["se"]), float(row["df"]), level, power)
        rel = mde / abs(row["mean_comparator"]) if row["mean_comparator"] else math.nan
        return mde, rel

    def verdict(self, row: dict[str, Any], settings: Settings) -> str:
        return decide_verdict(
            direction=row["direction"],
            ci=(row["ci_low"], row["ci_high"]),
            equivalence_ci=(row["equivalence_ci_low"], row["equivalence_ci_high"]),
            equivalence_bounds=self.equivalence_bounds(row["margin"]),
            p_adjusted=row["p_adjusted"],
            seeds=int(row["seeds"]),
            min_seeds=settings.min_seeds,
            alpha=settings.alpha,
            null=self.null,
            descriptive=row["family"] == "descriptive",
        )


@dataclass(frozen=True)
class DifferenceKind(TestKind):
    """Paired difference (condition − comparator), seeds × item-groups crossed variance."""

    name: ClassVar[str] = "difference"

    def evaluate(
        self, ev: ArmValues, test: TestSpec, present: list[str], settings: Settings, descriptive: bool
    ) -> dict[str, Any]:
        conf, eq_conf = settings.confidence, settings.equivalence_confidence
        row: dict[str, Any] = {"comparator": present[0]}
        if descriptive:
            cvals = ev.values(test.condition, test.metric, test.stratum, with_groups=False, split=test.split)[:, 0]
            comps = [
                ev.values(c, test.metric, test.stratum, with_groups=False, split=test.split)[:, 0] for c in present
            ]
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

        groups = ev.groups(test.stratum, test.split)
        row["item_groups"] = 0 if groups is None else int(groups.max()) + 1
        cvals = ev.values(test.condition, test.metric, test.stratum, split=test.split)
        results = [paired_difference(cvals, ev.values(c, test.metric, test.stratum, split=test.split)) for c in present]
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
        comp_full = ev.values(row["comparator"], test.metric, test.stratum, split=test.split)[:, 0]
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


@dataclass(frozen=True)
class VarianceRatioKind(TestKind):
    """Ratio of across-seed variances (condition / comparator), Pitman–Morgan."""

    name: ClassVar[str] = "variance_ratio"
    null: ClassVar[float] = 1.0

    def evaluate(
        self, ev: ArmValues, test: TestSpec, present: list[str], settings: Settings, descriptive: bool
    ) -> dict[str, Any]:
        x = ev.values(test.condition, test.metric, test.stratum, with_groups=False, split=test.split)[:, 0]
        y = ev.values(present[0], test.metric, test.stratum, with_groups=False, split=test.split)[:, 0]
        pm = pitman_morgan(x, y, settings.confidence)
        pm_eq = pitman_morgan(x, y, settings.equivalence_confidence)
        row: dict[str, Any] = dict(
            comparator=present[0],
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

    def equivalence_bounds(self, margin: float) -> tuple[float, float]:
        """``(1 − m, 1/(1 − m))``: symmetric on the log scale."""
        return 1.0 - margin, 1.0 / (1.0 - margin)

    def effect_on_margin_scale(self, row: Any) -> tuple[float, float, float]:
        return float(row.estimate), float(row.ci_low), float(row.ci_high)

    def mde(self, row: dict[str, Any], level: float, power: float) -> tuple[float, float]:
        rho = float(row["seed_correlation"])
        if not math.isfinite(rho):
            return math.nan, math.nan
        mde = variance_ratio_mde(int(row["seeds"]), rho, level, power, row["direction"])
        return mde, mde - 1.0


@dataclass(frozen=True)
class BoundKind(TestKind):
    """One condition's own value against a pre-registered bound ``|θ| ≤ m`` (direction ``within``)."""

    name: ClassVar[str] = "bound"

    def available(self, ev: ArmValues, test: TestSpec) -> list[str] | None:
        return [] if ev.has(test.condition, test.metric, test.stratum, test.split) else None

    def evaluate(
        self, ev: ArmValues, test: TestSpec, present: list[str], settings: Settings, descriptive: bool
    ) -> dict[str, Any]:
        m = test.margin
        groups = None if descriptive else ev.groups(test.stratum, test.split)
        table = ev.values(test.condition, test.metric, test.stratum, with_groups=groups is not None, split=test.split)
        est = float(table[:, 0].mean())
        var, df = crossed_variance(pseudo_values(table))
        se = math.sqrt(var) if var >= 0 else math.nan
        q = _t(0.5 + settings.confidence / 2.0, df)
        qe = _t(0.5 + settings.equivalence_confidence / 2.0, df)
        if se > 0:
            p_low = float(sps.t.sf((est + m) / se, df))  # H0: θ <= -m
            p_high = float(sps.t.cdf((est - m) / se, df))  # H0: θ >= m
            p = max(p_low, p_high)
        else:
            p = math.nan
        return dict(
            comparator=f"|value| <= {m:g}",
            item_groups=0 if groups is None else int(groups.max()) + 1,
            estimate=est,
            ci_low=est - q * se,
            ci_high=est + q * se,
            p_value=p,
            equivalence_ci_low=est - qe * se,
            equivalence_ci_high=est + qe * se,
            df=df,
            se=se,
            mean_condition=est,
            method="TOST against the bound, t with seeds x item-groups crossed variance (jackknife)",
        )

    def effect_on_margin_scale(self, row: Any) -> tuple[float, float, float]:
        return float(row.estimate), float(row.ci_low), float(row.ci_high)

    def mde(self, row: dict[str, Any], level: float, power: float) -> tuple[float, float]:
        return difference_mde(float(row["se"]), float(row["df"]), level, power), math.nan

    def verdict(self, row: dict[str, Any], settings: Settings) -> str:
        family = max(int(row["family_size"]), 1)
        q = _t(1.0 - settings.alpha / (2.0 * family), float(row["df"]))
        half = q * float(row["se"])
        est = float(row["estimate"])
        return decide_bound_verdict(
            p_adjusted=row["p_adjusted"],
            family_ci=(est - half, est + half),
            bound=float(row["margin"]),
            seeds=int(row["seeds"]),
            min_seeds=settings.min_seeds,
            alpha=settings.alpha,
            descriptive=row["family"] == "descriptive",
        )


KIND_EVALUATORS: dict[str, TestKind] = {k.name: k for k in (DifferenceKind(), VarianceRatioKind(), BoundKind())}
"""Test kind name -> its evaluator (a new kind is one class here and its test)."""


def kind_of(row: Any) -> TestKind:
    """The evaluator of a verdict-table row (or a test) by its ``kind`` (default ``difference``)."""
    name = row.get("kind") if isinstance(row, dict) else getattr(row, "kind", None)
    return KIND_EVALUATORS.get(
        str(name) if isinstance(name, str) and name else "difference", KIND_EVALUATORS["difference"]
    )
