"""Presentation helpers for the book's pages: narrow, typed tables, plain sentences and one-line
run summaries.

Tables are rendered as pandas Stylers with a fixed ``uuid`` (so executed notebooks are
byte-stable), no index, three significant figures for ordinary floats (never e-notation),
percentages where asked, and ``–`` for missing values. Verdicts are coloured with
:data:`VERDICT_COLOURS`, which differ clearly from every condition colour of
:mod:`softlab.plots` (a test checks the colour distances).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from softlab.arms import display_names, reference_names

__all__ = [
    "ARM_NAMES",
    "CLAIM_CHAPTERS",
    "CLAIM_STATEMENTS",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "REFERENCE_NAMES",
    "VERDICT_COLOURS",
    "VERDICT_MARKERS",
    "HtmlSnippet",
    "arm_name",
    "arm_title",
    "arm_titles",
    "claim_headline",
    "claim_rows",
    "claim_sentence",
    "claim_sentences",
    "condition_label",
    "csv_link",
    "fmt_number",
    "fmt_p",
    "metric_name",
    "param_line",
    "parse_number",
    "registered_vs_amended",
    "run_description",
    "scaled_effects",
    "shown_condition",
    "table",
    "values_text",
    "verdict_word",
]

#: One colour per verdict, used by tables and figures alike. Dark hues chosen away from every
#: condition colour (``softlab.plots.condition_colour``): a green verdict must not read as the
#: green ``human`` shape.
VERDICT_COLOURS: dict[str, str] = {
    "confirmed": "#006d2c",
    "refuted": "#b2182b",
    "negligible": "#7a0177",  # magenta-purple: apart from confirmed green and equivalent blue
    "equivalent": "#08306b",
    "inconclusive": "#8c6d00",
    "descriptive": "#000000",
}

#: One marker per verdict (figures encode the verdict twice: colour and shape).
VERDICT_MARKERS: dict[str, str] = {
    "confirmed": "o",
    "refuted": "X",
    "negligible": "P",
    "equivalent": "s",
    "inconclusive": "D",
    "descriptive": "^",
}

#: How the book names its arms in prose (each row's ``display_name`` in :data:`softlab.arms.ARM_SPECS`;
#: unknown arms, e.g. votes arms, keep their own name).
ARM_NAMES: dict[str, str] = display_names()

#: Plain names of the metrics the pre-registered tests use.
METRIC_LABELS: dict[str, str] = {
    "accuracy": "held-out accuracy",
    "accuracy_human_mode": "accuracy against the reference mode",
    "debiased_ce_soft": "debiased soft-reference calibration error",
    "debiased_ce": "debiased calibration error",
    "ece": "ECE",
    "ece_soft": "soft-reference ECE",
    "nll": "negative log-likelihood",
    "brier": "Brier score",
    "kl_human": "KL(h‖p)",
    "entropy_spearman": "Spearman correlation of predicted with reference entropy",
    "spearman_confidence_entropy": "Spearman correlation of held-out confidence with reference entropy",
    "spearman_max_probability_entropy": "Spearman correlation of the maximum probability with reference entropy",
    "spearman_variability_entropy": "Spearman correlation of held-out variability with reference entropy",
    "auroc_variability_ambiguous": "AUROC of held-out variability for ambiguous items",
}

#: The one mapping from metric ids to the plain names tables and figures show.
METRIC_NAMES: dict[str, str] = {
    **METRIC_LABELS,
    "accuracy": "accuracy",
    "accuracy_human_mode": "accuracy (reference mode)",
    "kl_human": "KL divergence",
    "js_human": "Jensen–Shannon divergence",
    "tv_human": "total variation",
    "entropy_calibration_error": "entropy gap |H(p) − H(h)|",
    "entropy_spearman": "rank correlation of entropies",
    "spearman_confidence_entropy": "ρ(confidence, reference entropy)",
    "spearman_variability_entropy": "ρ(variability, reference entropy)",
    "auroc_variability_ambiguous": "AUROC of variability for ambiguous items",
}


def metric_name(metric: str) -> str:
    """The plain name of a metric id (:data:`METRIC_NAMES`; unknown ids are shown as they are)."""
    return METRIC_NAMES.get(str(metric), str(metric))


CLAIM_STATEMENTS: dict[int, str] = {
    1: "human soft labels improve calibration on difficult items",
    2: "human soft labels make training more stable across seeds",
    3: "models trained on human soft labels mirror human uncertainty; models trained on synthetic labels do not",
    4: "human soft labels give some accuracy gain over synthetic soft labels",
}

#: The chapter (document name under ``book/``) and section label holding each claim's evidence.
CLAIM_CHAPTERS: dict[int, tuple[str, str]] = {
    1: ("05_calibration", "claim-1"),
    2: ("04_training", "claim-2"),
    3: ("06_cartography", "claim-3"),
    # claim 4 (accuracy, claims version 2): chapter 4's held-out accuracy section, until the chapter
    # gets a (claim-4)= label of its own
    4: ("04_training", "claim-2"),
}

_THIN_SPACE = "\u202f"  # narrow no-break space: "10 000" never breaks across lines


MINUS = "\u2212"  # the minus sign (not the hyphen): "−0.028", "−12%"


def fmt_number(x: Any, digits: int = 3, *, sign: bool = False, percent: bool = False) -> str:
    """The book's one number format, used by every table, sentence and caption: ``x`` with
    ``digits`` significant figures in positional notation (``0.000123``, ``1.23``, ``1230``,
    trailing zeros dropped); integers as integers (thousands separated by a narrow no-break space
    from 10 000 on); negative values with the minus sign ``−``; NaN/None as ``–``.

    ``percent``: ``x`` is a share, printed in percent (``0.1234`` → ``12.3%``). ``sign``: positive
    values get a ``+`` (differences and effects: ``+0.0023``, ``+79.9%``; zero stays ``0``).
    The conventions: 3 significant figures for values, estimates and their intervals; 2 for
    p-values (:func:`fmt_p`), minimum detectable effects and variance ratios in prose."""
    if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    suffix = "%" if percent else ""
    if isinstance(x, (int, np.integer)) and not percent:
        v_int = int(x)
        text = f"{abs(v_int):,}".replace(",", _THIN_SPACE) if abs(v_int) >= 10000 else str(abs(v_int))
        return _signed_text(text, v_int, sign)
    if isinstance(x, (int, np.integer, float, np.floating)):
        v = float(x) * (100.0 if percent else 1.0)
        if v == 0:
            return "0" + suffix
        if abs(v) >= 10**digits:
            text = f"{abs(v):,.0f}".replace(",", _THIN_SPACE)
        else:
            text = np.format_float_positional(abs(v), precision=digits, unique=False, fractional=False, trim="-")
        return _signed_text(text + suffix, v, sign)
    return str(x)


def _signed_text(magnitude: str, value: float, sign: bool) -> str:
    if value < 0:
        return MINUS + magnitude
    return ("+" if sign and value > 0 else "") + magnitude


def parse_number(text: str) -> float:
    """The value of a :func:`fmt_number` text (``"−1.23"``, ``"+12.3%"`` → 0.123, ``"1 234"``)."""
    t = str(text).replace(MINUS, "-").replace(_THIN_SPACE, "").strip()
    if t.endswith("%"):
        return float(t[:-1]) / 100.0
    return float(t)


def fmt_p(p: Any) -> str:
    """A p-value: two significant figures, ``< 0.001`` below 0.001, ``–`` when missing."""
    if p is None or not np.isfinite(float(p)):
        return "–"
    return "< 0.001" if float(p) < 0.001 else fmt_number(float(p), 2)


def verdict_word(v: Any) -> str:
    """The first word of a verdict (``"inconclusive (n=3 < 10)"`` → ``inconclusive``)."""
    return str(v).split(" ")[0]


def arm_name(arm: str) -> str:
    """The book's name of an arm (:data:`ARM_NAMES`; other arms keep their own name)."""
    return ARM_NAMES.get(str(arm), str(arm))


#: The reference of each arm whose reference is not human votes (every other arm's is), from
#: :data:`softlab.arms.ARM_SPECS`.
REFERENCE_NAMES: dict[str, str] = {arm: name for arm, name in reference_names().items() if name != "human"}


def condition_label(condition: str, reference_name: str = "human") -> str:
    """A condition as the book shows it: on an arm whose reference is not human (the synthetic
    arm's ``generator``), ``human`` in the mode and in the shape is replaced by the reference's
    name (``human/human`` → ``generator/generator``, ``human/synthetic+ts`` →
    ``generator/synthetic+ts``). Display only: the condition id in the data is unchanged."""
    text = str(condition)
    if reference_name == "human" or "/" not in text:
        return text
    suffix = next((s for s in ("+ts-official", "+ts") if text.endswith(s)), "")
    mode, shape = text[: len(text) - len(suffix)].split("/", 1)
    mode = reference_name if mode == "human" else mode
    shape = re.sub(r"^human(?=$|-)", reference_name, shape)
    return f"{mode}/{shape}{suffix}"


def shown_condition(condition: Any, arm: Any) -> str:
    """``condition`` as shown on ``arm`` (:func:`condition_label` with the arm's reference)."""
    return condition_label(str(condition), REFERENCE_NAMES.get(str(arm), "human"))


def arm_title(arm: str, sep: str = " ") -> str:
    """An arm's name for a panel or a column that lists the ids of every arm's conditions at
    once (shared axis labels, one legend): for an arm whose reference is not human it says what
    ``human`` stands for there (``synthetic MNIST (“human” = generator)``; ``sep="\\n"`` puts the
    note on a line of its own, for a narrow panel title)."""
    reference = REFERENCE_NAMES.get(str(arm))
    return arm_name(arm) if reference is None else f"{arm_name(arm)}{sep}(“human” = {reference})"


def arm_titles(arms: Iterable[str] | None = None, sep: str = " ") -> dict[str, str]:
    """:func:`arm_title` of ``arms`` (default: every arm the book names), e.g. for a figure's
    ``facet_names`` (with ``sep="\\n"``) or a table's arm columns."""
    return {str(a): arm_title(str(a), sep) for a in (arms if arms is not None else [*ARM_NAMES, *REFERENCE_NAMES])}


def _breakable(text: str) -> str:
    """``text`` escaped for HTML, with a line-break opportunity after each ``_`` and ``/`` (long
    names such as ``spearman_confidence_entropy`` or ``human/human-shuffled`` may wrap in a
    narrow column instead of widening it)."""
    from html import escape

    return escape(text).replace("_", "_<wbr>").replace("/", "/<wbr>")


def table(
    df: pd.DataFrame,
    digits: int = 3,
    percent: Iterable[str] = (),
    uuid: str = "t",
    rename: Mapping[str, str] | None = None,
    verdict_column: str | None = "verdict",
    nowrap: Iterable[str] = (),
    zero_below: float = 1e-6,
) -> Any:
    """A narrow HTML table of ``df``: no index, ``digits`` significant figures, columns in
    ``percent`` as percentages, a coloured verdict column when present. Floats smaller than
    ``zero_below`` in magnitude print as ``0`` (sums of probabilities leave ~1e-9 noise where the
    exact value is 0). Text is HTML-escaped and may wrap after ``_`` and ``/``; columns in
    ``nowrap`` (and the verdict column) never wrap. ``uuid`` must be unique on the page (it keeps
    the HTML identical between runs)."""
    shown = df.reset_index(drop=True)
    if rename:
        shown = shown.rename(columns=dict(rename))
    percent = {dict(rename or {}).get(c, c) for c in percent}

    def number(v: Any, d: int = digits) -> str:
        if isinstance(v, str):
            return _breakable(v)
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and abs(float(v)) < zero_below:
            return "0"
        return _breakable(fmt_number(v, d))

    def pct(v: Any) -> str:
        return "–" if pd.isna(v) else fmt_number(float(v), digits, percent=True)

    fmt: dict[Any, Any] = {c: pct if c in percent else number for c in shown.columns}
    styler = shown.style.format(fmt).hide(axis="index").set_uuid(uuid)
    keep: list[Hashable] = [c for c in shown.columns if c in set(nowrap) or c == verdict_column]
    if keep:
        styler = styler.map(lambda v: "white-space: nowrap", subset=keep)
    if verdict_column and verdict_column in shown.columns:
        styler = styler.map(
            lambda v: f"color: {VERDICT_COLOURS.get(verdict_word(v), '#000')}; font-weight: bold",
            subset=[verdict_column],
        )
    return styler.set_table_attributes('class="softlab-table"')


def run_description(p: Mapping[str, Any]) -> str:
    """The model and grid of a parameter set in words: ``an MLP (128 hidden units), 6 epochs,
    10 seeds × 5 folds``."""
    model = {"mlp": f"an MLP ({p.get('hidden')} hidden units)", "cnn": "the reference CNN"}.get(
        str(p.get("model")), str(p.get("model"))
    )
    folds = int(p.get("folds", 0))
    run_folds = int(p.get("run_folds", 0)) or folds
    fold_text = f"{folds} folds" if run_folds == folds else f"{run_folds} of {folds} folds"
    return f"{model}, {p.get('epochs')} epochs, {p.get('seeds')} seeds × {fold_text}"


def param_line(p: Mapping[str, Any], skipped: Mapping[str, str] | None = None) -> str:
    """One Markdown sentence saying which parameter set produced the page, and one line per
    arm that was skipped because its data is not available here (with what to do)."""
    arms = ", ".join(f"`{a}`" for a in p.get("arms", []))
    votes = ", ".join(f"`{v}`" for v in (p.get("votes") or {}))
    text = (
        f"*Computed with the `{p.get('params_name')}` parameter set: arms {arms}"
        + (f" and votes arms {votes}" if votes else "")
        + f"; {run_description(p)}.*"
    )
    for arm, reason in (skipped or {}).items():
        text += f"\n\n**The `{arm}` arm was skipped:** {reason}"
    return text


def _rows(df: pd.DataFrame) -> Iterator[Any]:
    """The rows of ``df`` as named tuples (typed ``Any``: their fields are the table's columns)."""
    return iter(df.itertuples(index=False))


def _latest(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows of the latest version of the claims file (not an earlier version's family as
    registered; tables written before versions existed have only latest rows)."""
    if "family" not in verdicts.columns:
        return verdicts
    return verdicts[~verdicts["family"].astype(str).str.startswith("registered-v")]


def primary_family(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Every primary test of the latest version of the claims file, co-primaries included (the
    ``primary`` flag marks only each claim's headline test per arm)."""
    if "family" in verdicts.columns:
        return verdicts[verdicts["family"] == "primary"]
    return verdicts[verdicts["primary"]]


def primary_family_size(verdicts: pd.DataFrame) -> int:
    """The number of tests Holm adjusts over in the primary family (the pages print it)."""
    return len(primary_family(verdicts))


_primary_family = primary_family


def _claim_number(claim: Any) -> int | None:
    try:
        return int(claim)
    except (TypeError, ValueError):
        return None


def _same_claim(column: pd.Series, claim: Any) -> pd.Series:
    """Rows of ``column`` (claims stored as text or numbers) equal to ``claim``."""
    return column.astype(str) == str(claim)


def _margin_scale(row: Any) -> str:
    scale = getattr(row, "margin_scale", None)
    if isinstance(scale, str) and scale:
        return scale
    return "relative" if str(getattr(row, "kind", "")) == "variance_ratio" else "absolute"


def _is_ratio(row: Any) -> bool:
    return str(getattr(row, "kind", "")) == "variance_ratio"


def _sign(row: Any) -> float:
    """+1 when larger values favour the claim, −1 when smaller values do."""
    direction = str(getattr(row, "direction", "lower"))
    return 1.0 if direction == "higher" else -1.0


def scaled_effects(verdicts: pd.DataFrame) -> pd.DataFrame:
    """``verdicts`` with ``label`` and ``scaled_estimate/low/high``: each test's effect in units
    of its pre-registered margin, signed so that positive values go the way the claim predicts
    (relative effects for tests with a relative margin, differences otherwise)."""
    from softlab.inference import kind_of

    out = verdicts.reset_index(drop=True).copy()
    est, lo, hi = [], [], []
    for row in _rows(out):
        e, a, b = kind_of(row).effect_on_margin_scale(row)
        m = float(row.margin) if row.margin and np.isfinite(row.margin) else np.nan
        s = _sign(row)
        vals = [s * float(v) / m if m else np.nan for v in (e, a, b)]
        est.append(vals[0])
        lo.append(min(vals[1], vals[2]))
        hi.append(max(vals[1], vals[2]))
    out["scaled_estimate"], out["scaled_low"], out["scaled_high"] = est, lo, hi
    out["label"] = [f"claim {r.claim} · {arm_name(r.arm)}" for r in _rows(out)]
    return out


def _pct(v: float) -> str:
    """A signed percentage with three significant figures (``+79.9%``, ``−0.963%``, ``+134%``)."""
    return fmt_number(float(v), sign=True, percent=True)


def _is_bound(row: Any) -> bool:
    return str(getattr(row, "kind", "")) == "bound"


def values_text(row: Any) -> str:
    """The compared values in the metric's own units (``"0.0052 vs 0.0029"``): the condition's and
    the comparator's means over seeds, or a bound test's own value against its bound."""
    cond = float(getattr(row, "mean_condition", math.nan))
    if _is_bound(row):
        return f"{_abs_text(cond)} vs bound ±{fmt_number(row.margin)}"
    return f"{_abs_text(cond)} vs {_abs_text(float(getattr(row, 'mean_comparator', math.nan)))}"


def _estimate_text(row: Any) -> str:
    """The estimate and its 95% interval in the test's natural scale: the variance ratio itself,
    a relative difference in percent, or the absolute difference (a bound test: its own value)."""
    if _is_ratio(row):
        return f"{fmt_number(row.estimate)} [{fmt_number(row.ci_low)}, {fmt_number(row.ci_high)}]"
    if _margin_scale(row) == "relative" and np.isfinite(row.relative):
        return f"{_pct(row.relative)} [{_pct(row.relative_ci_low)}, {_pct(row.relative_ci_high)}]"
    if _is_bound(row):  # a bound test's own value, not a difference
        return f"{_abs_text(row.estimate)} [{_abs_text(row.ci_low)}, {_abs_text(row.ci_high)}]"
    return f"{_diff_text(row.estimate)} [{_diff_text(row.ci_low)}, {_diff_text(row.ci_high)}]"


def _mde_text(row: Any) -> str:
    if _is_ratio(row):
        return fmt_number(row.mde, 2)
    if _margin_scale(row) == "relative":
        rel = getattr(row, "mde_relative", math.nan)
        return "–" if not np.isfinite(rel) else fmt_number(abs(rel), 2, percent=True)
    return fmt_number(row.mde, 2)


def claim_rows(verdicts: pd.DataFrame, claim: Any | None, primary: bool = True) -> pd.DataFrame:
    """A narrow view of the verdict table (seven columns): the tests of ``claim`` (all claims
    when None), primary or exploratory (of the latest version of the claims file; the registered
    version's family is :func:`registered_vs_amended`). Columns: where (arm, or claim · arm), the
    comparison (condition vs comparator, prefixed by metric and stratum where they vary), the
    compared values in the metric's own units (:func:`values_text`), the estimate and
    its 95% interval in the test's natural scale (variance ratio; relative difference for tests
    with a relative margin; absolute difference otherwise), the Holm-adjusted p, the minimum
    detectable effect in the same scale, and the verdict. Metric and stratum prefix the comparison
    only for claims whose tests differ in them."""
    part = _latest(verdicts)
    if "family" in part.columns:  # co-primaries are primary-family rows whose `primary` flag is off
        part = part[(part["family"] == "primary") == primary]
        part = part if primary else part[part["family"] != "descriptive"]
    else:
        part = part[part["primary"] == primary]
    if claim is not None:
        part = part[_same_claim(part["claim"], claim)]
    where = "arm" if claim is not None else "claim · arm"
    columns = [where, "comparison", "values", "estimate [95% CI]", "p (Holm)", "MDE", "verdict"]
    # name the metric and stratum only where they vary within a claim (the page says the rest)
    kinds: Any = (
        part.groupby(part["claim"].astype(str))[["metric", "stratum"]].nunique().max(axis=1) if len(part) else {}
    )
    rows = []
    for row in _rows(part):
        varies = int(kinds.get(str(row.claim), 1)) > 1
        prefix = f"{metric_name(str(row.metric))} ({row.stratum}): " if varies else ""
        rows.append(
            {
                where: row.arm if claim is not None else f"{row.claim} · {row.arm}",
                "comparison": f"{prefix}{shown_condition(row.condition, row.arm)} vs "
                f"{shown_condition(row.comparator, row.arm)}",
                "values": values_text(row),
                "estimate [95% CI]": _estimate_text(row),
                "p (Holm)": fmt_p(row.p_adjusted),
                "MDE": _mde_text(row),
                "verdict": row.verdict,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _interval(row: Any, relative: bool) -> tuple[float, float, float]:
    if relative:
        return float(row.relative), float(row.relative_ci_low), float(row.relative_ci_high)
    return float(row.estimate), float(row.ci_low), float(row.ci_high)


def _abs_text(v: float) -> str:
    return fmt_number(0.0 if abs(v) < 1e-9 else v)


def _diff_text(v: float) -> str:
    """A difference: signed (``+0.0023``, ``−0.028``); float noise below 1e-9 is ``0``."""
    return fmt_number(0.0 if abs(v) < 1e-9 else v, sign=True)


def _best_of_note(row: Any) -> str:
    """``"the best of 4 pre-registered baselines; "`` for a selection-aware comparator, else ``""``."""
    pool = [c for c in str(getattr(row, "comparator_set", "") or "").split(", ") if c]
    return f"the best of {len(pool)} pre-registered baselines; " if len(pool) > 1 else ""


def _effect_phrases(rows: pd.DataFrame) -> str:
    """What the tests of one claim measured, in words: the first arm in full, further arms that
    share its metric, stratum and comparison in short."""
    parts: list[str] = []
    first: Any = None
    for row in _rows(rows):
        arm = arm_name(row.arm)
        same = first is not None and all(
            getattr(row, k) == getattr(first, k) for k in ("metric", "stratum", "condition", "comparator", "kind")
        )
        metric = METRIC_LABELS.get(str(row.metric), str(row.metric))
        where = "" if str(row.stratum) == "all" else f" on {row.stratum} items"
        if _is_bound(row):
            if not np.isfinite(row.estimate):
                parts.append(f"on {arm} the value could not be estimated ({int(row.seeds)} seeds)")
                continue
            ci = f"95% CI {_abs_text(row.ci_low)} to {_abs_text(row.ci_high)}"
            bound = f"the pre-registered bound ±{fmt_number(row.margin)}"
            parts.append(
                f"on {arm} {_abs_text(row.estimate)} ({ci})"
                if same
                else f"on {arm} the {metric}{where} of `{shown_condition(row.condition, row.arm)}` itself is "
                f"{_abs_text(row.estimate)} "
                f"({ci}; {bound})"
            )
            first = first if same else row
            continue
        if _is_ratio(row):
            if not np.isfinite(row.estimate):
                parts.append(f"on {arm} the variance ratio could not be estimated ({int(row.seeds)} seeds)")
                continue
            side = "below" if str(row.direction) == "lower" else "above"
            ci = f"95% CI {fmt_number(row.ci_low, 2)} to {fmt_number(row.ci_high, 2)}"
            mde = (
                f"with {int(row.seeds)} seeds only a ratio {side} {fmt_number(row.mde, 2)} would be detected "
                "with 80% power"
            )
            if same:
                parts.append(
                    f"on {arm} {fmt_number(row.estimate, 2)} times ({ci}; detectable: {side} {fmt_number(row.mde, 2)})"
                )
            else:
                parts.append(
                    f"on {arm} the across-seed variance of {metric}{where} under "
                    f"`{shown_condition(row.condition, row.arm)}` is {fmt_number(row.estimate, 2)} times that "
                    f"under `{shown_condition(row.comparator, row.arm)}` "
                    f"({_best_of_note(row)}{ci}; {mde})"
                )
            first = first if same else row
            continue
        relative = _margin_scale(row) == "relative"
        est, lo, hi = _interval(row, relative)
        if not np.isfinite(est):
            parts.append(f"on {arm} the difference could not be estimated ({int(row.seeds)} seeds)")
            continue
        size = fmt_number(abs(est), percent=True) if relative else _abs_text(abs(est))
        side = "higher" if est > 0 else "lower"
        ci = (
            f"95% CI {_pct(lo)} to {_pct(hi)}"
            if relative
            else f"95% CI of the difference {_diff_text(lo)} to {_diff_text(hi)}"
        )
        margin = float(row.margin) if row.margin is not None and np.isfinite(row.margin) else math.nan
        if np.isfinite(margin) and abs(est) < margin:
            margin_text = fmt_number(margin, percent=True) if relative else fmt_number(margin)
            ci += (
                "; also below the margin"
                if same
                else f"; smaller than the pre-registered smallest effect of interest, {margin_text}"
            )
        if same:
            parts.append(f"on {arm} {size} {side} ({ci})")
        else:
            parts.append(
                f"on {arm} the {metric}{where} is {size} {side} under `{shown_condition(row.condition, row.arm)}` "
                f"than under `{shown_condition(row.comparator, row.arm)}` ({_best_of_note(row)}{ci})"
            )
        first = first if same else row
    return "; ".join(parts)


def claim_sentence(verdicts: pd.DataFrame, claim: Any) -> str:
    """One plain Markdown paragraph on ``claim`` from its primary tests: the verdict on each
    verdict arm first, then what was measured there."""
    primary = _primary_family(verdicts)
    primary = primary[_same_claim(primary["claim"], claim)]
    if primary.empty:
        return "No primary test of this claim could run with this parameter set."
    by_test = primary["test"] if "test" in primary.columns else pd.Series("", index=primary.index)
    tests = list(dict.fromkeys(by_test))
    sentences = []
    for k, test in enumerate(tests):
        rows = primary[by_test == test]
        lead = "" if k == 0 else f"Co-primary `{test}`: "
        sentences.append(f"{lead}{_verdict_head(rows)}: {_effect_phrases(rows)}.")
    return " ".join(sentences)


def _verdict_head(primary: pd.DataFrame) -> str:
    words = [verdict_word(v) for v in primary["verdict"]]
    arms = [arm_name(a) for a in primary["arm"]]
    if len(set(words)) == 1:
        scope = (
            "both verdict arms"
            if len(arms) == 2
            else (f"the {arms[0]} arm" if len(arms) == 1 else f"all {len(arms)} verdict arms")
        )
        return f"**{words[0].capitalize()}** on {scope}"
    head = "; ".join(f"**{w}** on {a}" for w, a in zip(words, arms))
    return head[:2] + head[2].upper() + head[3:]


def claim_headline(verdicts: pd.DataFrame, claim: Any) -> str:
    """One short plain sentence on ``claim`` (for the intro): the verdicts, then the measured
    effect on every verdict arm in one phrase, without intervals (:func:`claim_sentence` has
    them)."""
    primary = verdicts[verdicts["primary"] & _same_claim(verdicts["claim"], claim)]
    if primary.empty:
        return "No primary test of this claim could run with this parameter set."
    if "test" in primary.columns:
        primary = primary[primary["test"] == primary["test"].iloc[0]]  # the claim's first primary test
    first = next(_rows(primary))
    if _is_bound(first):
        values = " and ".join(f"{_abs_text(r.estimate)} ({arm_name(r.arm)})" for r in _rows(primary))
        return (
            f"{_verdict_head(primary)}: the {METRIC_LABELS.get(str(first.metric), str(first.metric))} of "
            f"`{shown_condition(first.condition, first.arm)}` is {values}, "
            f"against a bound of ±{fmt_number(first.margin)}."
        )
    metric = METRIC_LABELS.get(str(first.metric), str(first.metric))
    where = "" if str(first.stratum) == "all" else f" on {first.stratum} items"
    pool = [c for c in str(getattr(first, "comparator_set", "") or "").split(", ") if c]
    # named as on the sentence's first arm (its subject; the tables name each arm's own)
    comparators = list(dict.fromkeys(shown_condition(c, first.arm) for c in primary["comparator"]))
    against = " or ".join(f"`{c}`" for c in comparators)
    if len(pool) > 1:
        against = f"the best of {len(pool)} pre-registered baselines ({against})"
    if _is_ratio(first):
        sizes = [f"{fmt_number(r.estimate, 2)} ({arm_name(r.arm)})" for r in _rows(primary) if np.isfinite(r.estimate)]
        if not sizes:
            return f"{_verdict_head(primary)}: the variance ratio could not be estimated."
        cis = " and ".join(
            f"{fmt_number(r.ci_low, 2)}–{fmt_number(r.ci_high, 2)}" for r in _rows(primary) if np.isfinite(r.estimate)
        )
        return (
            f"{_verdict_head(primary)}: the across-seed variance of {metric}{where} under "
            f"`{shown_condition(first.condition, first.arm)}` is {' and '.join(sizes)} times that under {against} "
            f"(95% intervals {cis})."
        )
    parts, sides = [], []
    for r in _rows(primary):
        relative = _margin_scale(r) == "relative"
        est = float(r.relative if relative else r.estimate)
        if not np.isfinite(est):
            continue
        sides.append("higher" if est > 0 else "lower")
        size = fmt_number(abs(est), percent=True) if relative else _abs_text(abs(est))
        parts.append((size, arm_name(r.arm), sides[-1]))
    if not parts:
        return f"{_verdict_head(primary)}: the difference could not be estimated."
    same_side = len(set(sides)) == 1
    effect = " and ".join(f"{size} ({arm})" if same_side else f"{size} {side} ({arm})" for size, arm, side in parts)
    side = f" {sides[0]}" if same_side else ""
    return (
        f"{_verdict_head(primary)}: the {metric}{where} is {effect}{side} under "
        f"`{shown_condition(first.condition, first.arm)}` than "
        f"under {against}."
    )


def claim_sentences(verdicts: pd.DataFrame, links: bool = False) -> str:
    """One Markdown bullet per claim: its statement and :func:`claim_sentence`. With ``links``,
    each bullet ends with a MyST reference to the section holding the claim's evidence."""
    lines = []
    primary = verdicts[verdicts["primary"]]
    for claim in sorted(primary["claim"].astype(str).unique(), key=lambda c: (_claim_number(c) or 0, c)):
        n = _claim_number(claim)
        statement = CLAIM_STATEMENTS.get(n, f"claim {claim}") if n is not None else f"claim {claim}"
        text = f"- *Claim {claim} — {statement}.* {claim_sentence(verdicts, claim)}"
        if links and n in CLAIM_CHAPTERS:
            text += f" Evidence: {{ref}}`{CLAIM_CHAPTERS[n][1]}`."
        lines.append(text)
    return "\n".join(lines)


class HtmlSnippet:
    """A piece of HTML that notebooks display as it is (``_repr_html_``), with a plain-text
    fallback for other outputs."""

    def __init__(self, html: str, text: str):
        self.html, self.text = html, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def csv_link(df: pd.DataFrame, filename: str, text: str) -> HtmlSnippet:
    """A download link carrying ``df`` as CSV inside the page (a ``data:`` URI), so a long table
    can stay collapsed on the page and still be taken away whole, with no file to ship beside the
    book. ``filename`` is the name the browser saves it under."""
    import base64
    from html import escape

    payload = base64.b64encode(df.to_csv(index=False).encode("utf-8")).decode("ascii")
    html = (
        f'<p><a class="softlab-download" download="{escape(filename, quote=True)}" '
        f'href="data:text/csv;charset=utf-8;base64,{payload}">{escape(text)}</a></p>'
    )
    return HtmlSnippet(html, f"{text} ({filename})")


def registered_vs_amended(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The findings page's side-by-side view: every primary test of any version, one row per test
    and arm, with its verdict and estimate as registered (version 1, Holm over the version-1
    family) and as amended (the latest version, Holm over its family). A test that is not primary
    in a version shows "–" there (superseded, or added by the amendment). Columns: ``claim``,
    ``arm``, ``test``, ``as registered (v1)``, ``as amended (v<latest>)``, ``family sizes``."""
    if "registered_version" not in verdicts.columns:
        raise ValueError("verdicts: no column 'registered_version' (a table written before claims version 2)")
    latest = int(verdicts["registered_version"].max())
    v1 = verdicts[verdicts["family"] == "registered-v1"] if latest > 1 else _primary_family(verdicts)
    amended = _primary_family(verdicts)
    keys = list(dict.fromkeys([(r.claim, r.arm, r.test) for r in _rows(pd.concat([v1, amended]))]))

    def cell(part: pd.DataFrame, key: tuple[Any, Any, Any]) -> str:
        hit = part[(part["claim"] == key[0]) & (part["arm"] == key[1]) & (part["test"] == key[2])]
        if hit.empty:
            return "–"
        row = next(_rows(hit))
        return f"{verdict_word(row.verdict)}: {_estimate_text(row)}"

    sizes = f"{len(v1)} (v1) / {len(amended)} (v{latest})"
    rows = [
        {
            "claim": key[0],
            "arm": key[1],
            "test": key[2],
            "as registered (v1)": cell(v1, key),
            f"as amended (v{latest})": cell(amended, key),
            "family sizes": sizes,
        }
        for key in sorted(keys, key=lambda k: (_claim_number(k[0]) or 0, str(k[0]), str(k[1])))
    ]
    return pd.DataFrame(rows)
