"""Presentation helpers for the book's pages: narrow, typed tables and one-line run summaries.

Tables are rendered as pandas Stylers with a fixed ``uuid`` (so executed notebooks are
byte-stable), no index, three significant figures for ordinary floats (never e-notation),
percentages where asked, and ``–`` for missing values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["VERDICT_COLOURS", "fmt_number", "table", "param_line", "verdict_word"]

#: One colour per verdict, used by tables and figures alike.
VERDICT_COLOURS: dict[str, str] = {
    "confirmed": "#1a9850",
    "refuted": "#d73027",
    "equivalent": "#4575b4",
    "inconclusive": "#969696",
    "descriptive": "#bdbdbd",
}


def fmt_number(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` significant figures in positional notation (``0.000123``, ``1.23``,
    ``1230``); integers as integers; NaN/None as ``–``."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}".replace(",", " ") if abs(int(x)) >= 10000 else str(int(x))
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if v == 0:
            return "0"
        if abs(v) >= 10**digits:
            return f"{v:,.0f}".replace(",", " ")
        return np.format_float_positional(v, precision=digits, unique=False, fractional=False, trim="-")
    return str(x)


def verdict_word(v: Any) -> str:
    """The first word of a verdict (``"inconclusive (n=3 < 10)"`` → ``inconclusive``)."""
    return str(v).split(" ")[0]


def table(
    df: pd.DataFrame,
    digits: int = 3,
    percent: Iterable[str] = (),
    uuid: str = "t",
    rename: Mapping[str, str] | None = None,
    verdict_column: str | None = "verdict",
) -> Any:
    """A narrow HTML table of ``df``: no index, ``digits`` significant figures, columns in
    ``percent`` as percentages, a coloured verdict column when present. ``uuid`` must be unique
    on the page (it keeps the HTML identical between runs)."""
    shown = df.reset_index(drop=True)
    if rename:
        shown = shown.rename(columns=dict(rename))
    percent = {dict(rename or {}).get(c, c) for c in percent}
    fmt = {
        c: (lambda v: "–" if pd.isna(v) else f"{100 * float(v):.1f}%")
        if c in percent
        else (lambda v, d=digits: fmt_number(v, d))
        for c in shown.columns
    }
    styler = shown.style.format(fmt).hide(axis="index").set_uuid(uuid)
    if verdict_column and verdict_column in shown.columns:
        styler = styler.map(
            lambda v: f"color: {VERDICT_COLOURS.get(verdict_word(v), '#000')}; font-weight: bold",
            subset=[verdict_column],
        )
    return styler.set_table_attributes('class="softlab-table"')


def param_line(p: Mapping[str, Any], skipped: Mapping[str, str] | None = None) -> str:
    """One Markdown sentence saying which parameter set produced the page, and one line per
    arm that was skipped because its data is not available here (with what to do)."""
    arms = ", ".join(f"`{a}`" for a in p.get("arms", []))
    model = {"mlp": f"an MLP ({p.get('hidden')} hidden units)", "cnn": "the reference CNN"}.get(
        p.get("model"), str(p.get("model"))
    )
    folds = int(p.get("folds", 0))
    run_folds = int(p.get("run_folds", 0)) or folds
    fold_text = f"{folds} folds" if run_folds == folds else f"{run_folds} of {folds} folds"
    votes = ", ".join(f"`{v}`" for v in (p.get("votes") or {}))
    text = (
        f"*Computed with the `{p.get('params_name')}` parameter set: arms {arms}"
        + (f" and votes arms {votes}" if votes else "")
        + f"; {model}, {p.get('epochs')} epochs, {p.get('seeds')} seeds × {fold_text}.*"
    )
    for arm, reason in (skipped or {}).items():
        text += f"\n\n**The `{arm}` arm was skipped:** {reason}"
    return text


CLAIM_STATEMENTS: dict[int, str] = {
    1: "human soft labels improve calibration on difficult items",
    2: "human soft labels make training more stable across seeds",
    3: "models trained on human soft labels mirror human uncertainty",
}


def _margin_scale(row: Any) -> str:
    scale = getattr(row, "margin_scale", None)
    if isinstance(scale, str) and scale:
        return scale
    return "relative" if str(getattr(row, "kind", "")) == "variance_ratio" else "absolute"


def _sign(row: Any) -> float:
    """+1 when larger values favour the claim, −1 when smaller values do."""
    direction = str(getattr(row, "direction", "lower"))
    return 1.0 if direction == "higher" else -1.0


def scaled_effects(verdicts: pd.DataFrame) -> pd.DataFrame:
    """``verdicts`` with ``label`` and ``scaled_estimate/low/high``: each test's effect in units
    of its pre-registered margin, signed so that positive values go the way the claim predicts
    (relative effects for tests with a relative margin, differences otherwise)."""
    out = verdicts.reset_index(drop=True).copy()
    est, lo, hi = [], [], []
    for row in out.itertuples(index=False):
        rel = _margin_scale(row) == "relative"
        e, a, b = (
            (row.relative, row.relative_ci_low, row.relative_ci_high)
            if rel
            else (row.estimate, row.ci_low, row.ci_high)
        )
        m = float(row.margin) if row.margin and np.isfinite(row.margin) else np.nan
        s = _sign(row)
        vals = [s * float(v) / m if m else np.nan for v in (e, a, b)]
        est.append(vals[0])
        lo.append(min(vals[1], vals[2]))
        hi.append(max(vals[1], vals[2]))
    out["scaled_estimate"], out["scaled_low"], out["scaled_high"] = est, lo, hi
    out["label"] = [f"claim {int(r.claim)} · {r.arm}" for r in out.itertuples(index=False)]
    return out


def _estimate_text(row: Any) -> str:
    if _margin_scale(row) == "relative" and np.isfinite(row.relative):
        return f"{row.relative:+.1%} [{row.relative_ci_low:+.1%}, {row.relative_ci_high:+.1%}]".replace("nan%", "–")
    return f"{fmt_number(row.estimate)} [{fmt_number(row.ci_low)}, {fmt_number(row.ci_high)}]"


def claim_rows(verdicts: pd.DataFrame, claim: int | None, primary: bool = True) -> pd.DataFrame:
    """A narrow view of the verdict table (≤ 6 columns): the tests of ``claim`` (all claims
    when None), primary or exploratory, with the estimate and its interval in one column
    (relative for tests with a relative margin), Holm-adjusted p, minimum detectable effect and
    verdict."""
    part = verdicts[verdicts["primary"] == primary]
    if claim is not None:
        part = part[part["claim"] == claim]
    rows = []
    for row in part.itertuples(index=False):
        where = row.arm if claim is not None else f"{int(row.claim)} · {row.arm}"
        rows.append(
            {
                "claim · arm" if claim is None else "arm": where,
                "test": f"{row.metric} vs {row.comparator}",
                "estimate [95% CI]": _estimate_text(row),
                "p (Holm)": fmt_number(row.p_adjusted, 2),
                "MDE": fmt_number(row.mde, 2),
                "verdict": row.verdict,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["claim · arm" if claim is None else "arm", "test", "estimate [95% CI]", "p (Holm)", "MDE", "verdict"],
    )


def claim_sentences(verdicts: pd.DataFrame) -> str:
    """One plain Markdown sentence per claim, from its primary tests."""
    lines = []
    primary = verdicts[verdicts["primary"]]
    for claim in sorted(primary["claim"].unique()):
        part = primary[primary["claim"] == claim]
        bits = [
            f"**{verdict_word(r.verdict)}** on `{r.arm}` ({_estimate_text(r)})" for r in part.itertuples(index=False)
        ]
        statement = CLAIM_STATEMENTS.get(int(claim), f"claim {claim}")
        lines.append(f"- *Claim {int(claim)} — {statement}:* " + "; ".join(bits) + ".")
    return "\n".join(lines)
