"""Figures for the book: one style, one fixed colour per condition.

Every function takes tidy tables (outputs of :mod:`softlab.metrics`, :mod:`softlab.cartography`,
:mod:`softlab.stats`, :mod:`softlab.evaluation`) and returns a :class:`matplotlib.figure.Figure`
built without pyplot's global state (nothing is shown or kept open; a notebook displays the
returned figure; ``fig.savefig(path)`` writes it).

Colours: each **shape** has a fixed hue (:data:`SHAPE_COLOURS`); the ``human`` mode draws it at
full strength and the ``original`` mode a lighter tint of the same hue, so the ten
``mode/shape`` conditions keep one colour each in every figure (:func:`condition_colour`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch

from softlab.present import fmt_number

__all__ = [
    "COLUMN_WIDTH_IN",
    "MODE_ORDER",
    "SHAPE_COLOURS",
    "SHAPE_ORDER",
    "STRATUM_ORDER",
    "SvgFigure",
    "condition_colour",
    "condition_palette",
    "order_conditions",
    "plot_condition_intervals",
    "plot_condition_targets",
    "plot_data_maps",
    "plot_image_grid",
    "plot_intervals",
    "plot_item_distributions",
    "plot_metric_by_stratum",
    "plot_reliability",
    "plot_seed_spread",
    "plot_variance_decomposition",
    "plot_verdicts",
    "set_style",
]

#: Width (inches) of a figure that fills the book's ~700 px content column at 100 dpi.
COLUMN_WIDTH_IN: float = 7.0

SHAPE_ORDER: tuple[str, ...] = (
    "hard",
    "smooth",
    "smooth-mass",
    "synthetic",
    "synthetic-own-data",
    "human-shuffled",
    "human",
    "sampled",
)
MODE_ORDER: tuple[str, ...] = ("original", "human")
STRATUM_ORDER: tuple[str, ...] = ("all", "easy", "medium", "hard", "mode-shifted")
SHAPE_COLOURS: dict[str, str] = {
    "hard": "#4d4d4d",
    "smooth": "#1f77b4",
    "smooth-mass": "#17becf",
    "synthetic": "#ff7f0e",
    "synthetic-own-data": "#b35806",
    "human-shuffled": "#9467bd",
    "human": "#2ca02c",
    # human/sampled: the human votes delivered one sampled vote per item per epoch (chapter 8); a
    # teal apart from the human green (ΔE ≥ 20 from every other condition and verdict colour)
    "sampled": "#1b9e77",
    "generator": "#8c564b",
}
# Colours for shapes this module does not know (e.g. a votes arm's own shape): none of them close
# to a known shape or to a verdict colour (softlab.present.VERDICT_COLOURS).
_FALLBACK = ("#bcbd22", "#e377c2", "#f781bf", "#a6d854")
_ORIGINAL_TINT = 0.45  # fraction of white mixed into the hue for the "original" mode


def set_style() -> None:
    """Apply the project's one style: seaborn white grid, 100 dpi, text ≥ 9 pt at the size the
    book shows a :data:`COLUMN_WIDTH_IN`-wide figure (notebooks draw at twice that density:
    :func:`softlab.chapter.open_book`)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "savefig.bbox": "tight",
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
            "legend.frameon": False,
        }
    )


def _split_condition(condition: str) -> tuple[str, str]:
    if "/" in condition:
        mode, shape = condition.split("/", 1)
        return mode, shape
    return "", condition


def condition_colour(condition: str) -> str:
    """Hex colour of ``"<mode>/<shape>"`` (or of a bare shape name). Deterministic for unknown
    shapes too (picked from a fixed fallback list by a stable checksum of the name)."""
    mode, shape = _split_condition(condition)
    shape = shape.removesuffix("+ts")  # a temperature-scaled twin keeps its condition's colour
    if shape in SHAPE_COLOURS:
        base = SHAPE_COLOURS[shape]
    else:
        base = _FALLBACK[sum(shape.encode()) % len(_FALLBACK)]
    if mode == "original":
        r, g, b = (v + (1.0 - v) * _ORIGINAL_TINT for v in to_rgb(base))
        return to_hex((r, g, b))
    return to_hex(base)


def order_conditions(conditions: Sequence[str]) -> list[str]:
    """Distinct conditions sorted by mode (original, human) then shape (:data:`SHAPE_ORDER`);
    unknown modes/shapes last, alphabetically."""

    def key(c: str) -> tuple[int, int, bool, str, str]:
        mode, shape = _split_condition(c)
        ts = shape.endswith("+ts")
        shape = shape.removesuffix("+ts")
        mi = MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)
        si = SHAPE_ORDER.index(shape) if shape in SHAPE_ORDER else len(SHAPE_ORDER)
        return (mi, si, ts, mode, shape)

    return sorted(dict.fromkeys(conditions), key=key)


def condition_palette(conditions: Sequence[str]) -> dict[str, str]:
    """``{condition: colour}`` for the given conditions (see :func:`condition_colour`)."""
    return {c: condition_colour(c) for c in order_conditions(conditions)}


def _rows(df: pd.DataFrame) -> Iterator[Any]:
    """The rows of ``df`` as named tuples (typed ``Any``: their fields are the table's columns)."""
    return iter(df.itertuples(index=False))


def _require(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{name}: the table is empty")


def _facet_values(df: pd.DataFrame, facet: str) -> list[str]:
    vals = list(pd.unique(df[facet]))
    if facet == "condition":
        return order_conditions([str(v) for v in vals])
    return vals


def _grid(n: int, max_cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(n, max_cols))
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_reliability(
    table: pd.DataFrame,
    facet: str = "condition",
    max_cols: int = 5,
    title: str | None = None,
    names: Mapping[str, str] | None = None,
) -> Figure:
    """Reliability diagrams, one panel per value of ``facet``.

    ``table`` has ``bin_lower, bin_upper, mean_confidence, accuracy, count`` and the ``facet``
    column (e.g. :func:`softlab.evaluation.reliability_frame`). Rows of several runs in one panel
    are pooled per bin (count-weighted). Bars show accuracy per bin, red outlines the gap to the
    mean confidence; the dashed diagonal is perfect calibration. Panel titles give the pooled ECE
    ``Σ_b (n_b/N)|acc_b − conf_b|``. ``names`` maps facet values to the titles shown (e.g. a
    synthetic arm's conditions named after its reference); colours follow the values themselves.
    """
    _require(table, ["bin_lower", "bin_upper", "mean_confidence", "accuracy", "count", facet], "table")
    values = _facet_values(table, facet)
    fig, axes = _grid(len(values), max_cols, (2.8, 2.8))
    for ax, val in zip(axes, values):
        part = table[(table[facet] == val) & (table["count"] > 0)]
        g = (
            part.assign(conf_sum=part["mean_confidence"] * part["count"], hit_sum=part["accuracy"] * part["count"])
            .groupby(["bin_lower", "bin_upper"], as_index=False)[["count", "conf_sum", "hit_sum"]]
            .sum()
        )
        width = (g["bin_upper"] - g["bin_lower"]).to_numpy()
        left = g["bin_lower"].to_numpy()
        acc = (g["hit_sum"] / g["count"]).to_numpy()
        conf = (g["conf_sum"] / g["count"]).to_numpy()
        colour = condition_colour(str(val)) if facet == "condition" else "#4d4d4d"
        ax.bar(left, acc, width=width, align="edge", color=colour, edgecolor="white", linewidth=0.5)
        ax.bar(
            left,
            conf - acc,
            bottom=acc,
            width=width,
            align="edge",
            facecolor="none",
            edgecolor="#d62728",
            linewidth=0.8,
        )
        ax.plot([0, 1], [0, 1], ls="--", color="black", lw=0.8)
        n = g["count"].sum()
        pooled_ece = float(np.abs(g["hit_sum"] - g["conf_sum"]).sum() / n) if n else float("nan")
        ax.set_title(f"{(names or {}).get(str(val), val)}\nECE {fmt_number(pooled_ece)} (n={fmt_number(int(n))})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    if title:
        fig.suptitle(title)
    return fig


def plot_data_maps(
    maps: pd.DataFrame,
    facet: str = "condition",
    hue: str = "human_entropy",
    reference: str | None = None,
    max_points: int = 4000,
    max_cols: int = 5,
    seed: int = 0,
    hue_label: str | None = None,
) -> Figure:
    """Data maps (variability on x, confidence on y) coloured by ``hue`` (default human entropy),
    one panel per ``facet`` value; ``hue_label`` names the colour bar (default: ``hue`` in words,
    e.g. "reference entropy (nats)" for an arm whose reference is not human).

    ``maps`` has ``variability, confidence, hue, facet`` (e.g.
    :func:`softlab.cartography.data_map_table` with a ``condition`` column added). When it has a
    ``reference`` column, pass ``reference`` to pick one (``official``, ``human-mode``, ``soft``).
    At most ``max_points`` points per panel are drawn (a seeded random subset). The colour scale is
    shared by all panels.
    """
    _require(maps, ["variability", "confidence", hue, facet], "maps")
    if reference is not None:
        _require(maps, ["reference"], "maps")
        maps = maps[maps["reference"] == reference]
        if maps.empty:
            raise ValueError(f"reference: no rows with reference {reference!r}")
    elif "reference" in maps.columns and maps["reference"].nunique() > 1:
        raise ValueError(f"reference: maps holds several references {sorted(maps['reference'].unique())}; pick one")
    values = _facet_values(maps, facet)
    colour_values = maps[hue].to_numpy(dtype=np.float64)
    finite = colour_values[np.isfinite(colour_values)]
    norm = Normalize(
        vmin=float(finite.min()) if finite.size else 0.0,
        vmax=float(finite.max()) if finite.size and finite.max() > finite.min() else 1.0,
    )
    rng = np.random.default_rng(seed)
    fig, axes = _grid(len(values), max_cols, (3.0, 2.8))
    mappable = None
    for ax, val in zip(axes, values):
        part = maps[maps[facet] == val]
        if len(part) > max_points:
            part = part.iloc[np.sort(rng.choice(len(part), size=max_points, replace=False))]
        mappable = ax.scatter(
            part["variability"],
            part["confidence"],
            c=part[hue],
            cmap="viridis",
            norm=norm,
            s=6,
            alpha=0.7,
            linewidths=0,
        )
        ax.set_title(str(val))
        ax.set_xlabel("variability")
        ax.set_ylabel("confidence")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
    if mappable is not None:
        label = hue_label or hue.replace("_", " ") + (" (nats)" if "entropy" in hue else "")
        fig.colorbar(mappable, ax=axes[: len(values)].tolist(), label=label)
    return fig


def plot_metric_by_stratum(
    summary: pd.DataFrame,
    estimate: str = "estimate",
    low: str = "ci_low",
    high: str = "ci_high",
    x: str = "stratum",
    hue: str = "condition",
    ylabel: str | None = None,
    facet: str = "metric",
    facet_names: Mapping[str, str] | None = None,
    zero_line: bool | None = None,
) -> Figure:
    """Point estimates with interval error bars per stratum and condition, one panel per value of
    ``facet`` (stacked, one per row; e.g. ``facet="dataset"``).

    ``summary`` has ``x``, ``hue``, ``estimate``, ``low``, ``high`` columns — e.g.
    :func:`softlab.chapter.seed_intervals` of the tidy metric table. Conditions are dodged
    sideways within each stratum; temperature-scaled twins (``+ts``) are open squares.
    ``facet_names`` titles the panels (e.g. :data:`softlab.present.ARM_NAMES`); ``zero_line``
    draws y = 0 (default: when the estimates change sign or ``estimate == "difference"``).
    """
    _require(summary, [x, hue, estimate, low, high], "summary")
    facets = list(pd.unique(summary[facet])) if facet in summary.columns else [None]
    n_x = summary[x].nunique()
    fig = Figure(figsize=(max(COLUMN_WIDTH_IN, 1.2 * n_x), 2.6 * len(facets) + 0.9), layout="constrained")
    axes = fig.subplots(len(facets), 1, squeeze=False)[:, 0]
    for ax, fv in zip(axes, facets):
        part = summary if fv is None else summary[summary[facet] == fv]
        xs = [s for s in STRATUM_ORDER if s in set(part[x])] + [s for s in pd.unique(part[x]) if s not in STRATUM_ORDER]
        hues = (
            order_conditions([str(h) for h in pd.unique(part[hue])])
            if hue == "condition"
            else list(pd.unique(part[hue]))
        )
        span = 0.7
        step = span / max(len(hues), 1)
        for j, hv in enumerate(hues):
            sub = part[part[hue] == hv].set_index(x)
            pos, est, lo, hi = [], [], [], []
            for i, xv in enumerate(xs):
                if xv in sub.index:
                    row = sub.loc[xv]
                    if isinstance(row, pd.DataFrame):
                        raise ValueError(f"summary: several rows for {hue}={hv!r}, {x}={xv!r}; filter first")
                    pos.append(i - span / 2 + step * (j + 0.5))
                    est.append(row[estimate])
                    lo.append(row[low])
                    hi.append(row[high])
            est_a, lo_a, hi_a = (np.asarray(v, dtype=np.float64) for v in (est, lo, hi))
            colour = condition_colour(str(hv)) if hue == "condition" else None
            scaled = str(hv).endswith("+ts")
            ax.errorbar(
                pos,
                est_a,
                yerr=np.nan_to_num(np.clip(np.vstack([est_a - lo_a, hi_a - est_a]), 0.0, None)),
                fmt="s" if scaled else "o",
                mfc="white" if scaled else None,
                ms=4,
                capsize=2,
                lw=1,
                color=colour,
                label=str(hv),
            )
        values = part[estimate].to_numpy(dtype=np.float64)
        changes_sign = bool(np.nanmin(values) < 0 < np.nanmax(values)) if np.isfinite(values).any() else False
        if zero_line if zero_line is not None else (estimate == "difference" or changes_sign):
            ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs)
        ax.set_ylabel(ylabel or (str(fv) if facet == "metric" and fv is not None else estimate))
        if fv is not None:
            ax.set_title(str((facet_names or {}).get(str(fv), fv)))
    axes[-1].set_xlabel(x)
    legend: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend.keys()), loc="outside lower center", ncols=3, fontsize=9)
    return fig


def plot_seed_spread(
    df: pd.DataFrame,
    metric: str | None = None,
    by: str = "condition",
    average_folds: bool = True,
    xlabel: str | None = None,
    names: Mapping[str, str] | None = None,
) -> Figure:
    """Spread of a metric across seeds: a horizontal box and the individual seeds per ``by``
    value (one row each, in :func:`order_conditions` order, so labels never collide).

    ``df`` is the tidy metric table (columns ``seed``, ``value``, ``by``; ``fold`` and ``metric``
    optional). Pick one ``metric`` when the table has several. With ``average_folds`` each seed's
    value is its mean over folds, so one point is one seed. ``names`` maps ``by`` values to the
    row labels shown (colours and order follow the values themselves).
    """
    _require(df, ["seed", "value", by], "df")
    if "metric" in df.columns:
        if metric is None:
            if df["metric"].nunique() > 1:
                raise ValueError(f"metric: df holds several metrics {sorted(df['metric'].unique())}; pick one")
            metric = str(df["metric"].iloc[0])
        df = df.loc[df["metric"] == metric]
        if df.empty:
            raise ValueError(f"metric: no rows with metric {metric!r}")
    data = df.dropna(subset=["value"])
    if average_folds and "fold" in data.columns:
        data = data.groupby([by, "seed"], as_index=False).agg(value=("value", "mean"))
    order = order_conditions([str(v) for v in pd.unique(data[by])]) if by == "condition" else list(pd.unique(data[by]))
    palette = condition_palette(order) if by == "condition" else None
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.3 * len(order) + 1.0), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    groups = [data.loc[data[by].astype(str) == str(v), "value"].to_numpy(dtype=np.float64) for v in order]
    pos = np.arange(len(order))[::-1]  # first condition on top
    boxes = ax.boxplot(
        groups,
        positions=pos,
        widths=0.6,
        patch_artist=True,
        orientation="horizontal",
        showfliers=False,
        medianprops={"color": "black"},
    )
    for patch, v in zip(boxes["boxes"], order):
        patch.set_facecolor(palette[v] if palette else "#bbbbbb")
        patch.set_alpha(0.6)
    for p, vals in zip(pos, groups):
        ax.scatter(vals, p + rng.uniform(-0.15, 0.15, size=vals.size), s=10, color="black", zorder=3)
    ax.set_yticks(pos)
    ax.set_yticklabels([(names or {}).get(str(v), str(v)) for v in order])
    ax.set_xlabel(xlabel or metric or "value")
    return fig


def plot_intervals(
    table: pd.DataFrame,
    estimate: str = "difference",
    low: str = "ci_low",
    high: str = "ci_high",
    y: str = "condition",
    reference_line: float | None = 0.0,
    xlabel: str | None = None,
) -> Figure:
    """Forest plot: one row per ``y`` value with its estimate and interval (for example paired
    differences per condition; a ratio with ``estimate="ratio", reference_line=1``)."""
    _require(table, [y, estimate, low, high], "table")
    if table[y].duplicated().any():
        raise ValueError(f"table: several rows per {y!r}; filter to one metric/stratum first")
    labels = order_conditions([str(v) for v in table[y]]) if y == "condition" else [str(v) for v in table[y]]
    t = table.assign(**{y: table[y].astype(str)}).set_index(y).loc[labels]
    fig = Figure(figsize=(5.0, 0.45 * len(labels) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(labels))[::-1]
    est = t[estimate].to_numpy(dtype=np.float64)
    lo = t[low].to_numpy(dtype=np.float64)
    hi = t[high].to_numpy(dtype=np.float64)
    for p, e, a, b, lab in zip(pos, est, lo, hi, labels):
        colour = condition_colour(lab) if y == "condition" else "#4d4d4d"
        ax.errorbar([e], [p], xerr=[[e - a], [b - e]], fmt="o", color=colour, capsize=3, ms=5)
    if reference_line is not None:
        ax.axvline(reference_line, color="black", lw=0.8, ls="--")
    ax.set_yticks(pos)
    ax.set_yticklabels(labels)
    ax.set_xlabel(xlabel or estimate)
    return fig


def plot_item_distributions(
    images: np.ndarray,
    distributions: np.ndarray,
    class_names: Sequence[str],
    titles: Sequence[str] | None = None,
    highlight: np.ndarray | None = None,
    ncols: int = 4,
    label: str = "share of votes",
) -> Figure:
    """Each item as its image above a bar chart of its distribution over the classes.

    ``images`` (n, H, W) or (n, H, W, 3); ``distributions`` (n, C); ``highlight`` (n,) class per
    item drawn in red (e.g. the official label); at most ``ncols`` items per row so that class
    names stay legible in the book's column.
    """
    images = np.asarray(images)
    dists = np.asarray(distributions, dtype=np.float64)
    n = len(images)
    if dists.shape[0] != n:
        raise ValueError(f"distributions: expected {n} rows like images, got {dists.shape[0]}")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 3.2 * nrows), layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1.0, 1.1] * nrows)
    names = [str(c) for c in class_names]
    for k in range(n):
        r, c = divmod(k, ncols)
        ax_img = fig.add_subplot(grid[2 * r, c])
        ax_img.imshow(images[k], cmap=None if images[k].ndim == 3 else "gray_r", interpolation="nearest")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        if titles is not None:
            ax_img.set_title(str(titles[k]), fontsize=9)
        ax = fig.add_subplot(grid[2 * r + 1, c])
        colours = ["#4d4d4d"] * dists.shape[1]
        if highlight is not None:
            colours[int(highlight[k])] = "#d62728"
        ax.bar(np.arange(dists.shape[1]), dists[k], color=colours)
        ax.set_ylim(0, 1)
        ax.set_xticks(np.arange(dists.shape[1]))
        ax.set_xticklabels(names, rotation=90, fontsize=9)
        if c == 0:
            ax.set_ylabel(label)
        else:
            ax.set_yticklabels([])
    return fig


def plot_verdicts(
    verdicts: pd.DataFrame,
    label: str = "label",
    url: str | None = None,
    tooltip: str | None = "tooltip",
    width: float = 4.6,
) -> Figure:
    """Forest plot of tests in their own units: one panel per ``panel`` value (its title; the
    optional ``unit`` column is its x label, for example a relative difference in percent or a
    difference of correlations), one row
    per test with its estimate and 95% interval, the pre-registered margin as a grey band around
    0, and colour and marker by verdict. The row's name is written above its interval, so the
    intervals use the whole width (``width`` inches: readable on a phone).

    ``verdicts`` needs ``label``, ``panel``, ``estimate``, ``ci_low``, ``ci_high``, ``margin``
    and ``verdict`` (:func:`softlab.chapter.forest_rows` builds them from the verdict table).
    With ``url`` (a column of link targets) each row's name and marker link there in SVG output;
    with ``tooltip`` (a column of text) each row shows it on hover (:class:`SvgFigure` turns the
    row's group id ``row-<i>`` into an SVG ``<title>``).
    """
    from softlab.present import VERDICT_COLOURS, VERDICT_MARKERS, verdict_word

    _require(verdicts, [label, "panel", "estimate", "ci_low", "ci_high", "margin", "verdict"], "verdicts")
    rows = verdicts.reset_index(drop=True)
    panels = list(pd.unique(rows["panel"]))
    # a row's name is wrapped to the panel's width and kept out of the layout: a long name left to
    # constrained layout shrinks the panel to nothing (the 80–90-character names of the book's tests
    # did: "axes sizes collapsed to zero", intervals drawn 0.4 in wide in a 7.8 in figure)
    chars = max(20, int((width - 0.4) * 72 / (0.56 * 9)))  # 9-pt characters per line, with room to spare
    names = [textwrap.fill(str(x), chars, break_on_hyphens=False) for x in rows[label]]
    line_count = [n.count("\n") + 1 for n in names]
    row_height = {pv: 0.62 + 0.2 * (max(c for c, q in zip(line_count, rows["panel"]) if q == pv) - 1) for pv in panels}
    heights = [row_height[pv] * int((rows["panel"] == pv).sum()) + 0.75 for pv in panels]
    fig = Figure(figsize=(width, sum(heights) + 0.5), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, pv in zip(axes, panels):
        part = rows[rows["panel"] == pv]
        pos = np.arange(len(part))[::-1].astype(float)
        values = part[["ci_low", "ci_high", "estimate"]].to_numpy(dtype=np.float64)
        margins = part["margin"].to_numpy(dtype=np.float64)
        finite = np.concatenate(
            [values[np.isfinite(values)], margins[np.isfinite(margins)], -margins[np.isfinite(margins)]]
        )
        lim = float(np.abs(finite).max()) * 1.15 if finite.size else 1.0
        margin = float(np.nanmax(margins)) if np.isfinite(margins).any() else float("nan")
        if np.isfinite(margin):
            ax.axvspan(-margin, margin, color="#d9d9d9", alpha=0.6, lw=0)
        ax.axvline(0.0, color="black", lw=0.8)
        for p, (index, row) in zip(pos, part.iterrows()):
            word = verdict_word(row["verdict"])
            colour = VERDICT_COLOURS.get(word, "#000000")
            gid = f"row-{index}"
            link = str(row[url]) if url else None
            e, a, b = float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])
            hover = ax.axhspan(p - 0.45, p + 0.45, color="white", alpha=0.0, lw=0)
            hover.set_gid(gid)
            name = ax.text(
                -lim,
                p + 0.18,
                names[index],
                ha="left",
                va="bottom",
                fontsize=9,
                gid=gid + "-label",
                bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 0.6},
                in_layout=False,
            )
            if link:
                name.set_url(link)
            if np.isfinite(a) and np.isfinite(b):
                ax.plot([a, b], [p - 0.05, p - 0.05], color=colour, lw=1.8, solid_capstyle="butt", gid=gid + "-ci")
                for end in (a, b):
                    ax.plot([end], [p - 0.05], marker="|", color=colour, ms=8, mew=1.6)
            if np.isfinite(e):
                dot = ax.plot(
                    [e],
                    [p - 0.05],
                    marker=VERDICT_MARKERS.get(word, "o"),
                    ls="",
                    color=colour,
                    ms=7,
                    mec="white",
                    mew=0.6,
                )[0]
                dot.set_gid(gid + "-dot")
                if link:
                    dot.set_url(link)
            else:
                ax.text(0.0, p - 0.05, "  not estimable", va="center", ha="left", fontsize=9, color=colour)
        ax.set_yticks([])
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.6, len(part) - 0.1)
        ax.set_title(str(pv), fontsize=10, loc="left")
        if "unit" in part.columns:
            ax.set_xlabel(textwrap.fill(str(part["unit"].iloc[0]), 60), fontsize=9)
        ax.grid(axis="y", visible=False)
    present = {verdict_word(x) for x in rows["verdict"]}
    handles: list[Any] = [
        mpl.lines.Line2D([], [], marker=VERDICT_MARKERS.get(v, "o"), ls="", color=c, mec="white", ms=7, label=v)
        for v, c in VERDICT_COLOURS.items()
        if v in present
    ]
    handles.append(mpl.patches.Patch(color="#d9d9d9", label="within the margin"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9)
    if tooltip and tooltip in rows.columns:
        fig.softlab_tooltips = {f"row-{i}": str(t) for i, t in zip(rows.index, rows[tooltip])}  # type: ignore[attr-defined]
    return fig


class SvgFigure:
    """A figure shown as inline SVG in HTML (so links set with ``artist.set_url`` are clickable),
    and as PNG elsewhere. ``alt`` becomes the SVG's accessible name (``role="img"``,
    ``aria-label``, ``<title>``). The SVG scales to the width of the page's column.

    Matplotlib's SVG writer is made deterministic (fixed ids, no date), so re-executing a
    notebook gives the same markup.

    ``narrow``: the same content laid out for a phone (one column of panels, say). The page then
    holds both and ``book/_static/softlab.css`` shows the one that fits the screen (``narrow``
    below 577 px); its ids get the suffix ``-narrow`` (:func:`_suffix_ids`), so that the two
    drawings never share an id. The PNG (outside HTML) is always ``fig``.
    """

    def __init__(self, fig: Figure, alt: str, salt: str = "softlab", narrow: Figure | None = None):
        if not alt.strip():
            raise ValueError("alt: a figure needs a non-empty text alternative")
        self.fig, self.alt, self.salt, self.narrow = fig, alt.strip(), salt, narrow

    def svg(self, fig: Figure | None = None) -> str:
        """The inline SVG of ``fig`` (default: the main figure)."""
        import io
        import re
        from html import escape

        fig = self.fig if fig is None else fig
        buf = io.StringIO()
        with mpl.rc_context({"svg.hashsalt": self.salt, "svg.fonttype": "none", "svg.id": self.salt}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        text = buf.getvalue()
        text = text[text.index("<svg") :]  # drop the XML prolog and doctype: this goes inside HTML
        label = escape(self.alt, quote=True)
        text = re.sub(
            r"<svg ([^>]*?)width=\"([\d.]+)pt\" height=\"([\d.]+)pt\"",
            lambda m: (
                f'<svg {m.group(1)}role="img" aria-label="{label}" '
                f'style="width: min(100%, {float(m.group(2)) * 4 / 3:.0f}px); height: auto"'
            ),
            text,
            count=1,
        )
        text = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + f"<title>{escape(self.alt)}</title>", text, count=1)
        # hover text: a group whose id has a tooltip gets it as its SVG <title> (plot_verdicts)
        tooltips: dict[str, str] = getattr(fig, "softlab_tooltips", {})
        for gid, tip in tooltips.items():
            group = re.compile(rf'<g id="{re.escape(gid)}(?:-label|-ci|-dot)?"[^>]*>')
            text = "".join(
                part + (f"<title>{escape(tip)}</title>" if group.fullmatch(part) else "")
                for part in re.split(rf"({group.pattern})", text)
            )
        return text

    def _repr_html_(self) -> str:
        if self.narrow is None:
            return f'<div class="softlab-svg-figure">{self.svg()}</div>'
        return (
            '<div class="softlab-svg-figure softlab-responsive">'
            f'<div class="softlab-wide">{self.svg()}</div>'
            f'<div class="softlab-narrow">{_suffix_ids(self.svg(self.narrow), "-narrow")}</div></div>'
        )

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        return buf.getvalue()


def _suffix_ids(svg: str, suffix: str) -> str:
    """``svg`` with ``suffix`` appended to every id it defines and to every reference to one
    (``url(#id)``, ``href="#id"``), so that two drawings can share a page without sharing an id
    (matplotlib numbers its groups ``figure_1``, ``axes_1`` … the same way in every figure)."""
    import re

    ids = set(re.findall(r' id="([^"]+)"', svg))

    def ref(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{m.group(1)}{name}{suffix if name in ids else ''}{m.group(3)}"

    svg = re.sub(r'( id=")([^"]+)(")', lambda m: f"{m.group(1)}{m.group(2)}{suffix}{m.group(3)}", svg)
    svg = re.sub(r"(url\(#)([^)]+)(\))", ref, svg)
    return re.sub(r'(href="#)([^"]+)(")', ref, svg)


def plot_image_grid(
    images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 8, cell: float | None = None
) -> Figure:
    """Images in a grid at most ``ncols`` wide (grey-scale (n, H, W) or colour (n, H, W, 3)),
    each with an optional title; sized to the book's column."""
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    cell = cell or COLUMN_WIDTH_IN / ncols
    fig = Figure(
        figsize=(COLUMN_WIDTH_IN, (cell + (0.45 if titles is not None else 0.0)) * nrows), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, ax in zip(range(n), axes.flat):
        ax.imshow(images[k], cmap=None if images[k].ndim == 3 else "gray_r", interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=9)
    return fig


def plot_condition_targets(
    targets: dict[str, np.ndarray], class_names: Sequence[str], title: str = "", marked: dict[str, int] | None = None
) -> Figure:
    """One item's training target under every condition, as a table-like heat map: one row per
    condition (:func:`order_conditions` order, with its colour as a swatch), one column per class
    (full class names), each cell printing its probability. ``marked`` names classes to point out
    under the class axis with a short word, e.g. ``{"official": 4, "majority": 2}``."""
    conds = order_conditions(list(targets))
    matrix = np.vstack([np.asarray(targets[c], dtype=np.float64) for c in conds])
    n_rows, n_cols = matrix.shape
    if len(class_names) != n_cols:
        raise ValueError(f"class_names: expected {n_cols} names like the targets, got {len(class_names)}")
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.3 * n_rows + 1.9), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[0.25, n_cols])
    swatch = fig.add_subplot(grid[0, 0])
    ax = fig.add_subplot(grid[0, 1])
    swatch.imshow(np.array([[to_rgb(condition_colour(c))] for c in conds]), aspect="auto")
    swatch.set_xticks([])
    swatch.set_yticks(np.arange(n_rows))
    swatch.set_yticklabels(conds)
    swatch.tick_params(length=0)
    swatch.grid(False)
    for spine in swatch.spines.values():
        spine.set_visible(False)
    ax.imshow(matrix, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = matrix[i, j]
            if v >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{v:.2f}".lstrip("0") if v < 1 else "1",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if v > 0.55 else "black",
                )
    ax.set_yticks([])
    ax.set_xticks(np.arange(n_cols))
    names = [str(c) for c in class_names]
    for label, k in (marked or {}).items():
        names[int(k)] = f"{names[int(k)]}\n({label})"
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="both", length=0)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_condition_intervals(
    summary: pd.DataFrame,
    facet: str = "dataset",
    estimate: str = "estimate",
    low: str = "ci_low",
    high: str = "ci_high",
    marker_by: str | None = None,
    xlabel: str = "",
    reference_line: float | None = None,
    facet_names: dict[str, str] | None = None,
) -> Figure:
    """Estimates with intervals per condition, one row per condition (labelled, in its colour;
    no colour legend needed) and one panel per ``facet`` value side by side, each with its own
    x-axis and one shared x label. With ``marker_by`` (a column with at most two values), the first value is drawn as a
    filled and the second as an open marker, nudged apart, with one shared legend.
    """
    _require(summary, ["condition", facet, estimate, low, high], "summary")
    facets = list(dict.fromkeys(summary[facet]))
    conds = order_conditions([str(c) for c in summary["condition"]])
    kinds = list(dict.fromkeys(summary[marker_by])) if marker_by else [None]
    if len(kinds) > 2:
        raise ValueError(f"marker_by: at most two values, got {kinds}")
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.27 * len(conds) + 1.5), layout="constrained")
    axes = fig.subplots(1, len(facets), squeeze=False, sharey=True)[0]
    pos = {c: float(i) for i, c in enumerate(conds[::-1])}
    for ax, fv in zip(axes, facets):
        part = summary[summary[facet] == fv]
        for k, kind in enumerate(kinds):
            sub = part if kind is None else part[part[marker_by] == kind]
            nudge = 0.0 if kind is None or len(kinds) == 1 else (0.16 if k == 0 else -0.16)
            for row in _rows(sub):
                cond = str(row.condition)
                e, a, b = (float(getattr(row, c)) for c in (estimate, low, high))
                colour = condition_colour(cond)
                y = pos[cond] + nudge
                if np.isfinite(a) and np.isfinite(b):
                    ax.plot([a, b], [y, y], color=colour, lw=1.4)
                ax.plot([e], [y], marker="o", ls="", ms=5, color=colour, mfc=colour if k == 0 else "white", mew=1.2)
        if reference_line is not None:
            ax.axvline(reference_line, color="black", lw=0.8)
        ax.set_title((facet_names or {}).get(str(fv), str(fv)))
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(3))
    axes[0].set_yticks(list(pos.values()))
    axes[0].set_yticklabels(list(pos.keys()))
    axes[0].set_ylim(-0.6, len(conds) - 0.4)
    if xlabel:
        fig.supxlabel(xlabel, fontsize=10)  # one label for all panels
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(wspace=0.06)
    if marker_by:
        handles = [
            mpl.lines.Line2D(
                [], [], marker="o", ls="", color="#4d4d4d", mfc="#4d4d4d" if k == 0 else "white", label=str(kind)
            )
            for k, kind in enumerate(kinds)
        ]
        # above the panels: below them it would cover the shared x label
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9)
    return fig


#: Colours of the variance sources of :func:`plot_variance_decomposition`.
SOURCE_COLOURS: dict[str, str] = {"init": "#4d4d4d", "split": "#1f77b4", "teacher": "#ff7f0e"}


def plot_variance_decomposition(table: pd.DataFrame) -> Figure:
    """Where the seed-to-seed variance comes from: one horizontal bar per (arm, condition, metric)
    of :func:`softlab.experiment.variance_decomposition`'s table, split into the shares of the
    initialisation, the split and the teacher (a negative increment — sampling noise — is drawn
    as 0 and marked with its value); the label gives the full design's standard deviation."""
    _require(table, ["arm", "condition", "metric", "stratum", "source", "share", "sd", "seeds"], "table")
    keys = list(dict.fromkeys(zip(table["arm"], table["condition"], table["metric"], table["stratum"])))
    # labels in words are long (a metric's plain name): arm · condition, then the metric, then the
    # SD on lines of their own, so the bars keep the column's width
    labels = []
    for key in keys:
        part = table[(table["arm"] == key[0]) & (table["condition"] == key[1]) & (table["metric"] == key[2])]
        part = part[part["stratum"] == key[3]]
        lines = [
            f"{key[0]} · {key[1]}",
            *textwrap.wrap(f"{key[2]} ({key[3]})", 34),
            f"SD {fmt_number(float(part['sd'].iloc[-1]))}, {int(part['seeds'].iloc[-1])} seeds",
        ]
        labels.append("\n".join(lines))
    n_lines = sum(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.19 * n_lines + 0.25 * len(keys) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    for row, key in enumerate(keys):
        part = table[
            (table["arm"] == key[0])
            & (table["condition"] == key[1])
            & (table["metric"] == key[2])
            & (table["stratum"] == key[3])
        ]
        left = 0.0
        y = len(keys) - 1 - row
        for r in _rows(part):
            width = max(float(r.share), 0.0) if np.isfinite(r.share) else 0.0
            ax.barh(y, width, left=left, color=SOURCE_COLOURS.get(str(r.source), "#bbbbbb"), edgecolor="white")
            if np.isfinite(r.share) and r.share < 0:
                ax.text(
                    left, y, f" {r.source} {fmt_number(r.share, 2, sign=True, percent=True)}", va="center", fontsize=9
                )
            left += width
    ax.set_yticks(np.arange(len(keys))[::-1])
    ax.set_yticklabels(labels)
    ax.set_xlim(0, max(1.0, ax.get_xlim()[1]))
    ax.set_xlabel("share of the seed-to-seed variance\n(a full re-run of the pipeline = 1)")
    handles = [Patch(color=c, label=s) for s, c in SOURCE_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    return fig
