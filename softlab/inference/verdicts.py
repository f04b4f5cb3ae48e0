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

from softlab.inference.claims import Claims, TestSpec, load_claims
from softlab.inference.estimators import holm
from softlab.inference.kinds import KIND_EVALUATORS, NUMBER_FIELDS, decide_bound_verdict, decide_verdict, kind_of
from softlab.inference.predictions import ArmPredictions
from softlab.inference.values import ArmValues
from softlab.io import atomic_path

__all__ = [
    "EXTRA_COLUMNS",
    "FAMILIES",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "decide_bound_verdict",
    "decide_verdict",
    "kind_of",
    "verdict_table",
    "write_verdicts",
]

VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "negligible", "equivalent", "inconclusive", "descriptive")
"""Every verdict, in the order they are decided (:func:`softlab.inference.kinds.decide_verdict`)."""

FAMILIES: tuple[str, ...] = ("primary", "exploratory", "descriptive")
"""Holm families of the latest version; each earlier version ``v`` adds a family ``registered-v<v>``
holding its primary tests as registered (rows sorted after ``primary``)."""

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
    "beyond_margin",
    "registered_version",
    "split",
)


def _base_row(arm: ArmPredictions, test: TestSpec, present: list[str], n_items: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(NUMBER_FIELDS, math.nan)
    row.update(
        claim=test.claim,
        arm=arm.arm,
        test=test.name,
        metric=test.metric,
        stratum=test.stratum,
        split=test.split,
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
    )
    return row


def _families(test: TestSpec, latest: int, descriptive: bool) -> list[tuple[str, int]]:
    """(family, registered_version) of every row a test gives: its verdict under the latest version,
    and, for a primary test of an earlier version, its verdict as registered in that version."""
    if descriptive:
        return [("descriptive", latest)]
    earlier = [(f"registered-v{v}", v) for v in test.primary_versions if v < latest]
    return [("primary" if test.primary else "exploratory", latest), *earlier]


def _family_order(family: str) -> tuple[int, str]:
    if family == "primary":
        return 0, ""
    if family.startswith("registered-v"):
        return 1, family
    return (2, "") if family == "exploratory" else (3, "")


def verdict_table(
    arms: Mapping[str, ArmPredictions],
    claims: Claims | None = None,
) -> pd.DataFrame:
    """Run every pre-registered test on every arm and return one row per test (and version) that could run.

    ``arms`` maps arm names to :class:`ArmPredictions`; ``claims`` defaults to :func:`load_claims`.
    A test whose stratum, condition, every comparator or a needed item array is absent from an arm
    is skipped (it does not run and is not counted in a family). Families (Holm within each):
    ``primary`` (every primary test of the latest version, on verdict arms, co-primaries
    included: select the family with ``family == "primary"``), ``registered-v<v>`` (the primary
    tests of an earlier version ``v`` as registered, beside
    the amended ones: a test primary in both appears in both, each with its own family's Holm
    adjustment), ``exploratory`` (the other tests of verdict arms), ``descriptive`` (descriptive
    arms). ``registered_version`` says which version's family a row belongs to. Columns:
    :data:`VERDICT_COLUMNS`, then :data:`EXTRA_COLUMNS`. For variance ratios, ``estimate``/``ci_*``
    are the ratio and ``relative = ratio − 1``; ``mde`` is the detectable ratio. For differences
    ``mde`` is the detectable absolute difference (``mde_relative`` over the comparator's mean).
    ``beyond_margin``: the whole 95% interval lies beyond the margin on the estimate's side.
    ``primary`` is True on one row per claim and verdict arm: the claim's *headline* test, its
    first primary test that ran in the file's order (for claim 1 the registered one); the pages
    key one row per claim and arm on it, and co-primaries are ``family == "primary"`` rows with
    ``primary`` False. Rows
    are sorted: primary family first, then earlier versions' families, exploratory, descriptive;
    within a family by claim, arm and the file's test order.
    """
    claims = load_claims() if claims is None else claims
    st = claims.settings
    rows: list[dict[str, Any]] = []
    for key, arm in arms.items():
        if key != arm.arm:
            raise ValueError(f"arms: key {key!r} differs from ArmPredictions.arm {arm.arm!r}")
        rule, tests = claims.tests_for(arm.arm)
        descriptive = rule.role == "descriptive"
        ev = ArmValues(arm, st.item_groups, st.item_group_seed, with_groups=not descriptive and st.item_groups >= 2)
        headline: set[str] = set()  # claims whose first primary test on this arm has been seen
        for order, test in enumerate(tests):
            kind = KIND_EVALUATORS[test.kind]
            present = kind.available(ev, test)
            if present is None:
                continue
            row = _base_row(arm, test, present, int(ev.items(test.stratum, test.split).size))
            row.update(kind.evaluate(ev, test, present, st, descriptive))
            first = test.primary and not descriptive and test.claim not in headline
            if first:
                headline.add(test.claim)
            for family, version in _families(test, claims.version, descriptive):
                is_headline = family == "primary" and first
                rows.append(dict(row, family=family, registered_version=version, primary=is_headline, _order=order))
    columns = list(VERDICT_COLUMNS) + list(EXTRA_COLUMNS)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for fam in sorted({r["family"] for r in rows}):
        members = [r for r in rows if r["family"] == fam]
        adjusted = holm(np.array([r["p_value"] for r in members], dtype=float))
        for r, p_adj in zip(members, adjusted):
            r["p_adjusted"] = float(p_adj)
            r["family_size"] = len(members)
    for r in rows:
        kind = kind_of(r)
        level = st.alpha / max(int(r["family_size"]), 1)
        r["mde"], r["mde_relative"] = kind.mde(r, level, st.power)
        r["verdict"] = kind.verdict(r, st)
        r["beyond_margin"] = kind.beyond_margin(pd.Series(r))
    rows.sort(key=lambda r: (_family_order(r["family"]), r["claim"], r["arm"], r["_order"]))
    table = pd.DataFrame([{c: r.get(c, math.nan) for c in columns} for r in rows], columns=columns)
    for name, dtype in (("primary", bool), ("beyond_margin", bool), ("seeds", int), ("family_size", int)):
        table[name] = table[name].astype(dtype)
    for name in ("item_groups", "registered_version"):
        table[name] = table[name].astype(int)
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
