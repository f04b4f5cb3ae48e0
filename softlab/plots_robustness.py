"""Figures of the chapter "Robustness and annotation budgets" (``notebooks/08_robustness.ipynb``),
drawn from the table of :mod:`softlab.robustness` (``results/<set>/robustness.parquet``).

- :func:`plot_specification_curve` — per primary test, the cells sorted by their effect with 95%
  intervals, coloured by verdict, over a strip that shows each cell's settings (Simonsohn, Simmons &
  Nelson 2020).
- :func:`plot_budget_curves` — the claim-1 effect against the best baseline, held-out accuracy and
  the claim-3 effect, against votes per item k and against the annotated fraction f, soft vs
  sampled delivery, with the reference (best baseline / hard-label model) as a line.

Like :mod:`softlab.plots`, every function returns a :class:`matplotlib.figure.Figure` built
without pyplot's global state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from softlab.present import VERDICT_COLOURS, VERDICT_MARKERS, fmt_number

__all__ = ["VERDICT_COLOURS", "plot_budget_curves", "plot_specification_curve"]

#: The deliveries in the colours of their conditions (``softlab.plots.SHAPE_COLOURS``: ``human`` for
#: the soft ``human/human`` target, ``sampled`` for ``human/sampled``; a test checks they match).
DELIVERY_STYLE: dict[str, dict[str, str]] = {
    "soft": {"color": "#2ca02c", "marker": "o"},
    "sampled": {"color": "#1b9e77", "marker": "s"},
}
_SETTINGS = ("model", "epochs", "lr", "hidden", "votes_per_item", "annotated_fraction", "delivery")
_SETTING_LABELS = ("model", "epochs", "lr", "width", "votes k", "fraction f", "delivery")


def _effect(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative effect and its interval, in percent (difference over the comparator's mean;
    variance ratio − 1)."""
    return (
        100 * rows["relative"].to_numpy(float),
        100 * rows["relative_ci_low"].to_numpy(float),
        100 * rows["relative_ci_high"].to_numpy(float),
    )


def _setting_text(setting: str, value: object) -> str:
    if setting == "votes_per_item":
        return "all" if value == 0 else str(value)
    if setting == "annotated_fraction":
        return fmt_number(float(value), percent=True)  # type: ignore[arg-type]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _strip_rows(rows: pd.DataFrame, base: pd.Series | None) -> list[tuple[str, object]]:
    """The (setting, value) pairs a strip marks: every value that differs from the default cell,
    in the order of :data:`_SETTINGS` and, within one, sorted (all values without a default)."""
    out: list[tuple[str, object]] = []
    for setting in _SETTINGS:
        values = [v for v in pd.unique(rows[setting]) if base is None or v != base[setting]]
        key = (lambda v: (v == 0, v)) if setting == "votes_per_item" else (lambda v: (False, v))
        out += [(setting, v) for v in sorted(values, key=key)]
    return out


def _strip_label(setting: str, value: object) -> str:
    label = dict(zip(_SETTINGS, _SETTING_LABELS, strict=True))[setting]
    if setting in ("model", "delivery"):
        return f"{value} {label}"
    return f"{label} = {_setting_text(setting, value)}"


def plot_specification_curve(
    table: pd.DataFrame,
    arm: str = "fashion-mnist",
    tests: Sequence[str] | None = None,
    families: Sequence[str] = ("default", "specification", "budget"),
    columns: int = 2,
) -> Figure:
    """One panel per primary test, ``columns`` panels to a row: the cells of ``families`` sorted by
    effect with its 95% interval, the marker's colour the cell's verdict, the default cell ringed.
    Differences and ratios are shown as relative effects (percent of the comparator's mean; variance
    ratio − 1), a bound test on its own scale with the registered bound shaded. Below each panel, a
    strip marks with a dot every setting in which a cell differs from the default cell (model,
    epochs, learning rate, width, votes per item, annotated fraction, delivery): the default cell's
    column is empty, as in Simonsohn, Simmons & Nelson's (2020) specification curves."""
    if columns < 1:
        raise ValueError(f"columns: expected a positive number of panels per row, got {columns}")
    rows = table[(table["arm"] == arm) & table["family"].isin(list(families))]
    names = list(dict.fromkeys(rows["test"])) if tests is None else list(tests)
    n = max(len(names), 1)
    cols = min(columns, n)
    lines = (n + cols - 1) // cols
    default = rows[rows["family"] == "default"]
    base = default.iloc[0] if len(default) else None
    marks = _strip_rows(rows, base)
    strip_height = 0.3 + 0.16 * max(len(marks), 1)
    fig = Figure(figsize=(4.1 * cols, lines * (2.4 + strip_height) + 0.4), layout="constrained")
    grid = fig.add_gridspec(2 * lines, cols, height_ratios=[2.4, strip_height] * lines)
    for j, test in enumerate(names):
        line, col = divmod(j, cols)
        ax = fig.add_subplot(grid[2 * line, col])
        strip = fig.add_subplot(grid[2 * line + 1, col], sharex=ax)
        part = rows[rows["test"] == test]
        bound = bool(len(part)) and str(part["kind"].iloc[0]) == "bound"
        key = "estimate" if bound else "relative"
        part = part.sort_values(key, kind="stable").reset_index(drop=True)
        if bound:
            est, lo, hi = (part[c].to_numpy(float) for c in ("estimate", "ci_low", "ci_high"))
            margin = float(part["margin"].iloc[0])
            ax.axhspan(-margin, margin, color="0.92", lw=0)
            ax.set_ylabel(f"estimate (bound ±{margin:g} shaded)", fontsize=8)
        else:
            est, lo, hi = _effect(part)
            ax.set_ylabel("effect vs comparator (%)", fontsize=8)
        x = np.arange(len(part))
        ax.axhline(0, color="0.5", lw=0.8)
        for i, r in enumerate(part.to_dict("records")):
            colour = VERDICT_COLOURS.get(str(r["verdict"]), "#7f7f7f")
            marker = VERDICT_MARKERS.get(str(r["verdict"]), "o")
            ax.errorbar(
                x[i], est[i], yerr=[[est[i] - lo[i]], [hi[i] - est[i]]], fmt=marker, color=colour, ms=4, capsize=2
            )
            if r["family"] == "default":
                ax.plot(x[i], est[i], "o", mfc="none", mec="black", ms=9)
        if not np.isfinite(est).any():
            ax.text(
                0.5,
                0.5,
                "no estimate in these cells\n(too few seeds?)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
                color="0.4",
            )
        ax.set_title(str(test), fontsize=9)
        ax.tick_params(labelbottom=False, labelsize=7)
        for k, (setting, value) in enumerate(marks):
            on = x[(part[setting] == value).to_numpy()]
            strip.plot(on, np.full(len(on), k), "o", color="black", ms=2.5, ls="")
            strip.axhline(k, color="0.9", lw=0.5, zorder=0)
        strip.set_yticks(range(len(marks)), [_strip_label(s, v) for s, v in marks] if col == 0 else [])
        strip.tick_params(axis="y", labelsize=7, length=0)
        strip.set_ylim(len(marks) - 0.5, -0.5)
        strip.set_xlim(-0.6, max(len(part) - 0.4, 0.4))
        strip.set_xticks([])
        for side in ("top", "right"):
            strip.spines[side].set_visible(False)
    handles = [
        Line2D([], [], marker=VERDICT_MARKERS.get(v, "o"), ls="", color=c, label=v)
        for v, c in VERDICT_COLOURS.items()
        if v in set(rows["verdict"])
    ]
    handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=9, label="default cell"))
    # one row of verdicts under a wide figure; under one column (a phone) two to a row, so that the
    # legend does not widen the figure beyond its panels
    ncol = len(handles) if cols > 1 else min(len(handles), 2)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    return fig


def _budget_axis(part: pd.DataFrame, factor: str) -> tuple[np.ndarray, list[str]]:
    values = sorted(part[factor].unique(), key=lambda v: (v == 0, v) if factor == "votes_per_item" else (False, v))
    labels = [
        ("all" if v == 0 else f"{v:g}") if factor == "votes_per_item" else fmt_number(float(v), percent=True)
        for v in values
    ]
    return np.asarray(values), labels


def _primary_test(rows: pd.DataFrame, claim: str) -> pd.DataFrame:
    """The rows of a claim's first primary test with a relative effect (claim 1: calibration on
    hard items against the best temperature-scaled baseline; claim 3: the held-out correlation
    against the synthetic model, not the bound test, which has no comparator)."""
    part = rows[(rows["claim"].astype(str) == claim) & (rows["kind"].astype(str) != "bound")]
    if part.empty:
        return part
    return part[part["test"] == part["test"].iloc[0]]


def plot_budget_curves(table: pd.DataFrame, arm: str = "fashion-mnist", columns: int = 3) -> Figure:
    """Two rows (against votes per item k at f = 100%; against the annotated fraction f, one line
    per k the grid varies it at: k = all solid, a small k dashed with open markers) × three panels:
    claim 1's primary effect (relative, %, 95% interval; 0 = the best temperature-scaled baseline),
    held-out accuracy (the hard-label model's as a dashed line) and claim 3's primary effect; soft
    and sampled delivery in two colours. Each line joins one point per budget, in budget order.
    ``columns`` panels to a row, in that order (3: the two rows above; 1: one column of six, for a
    phone's screen)."""
    if columns < 1:
        raise ValueError(f"columns: expected a positive number of panels per row, got {columns}")
    rows = table[(table["arm"] == arm) & table["family"].isin(["default", "budget"])]
    cols = min(columns, 6)
    lines_of_panels = (6 + cols - 1) // cols
    fig = Figure(figsize=(3.5 * cols, 3.2 * lines_of_panels), layout="constrained")
    grid = fig.subplots(lines_of_panels, cols, squeeze=False).ravel()
    for spare in grid[6:]:
        spare.set_visible(False)
    claim1, claim3 = _primary_test(rows, "1"), _primary_test(rows, "3")
    k_rows = rows["annotated_fraction"] == 1.0
    f_votes = sorted(rows.loc[~k_rows, "votes_per_item"].unique(), key=lambda v: (v != 0, v))  # k = all first
    by_f = rows[rows["votes_per_item"].isin(f_votes)]
    f_label = ", ".join("all" if v == 0 else f"{v:g}" for v in f_votes) or "all"
    for r, (factor, sel, label, lines) in enumerate(
        (
            ("votes_per_item", rows[k_rows], "votes per item k (f = 100%)", [None]),
            ("annotated_fraction", by_f, f"annotated fraction f (k = {f_label})", f_votes or [None]),
        )
    ):
        values, ticks = _budget_axis(sel, factor) if len(sel) else (np.asarray([]), [])
        pos = {v: i for i, v in enumerate(values)}
        panels = (
            (claim1, "claim 1 effect vs best baseline (%)", "relative"),
            (sel, "held-out accuracy", "heldout_accuracy"),
            (claim3, "claim 3 effect (%)", "relative"),
        )
        for c, (source, ylabel, column) in enumerate(panels):
            ax = grid[3 * r + c]
            part = source[source.index.isin(sel.index)]
            if column == "heldout_accuracy":
                part = part.drop_duplicates(["cell"])
            if part.empty:
                ax.text(0.5, 0.5, "not in this grid", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            n_series = len(DELIVERY_STYLE) * len(lines)
            for d, ((delivery, style), k) in enumerate(itertools.product(DELIVERY_STYLE.items(), lines)):
                series = part[part["delivery"] == delivery]
                if k is not None:
                    series = series[series["votes_per_item"] == k]
                series = series.assign(_pos=series[factor].map(pos)).sort_values("_pos", kind="stable")
                if series.empty:
                    continue
                x = series["_pos"].to_numpy(float) + (d - (n_series - 1) / 2) * 0.1
                small_k = k not in (None, 0)
                look = dict(style, ls="--" if small_k else "-", mfc="none" if small_k else style["color"])
                name = delivery + ("" if k is None or len(lines) == 1 else f", k={'all' if k == 0 else f'{k:g}'}")
                if column == "relative":
                    est, lo, hi = _effect(series)
                    ax.errorbar(x, est, yerr=[est - lo, hi - est], capsize=2, label=name, **look)
                else:
                    ax.plot(x, series[column].to_numpy(float), label=name, **look)
            if column == "relative":
                ax.axhline(0, color="black", lw=0.9, ls="--", label="best baseline" if c == 0 else "comparator")
                if len(part):
                    ax.set_title(str(part["test"].iloc[0]), fontsize=8)
            else:
                hard = part.drop_duplicates([factor])  # the hard-label model does not see the votes
                hard = hard.assign(_pos=hard[factor].map(pos)).sort_values("_pos", kind="stable")
                if len(hard):
                    ax.plot(
                        hard["_pos"],
                        hard["heldout_accuracy_hard"].to_numpy(float),
                        "k--",
                        lw=0.9,
                        label="original/hard",
                    )
            ax.set_xticks(range(len(values)), ticks)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            if r == 0 or len(lines) > 1:
                ax.legend(fontsize=6.5, frameon=False)
    return fig
