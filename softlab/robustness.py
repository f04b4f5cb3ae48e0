"""Robustness and annotation budgets (the book's chapter ``notebooks/08_robustness.ipynb``).

Every verdict of the book comes from one setup (an MLP, 6 epochs, one learning rate, all votes of
every item). This module repeats the **primary tests** of ``params/claims.yml`` over a grid of
**cells** and writes one row per (cell, arm, test) to ``results/<set>/robustness.parquet``
(:data:`COLUMNS`; ``relative`` is the effect over the comparator's mean for differences and
``ratio − 1`` for variance ratios, the scale on which cells with different models compare):

- **specification cells** — one factor at a time around the default, for each model of the
  crossing: ``model`` × {default, other ``epochs``, other ``lr``, other ``hidden`` (MLP only)};
- **budget cells** (at the default model) — ``votes_per_item`` k (k votes per training item drawn
  without replacement from its counts, afresh per seed; :mod:`softlab.budgets`), the
  ``annotated_fraction`` f (at each k of ``fraction_votes``; the rest train with
  ``original/hard``), each with ``delivery`` ``soft`` (the ``human/human`` target) or
  ``sampled`` (``human/sampled``: one vote per item per epoch).

Held-out evaluation is always against the **full** distribution (:class:`softlab.experiment.Arm`
keeps it; only training targets follow the budget). A ``sampled`` cell is evaluated by the same
tests with ``human/sampled`` in the place of ``human/human`` (the tests ask "human labels, fed this
way"). Each cell trains only the conditions its primary tests name (their condition and
comparators; ``+ts`` twins come from the same runs), so a cell costs ``conditions × seeds ×
folds`` runs; runs are cached in the run store like the book's (a default cell reuses the book's).

Holm families: each cell is its own family (the primary tests of the cell's arms), so
``p_adjusted`` of a cell with fewer arms than the book is smaller than the book's — the verdict per
cell is the same rule (:func:`softlab.inference.verdict_table`) on that family.

The grid is the ``robustness`` parameter (a mapping), e.g.::

    robustness:
      arms: [fashion-mnist]
      models: [mlp, cnn]
      epochs: [20]           # values other than the set's own
      lr: [0.0003]
      hidden: [512]          # MLP only
      votes_per_item: [1, 3, 5, 10, 20, all]
      annotated_fraction: [0.1, 0.25, 0.5, 1.0]
      fraction_votes: [all, 3]
      delivery: [soft, sampled]
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softlab.io import atomic_path, config_key, load_cached_parquet
from softlab.labels import DELIVERY_CONDITIONS
from softlab.paths import cache_dir, results_dir

#: Bumped when what a cached cell table holds changes.
ROBUSTNESS_VERSION = 1
DELIVERIES: tuple[str, ...] = ("soft", "sampled")
SAMPLED = DELIVERY_CONDITIONS[0]  # "human/sampled"
SOFT = "human/human"
FAMILIES: tuple[str, ...] = ("default", "specification", "budget")
#: The columns of ``robustness.parquet``, in order.
COLUMNS: tuple[str, ...] = (
    "cell",
    "family",
    "model",
    "epochs",
    "lr",
    "hidden",
    "votes_per_item",
    "annotated_fraction",
    "delivery",
    "arm",
    "claim",
    "test",
    "metric",
    "kind",
    "estimate",
    "ci_low",
    "ci_high",
    "relative",
    "relative_ci_low",
    "relative_ci_high",
    "mean_condition",
    "mean_comparator",
    "margin",
    "verdict",
    "heldout_accuracy",
    "heldout_accuracy_hard",
    "seeds",
    "seconds",
)
_SPEC_KEYS = {
    "arms",
    "models",
    "epochs",
    "lr",
    "hidden",
    "votes_per_item",
    "annotated_fraction",
    "fraction_votes",
    "delivery",
}


# ----------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    """One specification of the grid. ``votes_per_item`` 0 means all votes."""

    name: str
    family: str
    model: str
    epochs: int
    lr: float
    hidden: int
    votes_per_item: int = 0
    annotated_fraction: float = 1.0
    delivery: str = "soft"

    def settings(self) -> tuple[Any, ...]:
        return (
            self.model,
            self.epochs,
            self.lr,
            self.hidden,
            self.votes_per_item,
            self.annotated_fraction,
            self.delivery,
        )


@dataclass(frozen=True)
class GridSpec:
    """The parsed ``robustness`` parameter (see the module docstring)."""

    arms: tuple[str, ...] = ("fashion-mnist",)
    models: tuple[str, ...] = ()
    epochs: tuple[int, ...] = ()
    lr: tuple[float, ...] = ()
    hidden: tuple[int, ...] = ()
    votes_per_item: tuple[int, ...] = ()
    annotated_fraction: tuple[float, ...] = ()
    fraction_votes: tuple[int, ...] = (0,)
    delivery: tuple[str, ...] = ("soft",)


def _votes_value(v: Any, where: str) -> int:
    if v == "all" or v == 0:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"robustness.{where}: expected a positive number of votes or 'all', got {v!r}")
    return int(v)


def _as_list(raw: Mapping[str, Any], key: str) -> list[Any]:
    v = raw.get(key, [])
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"robustness.{key}: expected a list, got {v!r}")
    return list(v)


def parse_grid(raw: Mapping[str, Any] | None) -> GridSpec:
    """The ``robustness`` parameter as a :class:`GridSpec`; one-line errors name the key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"robustness: unknown key(s) {unknown}; expected some of {sorted(_SPEC_KEYS)}")
    models = _as_list(raw, "models")
    bad = [m for m in models if m not in ("mlp", "cnn")]
    if bad:
        raise ValueError(f"robustness.models: unknown model(s) {bad}; expected mlp and/or cnn")
    for key in ("epochs", "hidden"):
        for v in _as_list(raw, key):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"robustness.{key}: expected positive integers, got {v!r}")
    for v in _as_list(raw, "lr"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"robustness.lr: expected positive numbers, got {v!r}")
    fractions = _as_list(raw, "annotated_fraction")
    for v in fractions:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise ValueError(f"robustness.annotated_fraction: expected shares in (0, 1], got {v!r}")
    deliveries = _as_list(raw, "delivery") or ["soft"]
    bad = [d for d in deliveries if d not in DELIVERIES]
    if bad:
        raise ValueError(f"robustness.delivery: unknown delivery {bad}; expected some of {list(DELIVERIES)}")
    arms = _as_list(raw, "arms") or ["fashion-mnist"]
    return GridSpec(
        arms=tuple(str(a) for a in arms),
        models=tuple(models),
        epochs=tuple(int(v) for v in _as_list(raw, "epochs")),
        lr=tuple(float(v) for v in _as_list(raw, "lr")),
        hidden=tuple(int(v) for v in _as_list(raw, "hidden")),
        votes_per_item=tuple(_votes_value(v, "votes_per_item") for v in _as_list(raw, "votes_per_item")),
        annotated_fraction=tuple(float(v) for v in fractions),
        fraction_votes=tuple(_votes_value(v, "fraction_votes") for v in (_as_list(raw, "fraction_votes") or [0])),
        delivery=tuple(deliveries),
    )


def _cell_name(c: Cell) -> str:
    k = "all" if c.votes_per_item == 0 else str(c.votes_per_item)
    return f"{c.model} e{c.epochs} lr{c.lr:g} h{c.hidden} k={k} f={c.annotated_fraction:g} {c.delivery}"


def grid_cells(spec: GridSpec, params: Mapping[str, Any]) -> list[Cell]:
    """The cells of the grid around the parameter set's own settings (``model, epochs, lr,
    hidden``): the default cell first, then the specification cells (one factor at a time, for
    each model of ``spec.models``), then the budget cells (every k × delivery; every f × k of
    ``fraction_votes`` × delivery). Duplicates are dropped (the first family wins)."""
    base = Cell("", "default", str(params["model"]), int(params["epochs"]), float(params["lr"]), int(params["hidden"]))
    out: list[Cell] = [base]
    for model in spec.models or (base.model,):
        m = replace(base, model=model, family="specification")
        out.append(m)
        out += [replace(m, epochs=e) for e in spec.epochs]
        out += [replace(m, lr=v) for v in spec.lr]
        if model == "mlp":
            out += [replace(m, hidden=h) for h in spec.hidden]
    budget = replace(base, family="budget")
    for delivery in spec.delivery:
        out += [replace(budget, votes_per_item=k, delivery=delivery) for k in spec.votes_per_item]
        for k in spec.fraction_votes:
            out += [
                replace(budget, votes_per_item=k, annotated_fraction=f, delivery=delivery)
                for f in spec.annotated_fraction
            ]
    seen: dict[tuple[Any, ...], Cell] = {}
    for c in out:
        seen.setdefault(c.settings(), replace(c, name=_cell_name(c)))
    return list(seen.values())


def primary_conditions(claims: Any, arm: str) -> tuple[str, ...]:
    """The conditions the primary tests of ``arm`` name (their conditions and comparators, without
    the ``+ts`` suffix: the scaled twin comes from the same runs), in the claims file's order."""
    _, tests = claims.tests_for(arm)
    names: list[str] = []
    for t in tests:
        if t.primary:
            names += [t.condition, *t.comparators]
    out = [n.removesuffix("+ts-official").removesuffix("+ts") for n in names]
    return tuple(dict.fromkeys(out))


# ----------------------------------------------------------------------------- one cell


def cell_configs(
    cell: Cell, params: Mapping[str, Any], spec: GridSpec, claims: Any
) -> tuple[dict[str, Any], Any, list[int]]:
    """(arm configs, train config, seeds) of one cell: the parameter set with the cell's model
    settings, each of ``spec.arms`` with the cell's budget and the conditions its primary tests
    need (plus ``human/sampled`` for a sampled cell)."""
    from softlab.experiment import ARMS, configs_from_params

    p = {**params, "model": cell.model, "epochs": cell.epochs, "lr": cell.lr, "hidden": cell.hidden}
    p["arms"] = [a for a in spec.arms if a in ARMS]  # votes arms come from the set's `votes` parameter
    arm_cfgs, train_cfg, seeds = configs_from_params(p)
    out = {}
    for name, cfg in arm_cfgs.items():
        if name not in spec.arms:
            continue
        conditions = primary_conditions(claims, name) + ((SAMPLED,) if cell.delivery == "sampled" else ())
        out[name] = replace(
            cfg,
            conditions=conditions,
            votes_per_item=cell.votes_per_item,
            annotated_fraction=cell.annotated_fraction,
        )
    return out, train_cfg, seeds


def as_delivered(preds: Any, delivery: str) -> Any:
    """``preds`` (:class:`softlab.inference.ArmPredictions`) as the tests should see them for a
    delivery: ``sampled`` puts ``human/sampled`` (and its ``+ts`` twin) in the place of
    ``human/human``, so the same tests judge the human labels fed one vote per epoch."""
    if delivery == "soft":
        return preds
    probs = {k: v for k, v in preds.probs.items() if not k.startswith(SOFT)}
    probs[SOFT] = preds.probs[SAMPLED]
    probs[SOFT + "+ts"] = preds.probs[SAMPLED + "+ts"]
    for k in (SAMPLED, SAMPLED + "+ts"):
        probs.pop(k)
    arrays = {k: v for k, v in preds.item_arrays.items() if k not in (SOFT, SAMPLED)}
    if SAMPLED in preds.item_arrays:
        arrays[SOFT] = preds.item_arrays[SAMPLED]
    return replace(preds, probs=probs, item_arrays=arrays)


def heldout_accuracy(preds: Any, condition: str) -> float:
    """Mean over seeds of the held-out accuracy (against the official label) of ``condition``."""
    p = preds.probs.get(condition)
    if p is None:
        return math.nan
    return float((np.asarray(p).argmax(axis=2) == np.asarray(preds.official)[None, :]).mean())


def run_cell(
    cell: Cell,
    params: Mapping[str, Any],
    spec: GridSpec,
    claims: Any = None,
    progress: bool = False,
    store: Any = None,
    executor: Any = None,
) -> pd.DataFrame:
    """Train (or load) one cell's runs and return its rows of :data:`COLUMNS`."""
    from softlab.experiment import prepare_arm, run_arm
    from softlab.inference import load_claims, verdict_table
    from softlab.report import arm_predictions, run_temperatures

    claims = (claims or load_claims()).primary_only()
    arm_cfgs, train_cfg, seeds = cell_configs(cell, params, spec, claims)
    t0 = time.perf_counter()
    predictions = {}
    for name, cfg in arm_cfgs.items():
        grid = run_arm(
            prepare_arm(cfg, progress=progress), train_cfg, seeds, progress=progress, store=store, executor=executor
        )
        predictions[name] = as_delivered(arm_predictions(grid, run_temperatures(grid)), cell.delivery)
        del grid
    verdicts = verdict_table(predictions, claims)
    verdicts = verdicts[verdicts["family"] == "primary"]  # the latest version's primary tests (not v1's as registered)
    seconds = time.perf_counter() - t0
    rows = []
    for r in verdicts.to_dict("records"):
        preds = predictions[str(r["arm"])]
        rows.append(
            {
                **{k: v for k, v in asdict(cell).items() if k != "name"},
                "cell": cell.name,
                "arm": r["arm"],
                "claim": str(r["claim"]),
                "test": r["test"],
                "metric": r["metric"],
                "kind": r["kind"],
                "relative": float(r["relative"]),
                "relative_ci_low": float(r["relative_ci_low"]),
                "relative_ci_high": float(r["relative_ci_high"]),
                "estimate": float(r["estimate"]),
                "ci_low": float(r["ci_low"]),
                "ci_high": float(r["ci_high"]),
                "mean_condition": float(r["mean_condition"]),
                "mean_comparator": float(r["mean_comparator"]),
                "margin": float(r["margin"]),
                "verdict": str(r["verdict"]),
                "heldout_accuracy": heldout_accuracy(preds, SOFT),
                "heldout_accuracy_hard": heldout_accuracy(preds, "original/hard"),
                "seeds": len(seeds),
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _code_fingerprint() -> str:
    """SHA-256 of this module's and :mod:`softlab.budgets`' source (the book's key covers the rest)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("robustness", "budgets"):
        h.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()


def _cell_key(cell: Cell, params: Mapping[str, Any], spec: GridSpec, claims: Any) -> str:
    from softlab.report import book_key

    arm_cfgs, train_cfg, seeds = cell_configs(cell, params, spec, claims.primary_only())
    return config_key(
        {
            "book": book_key(arm_cfgs, train_cfg, seeds, int(params.get("n_boot", 2000))),
            "delivery": cell.delivery,
            "robustness_version": ROBUSTNESS_VERSION,
            "code": _code_fingerprint(),
        }
    )


def robustness_table(
    params: Mapping[str, Any],
    progress: bool = False,
    store: Any = None,
    executor: Any = None,
    cells: Sequence[Cell] | None = None,
    cache: str | Path | None = None,
) -> pd.DataFrame:
    """Every cell of the parameter set's ``robustness`` grid (rows of :data:`COLUMNS`). Each
    cell's rows are cached (in ``cache``, default ``$SOFTLAB_CACHE_DIR/robustness``) under its
    configuration and analysis code (``book_key``, plus the source of this module and of
    :mod:`softlab.budgets`), so a cell computed before is loaded, never recomputed."""
    from softlab.inference import load_claims

    spec = parse_grid(params.get("robustness"))
    claims = load_claims()
    todo = list(cells) if cells is not None else grid_cells(spec, params)
    parts = []
    folder = Path(cache) if cache is not None else cache_dir() / "robustness"
    for i, cell in enumerate(todo):
        path = folder / f"{_cell_key(cell, params, spec, claims)}.parquet"
        cached = load_cached_parquet(path, columns=COLUMNS)  # a damaged entry is quarantined: recomputed
        if cached is not None:
            parts.append(cached)
            continue
        if progress:
            print(f"[robustness] cell {i + 1}/{len(todo)}: {cell.name}", flush=True)
        table = run_cell(cell, params, spec, claims, progress=progress, store=store, executor=executor)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
        parts.append(table)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def robustness_path(params_name: str) -> Path:
    return results_dir() / params_name / "robustness.parquet"


def write_robustness(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table atomically after checking its columns (:data:`COLUMNS`, in order)."""
    if list(table.columns) != list(COLUMNS):
        raise ValueError(f"table: expected the columns {list(COLUMNS)}, got {list(table.columns)}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        table.to_parquet(tmp, index=False)
    return dest


def robustness_results(params: Mapping[str, Any], progress: bool = False, store: Any = None) -> pd.DataFrame:
    """The grid of a parameter set, computed or loaded, and written to
    ``results/<params_name>/robustness.parquet``."""
    table = robustness_table(params, progress=progress, store=store)
    write_robustness(table, robustness_path(str(params.get("params_name", "custom"))))
    return table


def load_full_grid(params_name: str = "robustness") -> pd.DataFrame | None:
    """The ``robustness`` set's table where it has been computed here (the chapter then shows the
    full grid), else None."""
    path = robustness_path(params_name)
    return pd.read_parquet(path) if path.exists() else None


# ----------------------------------------------------------------------------- findings


def _claim1_primary(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["claim"].astype(str) == "1"]


def smallest_matching_budget(table: pd.DataFrame, arm: str = "fashion-mnist") -> Cell | None:
    """The cheapest budget cell (fewest votes in all: k × f, ``all`` counted as the most) at
    which human labels match or beat the best baseline on the claim-1 primary test (verdict
    ``confirmed``, ``equivalent`` or ``negligible``: no worse by more than the margin), or None."""
    rows = _claim1_primary(table)
    rows = rows[(rows["arm"] == arm) & rows["family"].isin(["default", "budget"])]
    ok = rows[rows["verdict"].isin(["confirmed", "equivalent", "negligible"])]
    if ok.empty:
        return None
    k = ok["votes_per_item"].replace(0, 10**6)
    best = ok.assign(_cost=k * ok["annotated_fraction"]).sort_values(["_cost", "delivery"]).iloc[0]
    return Cell(
        str(best["cell"]),
        str(best["family"]),
        str(best["model"]),
        int(best["epochs"]),
        float(best["lr"]),
        int(best["hidden"]),
        int(best["votes_per_item"]),
        float(best["annotated_fraction"]),
        str(best["delivery"]),
    )


def findings_sentence(table: pd.DataFrame) -> str:
    """One sentence for the findings page: whether the default cell's primary verdicts hold in
    every specification cell, and the smallest budget at which human labels match or beat the
    best baseline on claim 1 (if any)."""
    if table.empty:
        return "The robustness grid has not been run for this parameter set."
    default = table[table["family"] == "default"]
    spec = table[table["family"] == "specification"]
    base = {(r["arm"], r["test"]): r["verdict"] for r in default.to_dict("records")}
    n_spec = spec["cell"].nunique()
    changed = sorted(
        {
            f"{r['test']} ({r['arm']})"
            for r in spec.to_dict("records")
            if (r["arm"], r["test"]) in base and r["verdict"] != base[(r["arm"], r["test"])]
        }
    )
    if n_spec == 0:
        head = "This slice of the grid varies no model setting (the `robustness` parameter set does)"
    elif not changed:
        head = f"Every default primary verdict holds in all {n_spec} specification cells"
    else:
        head = (
            f"Across {n_spec} specification cells the verdict changes for {len(changed)} primary "
            f"test(s): {', '.join(changed)}"
        )
    best = smallest_matching_budget(table)
    if best is None:
        tail = (
            "at no annotation budget tried do human labels match or beat the best baseline on "
            "calibration of hard items (claim 1)"
        )
    else:
        k = "all" if best.votes_per_item == 0 else str(best.votes_per_item)
        tail = (
            f"the smallest budget at which human labels match or beat the best baseline on claim 1 is "
            f"{k} vote(s) per item on {best.annotated_fraction:.0%} of the training items ({best.delivery} delivery)"
        )
    return f"{head}; {tail}."
