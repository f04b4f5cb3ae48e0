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

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize, to_hex, to_rgb
from matplotlib.figure import Figure

__all__ = [
    "SHAPE_ORDER",
    "MODE_ORDER",
    "STRATUM_ORDER",
    "SHAPE_COLOURS",
    "set_style",
    "condition_colour",
    "condition_palette",
    "order_conditions",
    "plot_reliability",
    "plot_data_maps",
    "plot_metric_by_stratum",
    "plot_seed_spread",
    "plot_intervals",
    "plot_item_distributions",
    "plot_verdicts",
    "plot_image_grid",
    "plot_condition_targets",
    "COLUMN_WIDTH_IN",
]

#: Width (inches) of a figure that fills the book's ~700 px content column at 100 dpi.
COLUMN_WIDTH_IN: float = 7.0

SHAPE_ORDER: tuple[str, ...] = ("hard", "smooth", "smooth-mass", "synthetic", "human-shuffled", "human")
MODE_ORDER: tuple[str, ...] = ("original", "human")
STRATUM_ORDER: tuple[str, ...] = ("all", "easy", "medium", "hard", "mode-shifted")
SHAPE_COLOURS: dict[str, str] = {
    "hard": "#4d4d4d",
    "smooth": "#1f77b4",
    "smooth-mass": "#17becf",
    "synthetic": "#ff7f0e",
    "human-shuffled": "#9467bd",
    "human": "#2ca02c",
    "generator": "#8c564b",
}
_FALLBACK = ("#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#d62728", "#8c564b")
_ORIGINAL_TINT = 0.45  # fraction of white mixed into the hue for the "original" mode


def set_style() -> None:
    """Apply the project's one style: seaborn white grid, 100 dpi, text ≥ 9 pt at the size the
    book shows a :data:`COLUMN_WIDTH_IN`-wide figure."""
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
        rgb = np.array(to_rgb(base))
        return to_hex(rgb + (1.0 - rgb) * _ORIGINAL_TINT)
    return to_hex(base)


def order_conditions(conditions: Sequence[str]) -> list[str]:
    """Distinct conditions sorted by mode (original, human) then shape (:data:`SHAPE_ORDER`);
    unknown modes/shapes last, alphabetically."""

    def key(c: str) -> tuple:
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
    table: pd.DataFrame, facet: str = "condition", max_cols: int = 5, title: str | None = None
) -> Figure:
    """Reliability diagrams, one panel per value of ``facet``.

    ``table`` has ``bin_lower, bin_upper, mean_confidence, accuracy, count`` and the ``facet``
    column (e.g. :func:`softlab.evaluation.reliability_frame`). Rows of several runs in one panel
    are pooled per bin (count-weighted). Bars show accuracy per bin, red outlines the gap to the
    mean confidence; the dashed diagonal is perfect calibration. Panel titles give the pooled ECE
    ``Σ_b (n_b/N)|acc_b − conf_b|``.
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
        ax.set_title(f"{val}\nECE {pooled_ece:.3f} (n={int(n)})")
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
) -> Figure:
    """Data maps (variability on x, confidence on y) coloured by ``hue`` (default human entropy),
    one panel per ``facet`` value.

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
        fig.colorbar(
            mappable,
            ax=axes[: len(values)].tolist(),
            label=hue.replace("_", " ") + (" (nats)" if "entropy" in hue else ""),
        )
    return fig


def plot_metric_by_stratum(
    summary: pd.DataFrame,
    estimate: str = "estimate",
    low: str = "ci_low",
    high: str = "ci_high",
    x: str = "stratum",
    hue: str = "condition",
    ylabel: str | None = None,
) -> Figure:
    """Point estimates with interval error bars per stratum and condition.

    ``summary`` has ``x``, ``hue``, ``estimate``, ``low``, ``high`` columns — e.g.
    :func:`softlab.stats.bootstrap_summary` (``estimate``) or :func:`softlab.stats.paired_differences`
    (pass ``estimate="difference"``). With a ``metric`` column holding several metrics, one panel
    per metric. Conditions are dodged sideways within each stratum.
    """
    _require(summary, [x, hue, estimate, low, high], "summary")
    metrics = list(pd.unique(summary["metric"])) if "metric" in summary.columns else [None]
    n_x = summary[x].nunique()
    fig, axes = _grid(len(metrics), 3, (max(4.2, 1.2 * n_x), 3.0))
    for ax, metric in zip(axes, metrics):
        part = summary if metric is None else summary[summary["metric"] == metric]
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
            ax.errorbar(
                pos,
                est_a,
                yerr=np.clip(np.vstack([est_a - lo_a, hi_a - est_a]), 0.0, None),
                fmt="o",
                ms=4,
                capsize=2,
                lw=1,
                color=colour,
                label=str(hv),
            )
        if estimate == "difference":
            ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel or (metric if metric is not None else estimate))
        if metric is not None:
            ax.set_title(str(metric))
    legend: dict[str, object] = {}
    for ax in axes[: len(metrics)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend.keys()), loc="outside right upper", fontsize="small")
    return fig


def plot_seed_spread(
    df: pd.DataFrame,
    metric: str | None = None,
    by: str = "condition",
    average_folds: bool = True,
) -> Figure:
    """Spread of a metric across seeds: a box and the individual seeds per ``by`` value.

    ``df`` is the tidy metric table (columns ``seed``, ``value``, ``by``; ``fold`` and ``metric``
    optional). Pick one ``metric`` when the table has several. With ``average_folds`` each seed's
    value is its mean over folds, so one point is one seed.
    """
    _require(df, ["seed", "value", by], "df")
    if "metric" in df.columns:
        if metric is None:
            if df["metric"].nunique() > 1:
                raise ValueError(f"metric: df holds several metrics {sorted(df['metric'].unique())}; pick one")
            metric = str(df["metric"].iloc[0])
        df = df[df["metric"] == metric]
        if df.empty:
            raise ValueError(f"metric: no rows with metric {metric!r}")
    data = df.dropna(subset=["value"])
    if average_folds and "fold" in data.columns:
        data = data.groupby([by, "seed"], as_index=False)["value"].mean()
    order = order_conditions([str(v) for v in pd.unique(data[by])]) if by == "condition" else list(pd.unique(data[by]))
    palette = condition_palette(order) if by == "condition" else None
    fig = Figure(figsize=(max(3.5, 0.9 * len(order) + 1.5), 3.2), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    groups = [data.loc[data[by].astype(str) == str(v), "value"].to_numpy(dtype=np.float64) for v in order]
    boxes = ax.boxplot(
        groups,
        positions=np.arange(len(order)),
        widths=0.6,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black"},
    )
    for patch, v in zip(boxes["boxes"], order):
        patch.set_facecolor(palette[v] if palette else "#bbbbbb")
        patch.set_alpha(0.5)
    for i, vals in enumerate(groups):
        ax.scatter(i + rng.uniform(-0.15, 0.15, size=vals.size), vals, s=12, color="black", zorder=3)
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels([str(v) for v in order])
    ax.set_ylabel(metric or "value")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=45)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
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
    """Forest plot: one row per ``y`` value with its estimate and interval (e.g. the output of
    :func:`softlab.stats.paired_differences` or :func:`softlab.stats.variance_ratio` with
    ``estimate="ratio", reference_line=1``)."""
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
    short = [str(c)[:9] for c in class_names]
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
        ax.set_xticklabels(short, rotation=90, fontsize=9)
        if c == 0:
            ax.set_ylabel(label)
        else:
            ax.set_yticklabels([])
    return fig


def plot_verdicts(verdicts: pd.DataFrame, label: str = "label") -> Figure:
    """Forest plot of tests in units of their pre-registered margin: one row per test, the
    estimate and 95% interval divided by the smallest effect size of interest (so ±1 marks
    the equivalence margin on every row), coloured by verdict.

    ``verdicts`` needs ``label``, ``scaled_estimate``, ``scaled_low``, ``scaled_high`` and
    ``verdict`` columns (:func:`softlab.inference.scaled_effects` adds the scaled ones).
    """
    from softlab.present import VERDICT_COLOURS, verdict_word

    _require(verdicts, [label, "scaled_estimate", "scaled_low", "scaled_high", "verdict"], "verdicts")
    rows = verdicts.reset_index(drop=True)
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.42 * len(rows) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(rows))[::-1]
    ax.axvspan(-1, 1, color="#4575b4", alpha=0.08, lw=0)
    ax.axvline(0.0, color="black", lw=0.8)
    for p, row in zip(pos, rows.itertuples(index=False)):
        colour = VERDICT_COLOURS.get(verdict_word(row.verdict), "#000000")
        e, a, b = float(row.scaled_estimate), float(row.scaled_low), float(row.scaled_high)
        if np.isfinite(e):
            xerr = np.clip([[e - a], [b - e]], 0, None) if np.isfinite(a) and np.isfinite(b) else None
            ax.errorbar([e], [p], xerr=xerr, fmt="o", color=colour, capsize=3, ms=6, lw=1.6)
    ax.set_yticks(pos)
    ax.set_yticklabels([str(v) for v in rows[label]])
    ax.set_xlabel("effect in the claimed direction, in units of the pre-registered margin (shaded: within it)")
    finite = rows[["scaled_low", "scaled_high", "scaled_estimate"]].to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lim = max(2.0, float(np.abs(finite).max()) * 1.1) if finite.size else 2.0
    ax.set_xlim(-min(lim, 12), min(lim, 12))
    handles = [
        mpl.lines.Line2D([], [], marker="o", ls="", color=c, label=v)
        for v, c in VERDICT_COLOURS.items()
        if v in {verdict_word(x) for x in rows["verdict"]}
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=9, frameon=True)
    return fig


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


def plot_condition_targets(targets: dict[str, np.ndarray], class_names: Sequence[str], title: str = "") -> Figure:
    """One item's training target under every condition: a bar chart per condition, modes in
    rows and shapes in columns (conditions in :func:`order_conditions` order)."""
    conds = order_conditions(list(targets))
    modes = [m for m in MODE_ORDER if any(c.startswith(m + "/") for c in conds)]
    shapes = [s for s in SHAPE_ORDER if any(c.endswith("/" + s) for c in conds)]
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 2.2 * len(modes) + 0.6), layout="constrained")
    axes = fig.subplots(len(modes), len(shapes), squeeze=False, sharey=True)
    short = [str(c)[:3] for c in class_names]
    for i, mode in enumerate(modes):
        for j, shape in enumerate(shapes):
            ax = axes[i, j]
            name = f"{mode}/{shape}"
            if name not in targets:
                ax.axis("off")
                continue
            t = np.asarray(targets[name], dtype=np.float64)
            ax.bar(np.arange(len(t)), t, color=condition_colour(name))
            ax.set_ylim(0, 1)
            ax.set_xticks(np.arange(len(t)))
            ax.set_xticklabels(short, rotation=90, fontsize=8)
            ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
