"""One call sets up a chapter: ``book = open_book(params_name, overrides)`` — the parameters from
``params/*.yml``, the results, the display names and the small computations several chapters share.

A notebook's ``parameters`` cell holds only the set's name and its overrides — two
assignments, ``params_name = "default"`` (a set in ``params/``) and ``overrides = {}`` (for
example ``{"seeds": 3}``) — and its setup is ``book = open_book(params_name, overrides)``.
``softlab run --params X --set k=v`` injects ``params_name = "X"`` and
``overrides = {"k": v}`` (:func:`injected_parameters`), so the defaults live in ``params/*.yml``
only.

What lives here, once, instead of in several notebooks: the seed-level interval
(:func:`seed_interval`, :func:`seed_intervals`), the pooled reliability bins against the primary
test's soft reference (:func:`soft_reliability`), display names (:func:`condition_label` names a
synthetic arm's conditions after its reference, ``generator/…``; :data:`METRIC_NAMES`, the one
mapping of metric ids to plain names), the one-line run summary (:meth:`Book.setup_line`,
listing the arms that actually ran) and the notice of a skipped arm, shown once and without
machine paths (:func:`skip_notice`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from softlab.arms import arm_spec, known_arms, verdict_arms
from softlab.params import ParameterError, load_params
from softlab.present import (
    ARM_NAMES,
    METRIC_NAMES,
    REFERENCE_NAMES,
    arm_title,
    arm_titles,
    condition_label,
    fmt_number,
    metric_name,
    run_description,
    shown_condition,
)

__all__ = [
    "CLAIM_TOPICS",
    "METRIC_NAMES",
    "REFERENCE_NAMES",
    "Book",
    "DataMap",
    "ShownGrid",
    "arm_title",
    "arm_titles",
    "condition_label",
    "data_map",
    "data_map_frame",
    "display_conditions",
    "for_display",
    "forest_rows",
    "injected_parameters",
    "key_results",
    "metric_name",
    "open_book",
    "record_result",
    "resolve_book_parameters",
    "robustness_findings",
    "seed_interval",
    "seed_intervals",
    "skip_notice",
    "soft_reliability",
]

# --------------------------------------------------------------------------- parameters


def resolve_book_parameters(params_name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full parameter set a chapter runs with: ``params/default.yml`` (every parameter's
    default), then the named set, then ``overrides``. A name that is not a set in ``params/``
    (a set given as a file path to ``softlab run``) reads its values from ``overrides`` alone."""
    values = dict(load_params("default"))
    try:
        values.update(load_params(params_name))
    except ParameterError:
        if not overrides:
            raise
    values.update(dict(overrides or {}))
    values["params_name"] = str(values.get("params_name", params_name)) if overrides else str(params_name)
    unknown = sorted(set(values) - set(load_params("default")))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {unknown}; params/default.yml declares: {sorted(load_params('default'))}"
        )
    return values


def injected_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """What ``softlab run`` injects into a notebook for the full parameter set ``values``: the
    set's name and the values that differ from it (everything, when the name is not a set in
    ``params/``). :func:`resolve_book_parameters` of the result gives ``values`` back."""
    name = str(values.get("params_name", "custom"))
    base = dict(load_params("default"))
    try:
        base.update(load_params(name))
    except ParameterError:
        return {"params_name": name, "overrides": dict(values)}
    return {"params_name": name, "overrides": {k: v for k, v in values.items() if k not in base or base[k] != v}}


# --------------------------------------------------------------------------- display names


def display_conditions(df: pd.DataFrame, column: str = "condition", arm: str | None = None) -> pd.DataFrame:
    """``df`` with its ``column`` of condition ids renamed by :func:`condition_label`, per row's
    ``dataset``/``arm`` column (or for the one ``arm`` given)."""
    out = df.copy()
    if arm is not None:
        arms: Iterable[Any] = [arm] * len(out)
    else:
        arm_col = next((c for c in ("dataset", "arm") if c in out.columns), None)
        arms = out[arm_col] if arm_col else ["?"] * len(out)
    out[column] = [condition_label(c, REFERENCE_NAMES.get(str(a), "human")) for c, a in zip(out[column], arms)]
    return out


def for_display(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a table or figure shows it: conditions named per arm (:func:`display_conditions`,
    for a ``condition`` column and, where present, a ``comparator`` column), arm ids
    (``dataset``/``arm``) by their book names and metric ids by their plain names
    (:func:`metric_name`). The data's own ids are not touched (a copy is returned)."""
    from softlab.present import arm_name

    out = df.copy()
    arm_col = next((c for c in ("dataset", "arm") if c in out.columns), None)
    for column in ("condition", "comparator"):
        if column in out.columns:
            arms: Iterable[Any] = out[arm_col] if arm_col else ["?"] * len(out)
            out[column] = [shown_condition(c, a) for c, a in zip(out[column], arms)]
    if arm_col:
        out[arm_col] = [arm_name(str(a)) for a in out[arm_col]]
    if "metric" in out.columns:
        out["metric"] = [metric_name(str(m)) for m in out["metric"]]
    return out


_PATH = re.compile(r"(?<![\w.])(?:~|/)(?:[\w.+@-]+/)*[\w.+@-]+/?")


def skip_notice(arm: str, reason: str) -> str:
    """One Markdown paragraph saying that ``arm`` was skipped and what to do, with every machine
    path replaced by the setting that names it (``$SOFTLAB_DATA_DIR/…``) or its last part."""
    from softlab.paths import cache_dir, data_dir

    text = str(reason)
    for root, name in ((data_dir(), "$SOFTLAB_DATA_DIR"), (cache_dir(), "$SOFTLAB_CACHE_DIR")):
        text = text.replace(str(root), name)
    text = text.replace(str(Path.home()), "~")
    text = _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text) if os.sep == "/" else text
    return f"**The {ARM_NAMES.get(arm, arm)} arm was skipped here:** {text}"


# --------------------------------------------------------------------------- shared computations


def seed_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> pd.Series:
    """Mean over seeds with a ``level`` *t* interval (NaN bounds for one seed):
    ``estimate, ci_low, ci_high``."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean()) if v.size else float("nan")
    if v.size > 1:
        half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    else:
        half = float("nan")
    return pd.Series({"estimate": mean, "ci_low": mean - half, "ci_high": mean + half})


def seed_intervals(frame: pd.DataFrame, by: Sequence[str], value: str = "value") -> pd.DataFrame:
    """:func:`seed_interval` of ``value`` per group of ``by`` (one row per group)."""
    if frame.empty:
        return pd.DataFrame(columns=[*by, "estimate", "ci_low", "ci_high"])
    grouped = frame.groupby(list(by))[value]
    return grouped.apply(lambda v: seed_interval(v.to_numpy())).unstack().reset_index()


def soft_reliability(preds: Any, conditions: Sequence[str], stratum: str = "hard", n_bins: int = 15) -> pd.DataFrame:
    """Reliability bins of the pooled out-of-fold predictions of ``conditions`` (all seeds pooled
    per bin) against the **soft reference** — the primary calibration test's: the "accuracy" of
    item *i* is ``h_i[ŷ_i]``, the chance that a random annotator agrees with the prediction.

    ``preds`` is a :class:`softlab.inference.ArmPredictions`. Columns: ``condition, bin_lower,
    bin_upper, mean_confidence, accuracy, count`` (input for :func:`softlab.plots.plot_reliability`).
    """
    mask = np.asarray(preds.strata[stratum], dtype=bool)
    ref = np.asarray(preds.reference, dtype=np.float64)[mask]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = []
    for cond in conditions:
        if cond not in preds.probs:
            continue
        p = np.asarray(preds.probs[cond], dtype=np.float64)[:, mask]  # (S, I, C)
        conf = p.max(axis=-1).ravel()
        hit = np.take_along_axis(np.broadcast_to(ref, p.shape), p.argmax(axis=-1)[..., None], axis=-1).ravel()
        which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
        for b in range(n_bins):
            sel = which == b
            n = int(sel.sum())
            rows.append(
                {
                    "condition": cond,
                    "bin_lower": edges[b],
                    "bin_upper": edges[b + 1],
                    "mean_confidence": float(conf[sel].mean()) if n else float("nan"),
                    "accuracy": float(hit[sel].mean()) if n else float("nan"),
                    "count": n,
                }
            )
    return pd.DataFrame(rows, columns=["condition", "bin_lower", "bin_upper", "mean_confidence", "accuracy", "count"])


# --------------------------------------------------------------------------- the answer, in natural units

#: What each claim's primary tests test, in words (rows and panels are named by it).
CLAIM_TOPICS: dict[int, str] = {
    1: "Calibration on hard items",
    2: "Stability across seeds",
    3: "Confidence follows human uncertainty",
    4: "Accuracy",
}


#: Words for the primary tests that share a claim and an arm (their ids otherwise, dashes as spaces).
TEST_WORDS: dict[str, str] = {
    "soft-calibration-hard-vs-best-ts": "raw vs the best +ts",
    "soft-calibration-hard-both-scaled": "both temperature-scaled",
    "heldout-max-probability-entropy-vs-synthetic": "maximum-probability confidence",
    "synthetic-does-not-mirror": "synthetic labels do not mirror",
}


def _claim_topic(claim: Any) -> str:
    try:
        return CLAIM_TOPICS.get(int(claim), f"Claim {claim}")
    except (TypeError, ValueError):
        return f"Claim {claim}"


def _latest_primary(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Every primary test of the latest claims version, co-primaries included
    (:func:`softlab.present.primary_family`), in claim order; ``test_label`` adds the test's
    name where a claim has several primary tests on one arm."""
    from softlab.present import primary_family

    part = primary_family(verdicts).copy()
    if (
        "family" not in part.columns
        and "registered_version" in part.columns
        and part["registered_version"].notna().any()
    ):
        part = part[part["registered_version"] == part["registered_version"].max()]
    part = part.reset_index(drop=True)
    if "test" in part.columns and len(part):
        several = part.groupby([part["claim"].astype(str), part["arm"]])["test"].transform("nunique") > 1
        part["test_label"] = [
            f" ({TEST_WORDS.get(str(t), str(t).replace('-', ' '))})" if many else ""
            for t, many in zip(part["test"], several)
        ]
        order = part["claim"].astype(str).map(lambda c: int(c) if c.isdigit() else 99)
        part = part.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)
    else:
        part["test_label"] = ""
    return part


def _is_relative(row: Any) -> bool:
    scale = row.get("margin_scale")
    if isinstance(scale, str) and scale:
        return scale == "relative"
    return str(row.get("kind", "")) == "variance_ratio"


def _signed(x: float) -> str:
    return fmt_number(float(x), sign=True)


def _num(x: float) -> str:
    return fmt_number(float(x))


def _pct(x: float) -> str:
    return fmt_number(float(x), sign=True, percent=True)


def _difference_text(row: Any) -> str:
    """The effect with its 95% interval in the metric's units (a variance ratio as a ratio), and
    for tests with a relative margin the relative difference in percent after it."""
    if str(row.get("kind", "")) == "variance_ratio":
        return f"ratio {_num(row['estimate'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
    text = f"{_signed(row['estimate'])} [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]"
    if _is_relative(row) and np.isfinite(float(row.get("relative", np.nan))):
        text += f" ({_pct(row['relative'])} [{_pct(row['relative_ci_low'])}, {_pct(row['relative_ci_high'])}])"
    return text


def _shown(condition: Any, arm: Any) -> str:
    return shown_condition(condition, arm)


def _means_text(row: Any) -> str:
    """``condition mean vs comparator mean`` (a bound test's comparator is its bound: no mean)."""
    theirs = f" {_num(row['mean_comparator'])}" if np.isfinite(float(row.get("mean_comparator", np.nan))) else ""
    comparator = _shown(row["comparator"], row["arm"]).replace("|value|", "|ρ|").replace("<=", "≤")
    return f"{_shown(row['condition'], row['arm'])} {_num(row['mean_condition'])} vs {comparator}{theirs}"


def key_results(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The front page's table: one row per primary test (the latest registered version), named
    by what it tests, with both sides' means in the metric's own units, the difference with its
    95% interval (and the relative difference where the margin is relative) and the verdict."""
    from softlab.present import arm_name, fmt_p

    rows = []
    for _, row in _latest_primary(verdicts).iterrows():
        rows.append(
            {
                "what is tested": f"{_claim_topic(row['claim'])}{row['test_label']} · {arm_name(row['arm'])}",
                "condition vs comparator (means)": _means_text(row),
                "difference [95% CI]": _difference_text(row),
                "p (Holm)": fmt_p(row.get("p_adjusted")),
                "verdict": row["verdict"],
            }
        )
    return pd.DataFrame(
        rows,
        columns=["what is tested", "condition vs comparator (means)", "difference [95% CI]", "p (Holm)", "verdict"],
    )


def forest_rows(verdicts: pd.DataFrame, url: Mapping[int, str] | None = None) -> pd.DataFrame:
    """The rows :func:`softlab.plots.plot_verdicts` draws: every primary test in its metric's
    own units (relative differences in percent), one panel per claim and metric, each row named
    by its arm and comparison, with a hover text (test, means, estimate, interval, p, verdict)
    and, with ``url`` (claim -> page#anchor), a link to its evidence."""
    from softlab.present import arm_name, fmt_p

    out = []
    for _, row in _latest_primary(verdicts).iterrows():
        relative = _is_relative(row)
        ratio = str(row.get("kind", "")) == "variance_ratio"
        scale = 100.0 if relative else 1.0
        est, lo, hi = (
            (row["relative"], row["relative_ci_low"], row["relative_ci_high"])
            if relative
            else (row["estimate"], row["ci_low"], row["ci_high"])
        )
        what = metric_name(str(row["metric"]))
        unit = (
            f"{'variance of ' + what + ' across seeds' if ratio else what}: difference in % of the comparator"
            if relative
            else f"{what}: difference"
        )
        topic = _claim_topic(row["claim"])
        condition = _shown(row["condition"], row["arm"])
        comparator = _shown(row["comparator"], row["arm"]).replace("|value|", "|ρ|").replace("<=", "≤")
        tip = (
            f"{topic}, {arm_name(row['arm'])}: {_means_text(row)}; difference {_difference_text(row)}; p (Holm) "
            f"{fmt_p(row.get('p_adjusted'))}; verdict: {row['verdict']}"
        )
        out.append(
            {
                "claim": row["claim"],
                "panel": topic,
                "unit": unit,
                "label": f"{arm_name(row['arm'])}: {condition} vs {comparator}{row['test_label']}",
                "estimate": scale * float(est),
                "ci_low": scale * float(min(lo, hi)),
                "ci_high": scale * float(max(lo, hi)),
                "margin": scale * float(row["margin"]) if np.isfinite(float(row["margin"])) else float("nan"),
                "verdict": row["verdict"],
                "tooltip": tip,
                "url": (url or {}).get(int(row["claim"]), "") if str(row["claim"]).isdigit() else "",
            }
        )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- the interactive data map


def _png_data_uri(image: np.ndarray, scale: int = 4) -> str:
    """A (H, W) or (C, H, W) image in [0, 1] as a ``data:image/png;base64,...`` URI."""
    import base64
    import io

    from PIL import Image

    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    pixels = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _top(dist: np.ndarray, classes: Sequence[str], k: int = 3) -> str:
    order = np.argsort(-dist, kind="stable")[:k]
    return ", ".join(f"{classes[c]} {fmt_number(float(dist[c]), 2, percent=True)}" for c in order if dist[c] >= 0.005)


def data_map_frame(book: Book, arm: str, condition: str = "human/human", max_items: int = 1500) -> pd.DataFrame:
    """One row per held-out item of ``arm`` (a seeded subset of at most ``max_items``): its
    held-out cartography coordinates under ``condition`` (mean over seeds of the confidence in
    the reference mode and of its variability over epochs), the reference entropy, the image as
    a PNG data URI, and in words the reference distribution (the votes' shares) and the model's
    predicted distribution (final probabilities, mean over seeds)."""
    from softlab.data import entropy
    from softlab.report import evaluated_items

    preds = book.results.predictions[arm]
    prepared = book.prepared[arm]
    extras = preds.item_arrays.get(condition, {})
    if "heldout_confidence" not in extras:
        return pd.DataFrame()
    pool = np.asarray(prepared.annotated)[evaluated_items(prepared)]
    n = len(pool)
    pick = np.sort(np.random.default_rng(0).choice(n, size=min(n, max_items), replace=False))
    reference = np.asarray(preds.reference, dtype=np.float64)
    predicted = np.asarray(preds.probs[condition], dtype=np.float64).mean(axis=0)
    classes = list(prepared.classes)
    return pd.DataFrame(
        {
            "item": pool[pick],
            "confidence": np.asarray(extras["heldout_confidence"], dtype=np.float64).mean(axis=0)[pick],
            "variability": np.asarray(extras["heldout_variability"], dtype=np.float64).mean(axis=0)[pick],
            "entropy": entropy(reference[pick]),
            "official": [classes[int(c)] for c in np.asarray(preds.official)[pick]],
            "reference": [_top(reference[i], classes) for i in pick],
            "predicted": [_top(predicted[i], classes) for i in pick],
            "image": [_png_data_uri(prepared.images[int(p)]) for p in pool[pick]],
        }
    )


class DataMap:
    """An interactive data map (Bokeh, with BokehJS inline: it works offline): points at their
    held-out cartography coordinates coloured by reference entropy; hovering one shows its image,
    its reference distribution, the model's predicted distribution and its coordinates."""

    def __init__(self, frame: pd.DataFrame, title: str, reference_name: str = "human"):
        self.frame, self.title, self.reference_name = frame, title, reference_name

    def figure(self) -> Any:
        from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper  # type: ignore[attr-defined]
        from bokeh.palettes import Viridis256
        from bokeh.plotting import figure

        source = ColumnDataSource(self.frame)
        mapper = LinearColorMapper(
            palette=Viridis256, low=float(self.frame["entropy"].min()), high=float(self.frame["entropy"].max())
        )
        fig = figure(
            title=self.title,
            x_axis_label="variability (SD over epochs)",
            y_axis_label="confidence in the reference mode",
            sizing_mode="stretch_width",
            height=420,
            tools="pan,wheel_zoom,box_zoom,reset",
            toolbar_location="above",
        )
        fig.scatter(
            "variability",
            "confidence",
            source=source,
            size=6,
            alpha=0.7,
            color={"field": "entropy", "transform": mapper},
            line_color=None,
        )
        who = "votes" if self.reference_name == "human" else self.reference_name
        hover = HoverTool(
            tooltips=f"""
            <div class="softlab-datamap-tip" style="max-width: 240px">
              <img src="@image" width="56" height="56" alt="item @item" style="image-rendering: pixelated">
              <div><b>item @item</b> (official: @official)</div>
              <div>{who}: @reference</div>
              <div>model: @predicted</div>
              <div>confidence @confidence{{0.00}}, variability @variability{{0.000}},
                   entropy @entropy{{0.00}} nats</div>
            </div>""",
        )
        fig.add_tools(hover)
        fig.add_layout(ColorBar(color_mapper=mapper, title="reference entropy (nats)", width=8), "right")
        return fig

    def _repr_html_(self) -> str:
        from bokeh.embed import components
        from bokeh.resources import Resources

        script, div = components(self.figure())
        bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js()  # offline: BokehJS in the page
        return f'<div class="softlab-datamap">{bokeh_js}{script}{div}</div>'


def data_map(book: Book, arm: str, condition: str = "human/human", max_items: int = 1500) -> DataMap | None:
    """The interactive :class:`DataMap` of ``arm`` under ``condition`` (None when the run
    recorded no held-out dynamics)."""
    from softlab.present import arm_name

    frame = data_map_frame(book, arm, condition, max_items)
    if frame.empty:
        return None
    reference = REFERENCE_NAMES.get(arm, "human")
    title = f"{arm_name(arm)}, {condition_label(condition, reference)}: held-out items ({len(frame)} shown)"
    return DataMap(frame, title, reference)


# --------------------------------------------------------------------------- the book object

#: Measured cost of one seed of the ``stability`` set on the quiet 2-core machine (its teacher and
#: students, both conditions, 2 folds): all 1,100 seeds trained from a cold cache in 1,684 s,
#: 2026-12-07 (``params/stability.yml``; 30 seeds took 263 s on the shared machine of 2026-12-03).
STABILITY_SECONDS_PER_SEED: float = 1684.0 / 1100.0


class Book:
    """A chapter's view of one run: ``params`` (the full parameter set), ``results`` (the
    cached :class:`softlab.report.BookResults`, computed on first use), ``prepared``/``skipped``
    (the arms, for chapters that show data before training) and display helpers."""

    def __init__(self, params: Mapping[str, Any]):
        self.params: dict[str, Any] = dict(params)

    @property
    def name(self) -> str:
        return str(self.params["params_name"])

    @property
    def progress(self) -> bool:
        return bool(self.params.get("progress", False))

    @cached_property
    def results(self) -> Any:
        from softlab.report import book_results

        return book_results(self.params, progress=self.progress)

    @property
    def verdicts(self) -> pd.DataFrame:
        return self.results.verdicts

    @cached_property
    def _arms(self) -> tuple[dict[str, Any], dict[str, str]]:
        from softlab.experiment import configs_from_params, prepare_arms

        arm_configs, _, _ = configs_from_params(self.params)
        return prepare_arms(arm_configs, progress=self.progress)

    @property
    def prepared(self) -> dict[str, Any]:
        """The prepared arms (teachers, folds, labels) by name, only those whose data is here."""
        return self._arms[0]

    @property
    def configs(self) -> tuple[Any, Any, list[int]]:
        """``(arm_configs, train_config, seeds)`` of :func:`softlab.experiment.configs_from_params`."""
        from softlab.experiment import configs_from_params

        arm_configs, train_cfg, seeds = configs_from_params(self.params)
        return arm_configs, train_cfg, list(seeds)

    @property
    def skipped(self) -> dict[str, str]:
        """Arms whose data is missing here, name to reason (from the results when they were
        computed, else from preparing the arms, else from looking for their images)."""
        if "results" in self.__dict__:
            return dict(self.results.meta.get("skipped", {}))
        if "_arms" in self.__dict__:
            return dict(self._arms[1])
        return self.missing_data()

    def missing_data(self) -> dict[str, str]:
        """Arms of the set whose images cannot be had here (CIFAR-10 offline) -> reason, found
        without preparing any arm (what :func:`softlab.experiment.prepare_arms` would skip)."""
        from softlab.data import load_images
        from softlab.data.cifar import DataUnavailable

        missing = {}
        for arm in self.params.get("arms", []):
            spec = arm_spec(arm)
            if spec.optional_images:
                try:
                    load_images(spec.images, "test")
                except DataUnavailable as exc:
                    missing[arm] = str(exc)
        return missing

    def ran_arms(self) -> list[str]:
        """The arms that actually ran (the set's arms minus the skipped ones, plus votes arms)."""
        skipped = self.skipped
        arms = [a for a in self.params.get("arms", []) if a not in skipped]
        return arms + [v for v in (self.params.get("votes") or {}) if v not in skipped]

    def setup_line(self, accuracy: bool = False) -> str:
        """One italic Markdown line: the parameter set, the arms that ran and the model and grid;
        with ``accuracy``, each arm's held-out accuracy (the range of the conditions' means over
        seeds, against the official label)."""
        arms = ", ".join(ARM_NAMES.get(a, a) for a in self.ran_arms())
        text = f"*Computed with the `{self.name}` parameter set: {arms}; {run_description(self.params)}"
        if accuracy:
            acc = self.heldout_accuracy()
            if len(acc):
                disjoint = self.heldout_accuracy(split="disjoint")
                parts = []
                for a, g in acc.groupby("dataset", sort=False)["value"]:
                    part = f"{ARM_NAMES.get(str(a), str(a))} {fmt_number(g.min())}–{fmt_number(g.max())}"
                    items = arm_spec(str(a)).heldout_items if str(a) in known_arms() else ""
                    d = disjoint.loc[disjoint["dataset"] == a, "value"]
                    if items and len(d):  # not a sample of the data set: say so, and show ordinary images too
                        part += (
                            f" on {items} ({fmt_number(d.min())}–{fmt_number(d.max())} on ordinary test images,"
                            " the disjoint sample)"
                        )
                    parts.append(part)
                text += "; held-out accuracy " + ", ".join(parts)
        return text + ".*"

    def heldout_accuracy(self, split: str = "heldout") -> pd.DataFrame:
        """Mean over seeds of each raw condition's accuracy against the official label on all
        items of ``split`` (``heldout``: the pooled out-of-fold predictions; ``disjoint``: the
        disjoint evaluation sample): ``dataset, condition, value``."""
        m = self.results.metrics
        part = m[
            (m["split"] == split)
            & (m["stratum"] == "all")
            & (m["metric"] == "accuracy")
            & ~m["condition"].astype(str).str.endswith("+ts")
        ]
        return part.groupby(["dataset", "condition"], sort=False, as_index=False)["value"].mean()

    def skip_notices(self) -> str:
        """The notice of every skipped arm (:func:`skip_notice`), for the one page that would show it."""
        return "\n\n".join(skip_notice(a, r) for a, r in self.skipped.items())

    def variance_decomposition(self, arms: Sequence[str] | None = None) -> pd.DataFrame:
        """Where each verdict arm's seed-to-seed variance comes from (exploratory): the nested
        designs (initialisation, + split, + teacher) trained or loaded
        (:func:`softlab.experiment.run_nested_designs`) and decomposed
        (:func:`softlab.experiment.variance_decomposition`); computed once per configuration and
        analysis code and cached (``cache_dir()/decomposition/<key>.parquet``), so the chapter
        reads the table ``softlab run`` computed before papermill started (it took 29 s of the
        chapter's 42 s to load the 600 nested runs again)."""
        if "_decomposition" not in self.__dict__:
            from softlab.experiment import run_nested_designs, variance_decomposition
            from softlab.io import atomic_path, config_key, load_cached_parquet
            from softlab.paths import cache_dir
            from softlab.report import arm_predictions, book_key, run_temperatures

            arm_configs, train_cfg, seeds = self.configs
            chosen = [a for a in (arms or [a for a in verdict_arms() if a in arm_configs]) if a not in self.skipped]
            n_boot = int(self.params.get("n_boot", 2000))
            key = config_key({"book": book_key(arm_configs, train_cfg, seeds, n_boot), "arms": chosen})
            path = cache_dir() / "decomposition" / f"{key}.parquet"
            table = load_cached_parquet(path)
            if table is None:
                frames = []
                for arm in chosen:
                    grids = run_nested_designs(arm_configs[arm], train_cfg, seeds, progress=self.progress)
                    frames.append(
                        variance_decomposition({d: arm_predictions(g, run_temperatures(g)) for d, g in grids.items()})
                    )
                table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
                if len(table):
                    with atomic_path(path) as tmp:
                        table.to_parquet(tmp, index=False)
            self.__dict__["_decomposition"] = table
        return self.__dict__["_decomposition"]

    def fitted_table(self) -> pd.DataFrame:
        """Per arm, seed and fold: the fitted ε and T and what they were fitted on
        (:meth:`softlab.experiment.Arm.fitted_table` over the set's seeds) — read from the book's
        cached results when they were computed (the same table), else built from the prepared arms."""
        from softlab.report import cached_book_table

        cached = self.results.fitted if "results" in self.__dict__ else cached_book_table(self.params, "fitted")
        if cached is not None and len(cached):
            return cached
        seeds = self.configs[2]
        return pd.concat([a.fitted_table(seeds) for a in self.prepared.values()], ignore_index=True)

    def stability(self, name: str = "stability") -> pd.DataFrame | None:
        """Claim 2 on the many-seed ``stability`` set (:func:`softlab.experiment.stability_summary`,
        one row per arm): computed from that set's book tables when they are in the cache here
        (``source`` "computed here"), else the result recorded in ``recorded/<name>.csv`` with
        its provenance (``source`` "recorded"; :func:`record_result` writes it), else None.
        Nothing of the 1,100-seed set is trained, not even its teachers."""
        from softlab.report import cached_book_results

        params = self.parameter_set(name)
        results = cached_book_results(params)
        if results is not None:
            table = stability_table(results, params)
            return None if table is None else table.assign(source="computed here")
        return load_recorded(name)

    def stability_sentence(self, name: str = "stability") -> str:
        """One Markdown paragraph for the findings page: claim 2 on the many-seed set
        (:meth:`stability`), its design, where the result comes from, and that it is shown beside
        the book's verdict, not in its family; empty when the set was neither computed nor recorded."""
        from softlab.present import fmt_p

        table = self.stability(name)
        if table is None or table.empty:
            return ""
        p = self.parameter_set(name)
        r = table.iloc[0]
        where = (
            "computed here"
            if r["source"] != "recorded"
            else f"recorded on {r['recorded_on']} at commit `{r['commit']}`, `recorded/{name}.csv`"
        )
        n = fmt_number(int(r["seeds"]))
        teacher, book_teacher = (fmt_number(int(x["teacher_train_items"])) for x in (p, self.params))
        ratio, low, high = (fmt_number(float(r[k]), 2) for k in ("variance_ratio", "ci_low", "ci_high"))
        sd_c, sd_k, mean_c, mean_k = (
            fmt_number(float(r[k])) for k in ("sd_condition", "sd_comparator", "mean_condition", "mean_comparator")
        )
        return (
            f"**Claim 2 with the power to decide it.** The `{name}` set ({n} seeds, each a full re-run of the "
            f"pipeline; {p['folds']} folds and teachers on {teacher} images, against this book's "
            f"{self.params['folds']} folds and {book_teacher}; {where}) finds the across-seed variance of held-out "
            f"accuracy under `{r['condition']}` {ratio} times that under `{r['comparator']}` (95% CI {low} to "
            f"{high}, Pitman–Morgan p {fmt_p(float(r['p_value']))}; SD {sd_c} against {sd_k}, at mean accuracy "
            f"{mean_c} against {mean_k}). It is a separate design, shown beside the book's verdict, not in its "
            f"family of tests."
        )

    def stability_hours(self, name: str = "stability") -> float:
        """The estimated wall time of ``softlab run --params <name>`` from a cold cache on the
        2-core reference machine, in hours: its seeds × :data:`STABILITY_SECONDS_PER_SEED`."""
        return int(self.parameter_set(name)["seeds"]) * STABILITY_SECONDS_PER_SEED / 3600.0

    def robustness_grid(self, name: str = "robustness") -> ShownGrid:
        """The grid chapter 8 and the findings page show (:class:`ShownGrid`). This set's own cells
        are always computed or loaded first (and written to ``results/<set>/robustness.parquet``);
        shown is the ``name`` set's grid where it was computed here
        (``results/<name>/robustness.parquet``), else the one recorded in ``recorded/<name>.csv``
        (:func:`record_result`), else this set's own slice."""
        from softlab.robustness import robustness_results

        own_grid = robustness_results(self.params)
        own = str(self.params["params_name"])
        if own == name:
            return ShownGrid(own_grid, own, f"The full `{name}` grid, computed by this run.", "computed by this run")
        shown = self._other_grid(name)
        if shown is not None:
            return shown
        return ShownGrid(
            own_grid,
            own,
            f"This parameter set's slice of the grid (`{own}`); `softlab run --params {name}` computes the "
            'full grid (the README\'s "Notebooks and parameter sets" gives its measured time).',
            "this set's slice",
        )

    def _other_grid(self, name: str) -> ShownGrid | None:
        """The ``name`` set's grid computed here, else recorded, else None; a grid that lacks some
        of the set's cells says how many it holds and names the missing ones."""
        from softlab.robustness import COLUMNS, grid_cells, load_full_grid, parse_grid

        table = load_full_grid(name)
        if table is not None:
            where, origin, note = f"computed on this machine (`results/{name}/robustness.parquet`)", "computed here", ""
        else:
            recorded = load_recorded(name)
            if recorded is None:
                return None
            # CSV reads the claim numbers back as integers: the grid's text columns as the table has them
            text = [c for c in COLUMNS if c in GRID_TEXT_COLUMNS]
            table = recorded[list(COLUMNS)].astype(dict.fromkeys(text, str))
            runs = recorded.drop_duplicates(list(RECORDED_COLUMNS))
            if len(runs) == 1:
                where = recorded_provenance(dict(runs.iloc[0].items()), name)
            else:  # a grid computed over several runs: each run with the cells it computed
                parts = []
                for r in runs.to_dict("records"):
                    mine = (recorded[list(RECORDED_COLUMNS)] == pd.Series(r)[list(RECORDED_COLUMNS)]).all(axis=1)
                    cells = recorded.loc[mine, "cell"].nunique()
                    parts.append(
                        f"{cells} {'cell' if cells == 1 else 'cells'} {recorded_provenance(r, name, file=False)}"
                    )
                where = f"recorded in `recorded/{name}.csv` from {len(runs)} runs: " + "; ".join(parts)
            origin = "recorded on " + ", ".join(dict.fromkeys(str(d) for d in runs["recorded_on"]))
            note = (
                " This machine has not computed it, so the page shows the recorded grid; "
                f"`softlab run --params {name}` recomputes it here."
            )
        p = self.parameter_set(name)
        expected = [c.name for c in grid_cells(parse_grid(p.get("robustness")), p)]
        missing = [c for c in expected if c not in set(table["cell"])]
        count = ""
        if missing:
            held = f"{len(expected) - len(missing)} of {len(expected)} cells"
            count = f" It holds {held}; not yet computed: " + ", ".join(f"`{c}`" for c in missing) + "."
            origin += f", {held}"
        return ShownGrid(table, name, f"The `{name}` grid, {where}.{count}{note}", origin)

    def parameter_set(self, name: str) -> dict[str, Any]:
        """Another parameter set, complete (:func:`resolve_book_parameters`), e.g. ``stability``."""
        return resolve_book_parameters(name)

    def fmt(self, x: Any, digits: int = 3, *, sign: bool = False, percent: bool = False) -> str:
        """The book's one number format (:func:`softlab.present.fmt_number`)."""
        return fmt_number(x, digits, sign=sign, percent=percent)


def stability_table(results: Any, params: Mapping[str, Any]) -> pd.DataFrame | None:
    """:func:`softlab.experiment.stability_summary` of every arm of a set's book results, for its
    first two conditions (default ``human/human`` against ``human/synthetic``)."""
    from softlab.experiment import stability_summary

    conditions = list(params.get("conditions") or ["human/human", "human/synthetic"])
    condition, comparator = (conditions + ["human/synthetic"])[:2]
    frames = [
        stability_summary(preds, condition=condition, comparator=comparator) for preds in results.predictions.values()
    ]
    return pd.concat(frames, ignore_index=True) if frames else None


#: Provenance columns of a recorded result (``recorded/<name>.csv``), after the result's own.
RECORDED_COLUMNS: tuple[str, ...] = ("recorded_on", "commit", "command", "wall_seconds", "training", "machine")


def load_recorded(name: str) -> pd.DataFrame | None:
    """The recorded result ``recorded/<name>.csv`` (:func:`softlab.paths.recorded_dir`) with
    ``source`` "recorded", or None when there is none. A file without the provenance columns is
    refused with a one-line error naming it."""
    from softlab.paths import recorded_dir

    path = recorded_dir() / f"{name}.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    missing = [c for c in RECORDED_COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise ValueError(
            f"{path}: a recorded result needs rows and the columns {list(RECORDED_COLUMNS)}; missing {missing}"
        )
    return table.assign(source="recorded")


def robustness_findings(table: pd.DataFrame, arm: str = "fashion-mnist") -> str:
    """The findings sentence on a robustness grid: :func:`softlab.robustness.findings_sentence`'s
    account of the specification cells, then the smallest budget at which human labels match or
    beat the best baseline *per claim-1 test*. The primary and the co-primary can disagree (at one
    vote per item, temperature-scaled human labels can match the best baseline while unscaled ones
    do not), and one budget "on claim 1" would not say which test it came from."""
    from softlab.robustness import findings_sentence, smallest_matching_budget

    whole = findings_sentence(table)
    rows = table[(table["claim"].astype(str) == "1") & (table["arm"] == arm)] if len(table) else table
    tests = list(dict.fromkeys(rows["test"])) if len(rows) else []
    if not tests:
        return whole
    parts = []
    for test in tests:
        best = smallest_matching_budget(table[table["test"] == test], arm)
        if best is None:
            parts.append(f"`{test}`, at no budget tried")
        else:
            k = "all" if best.votes_per_item == 0 else str(best.votes_per_item)
            parts.append(
                f"`{test}`, at {k} vote(s) per item on {best.annotated_fraction:.0%} of the training items "
                f"({best.delivery} delivery)"
            )
    head = whole.split("; ", 1)[0]
    return (
        f"{head}; the smallest budget at which human labels match or beat the best baseline on calibration "
        f"of hard items (claim 1), per test: " + "; ".join(parts) + "."
    )


#: Columns of the robustness grid (:data:`softlab.robustness.COLUMNS`) that hold text.
GRID_TEXT_COLUMNS = ("cell", "family", "model", "delivery", "arm", "claim", "test", "metric", "kind", "verdict")


def record_result(
    name: str,
    table: pd.DataFrame,
    provenance: Mapping[str, Any],
    kept: pd.DataFrame | None = None,
    order: Sequence[str] | None = None,
) -> Path:
    """Write a long run's result ``table`` (the stability summary of
    :func:`softlab.report.stability_from_runs`, the robustness grid of
    :func:`softlab.robustness.robustness_table`) with ``provenance`` (the values of
    :data:`RECORDED_COLUMNS`) to ``recorded/<name>.csv`` atomically; returns the path.

    ``kept``: rows recorded earlier, with their own provenance columns, written beside the new
    ones (a grid computed over several runs: each row keeps the run that computed it). ``order``:
    the ``cell`` names in the order the rows are written (the grid's); other rows go last."""
    from softlab.io import atomic_path
    from softlab.paths import recorded_dir

    missing = [c for c in RECORDED_COLUMNS if c not in provenance]
    if missing:
        raise ValueError(f"record_result: provenance lacks {missing}")
    if table is None or table.empty:
        raise ValueError(f"record_result: the {name!r} result holds no rows")
    table = table.assign(**{c: provenance[c] for c in RECORDED_COLUMNS})
    if kept is not None and len(kept):
        if list(kept.columns) != list(table.columns):
            raise ValueError(
                f"record_result: kept rows need the columns {list(table.columns)}, got {list(kept.columns)}"
            )
        if "cell" in table.columns and set(kept["cell"]) & set(table["cell"]):
            raise ValueError("record_result: a kept row's cell is also in the new rows; keep one of them")
        table = pd.concat([table, kept], ignore_index=True)
    if order is not None and "cell" in table.columns:
        rank = {c: i for i, c in enumerate(order)}
        table = table.sort_values("cell", key=lambda c: c.map(rank).fillna(len(rank)), kind="stable")
    path = recorded_dir() / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def fmt_duration(seconds: float) -> str:
    """``95 s``, ``28 min 04 s``, ``1 h 42 min``: a wall time as the book states it."""
    s = round(float(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def recorded_provenance(row: Mapping[Any, Any], name: str, file: bool = True) -> str:
    """One sentence of a recorded result's provenance (a row of :func:`load_recorded`); ``file``
    adds where it is recorded."""
    return (
        f"recorded on {row['recorded_on']} at commit `{row['commit']}` with `{row['command']}` "
        f"({fmt_duration(float(row['wall_seconds']))}; {row['machine']}; {row['training']})"
        + (f", in `recorded/{name}.csv`" if file else "")
    )


class ShownGrid(NamedTuple):
    """The robustness grid a page shows (:meth:`Book.robustness_grid`)."""

    table: pd.DataFrame  #: rows of :data:`softlab.robustness.COLUMNS`
    name: str  #: the parameter set whose grid it is
    source: str  #: one sentence: where it comes from (computed here, recorded with provenance, a slice)
    origin: str  #: the same in a few words, e.g. "recorded on 2026-12-07"


def open_book(params_name: str = "default", overrides: Mapping[str, Any] | None = None) -> Book:
    """Set up a chapter: resolve the parameters (:func:`resolve_book_parameters`), apply the
    figure style, and return the :class:`Book` (results load on first use)."""
    from softlab import plots

    plots.set_style()
    _retina_figures()
    return Book(resolve_book_parameters(params_name, overrides))


def _retina_figures() -> None:
    """Inside a kernel, figures become PNGs at twice their display density (the output says
    the display size, so the book shows them at their size, sharp on high-density screens)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook tools
        return
    if get_ipython() is None:
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")  # type: ignore[no-untyped-call]
