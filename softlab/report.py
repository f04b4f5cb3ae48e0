"""From trained grids to the book's results: out-of-fold predictions, post-hoc temperature
scaling, the tidy metrics table, cartography tables and the verdict table — computed once per
parameter set and cached.

Sits above the metrics layer (``softlab.evaluation``, ``stats``, ``cartography``, ``posthoc``,
``inference``) and below plots and notebooks.

What is computed for each arm (``softlab.experiment`` defines the grid):

* **Post-hoc temperatures** (:func:`run_temperatures`): per run, ``T`` fitted on the run's
  calibration split (:mod:`softlab.posthoc`). Every condition ``c`` gets a ``c+ts`` twin: the
  same runs with their probabilities rescaled by their own ``T`` (fitted against the human
  distribution where a calibration item has one), and a ``c+ts-official`` twin (held-out
  predictions only) rescaled by a ``T`` fitted against the official labels alone (what a
  practitioner without human labels has; issue 22).
* **Out-of-fold predictions** (:func:`arm_predictions`): per seed, every labelled pool item's
  prediction by the one model of that seed that held it out (folds pooled: each item exactly
  once per seed), for every condition and ``+ts`` twin; plus per-item statistics of the held-out
  dynamics (confidence, variability and correctness of the reference mode over epochs).
* **Metrics** (:func:`metrics_table`): the tidy table of :mod:`softlab.evaluation`. Held-out
  rows are computed on each seed's pooled out-of-fold predictions (``split = "heldout"``,
  ``fold = -1``), with difficulty strata fitted per fold on training items; disjoint-split rows
  per run (``split = "disjoint"``, official labels only).
* **Cartography** (:func:`heldout_cartography`, :func:`training_cartography`,
  :func:`hard_label_cartography`, :func:`data_maps`): claim 3 is judged on held-out items
  (pooled held-out dynamics); dynamics on training items — where a ``human/human`` model's
  target *is* ``h`` — are description only.
* **Verdicts** (:func:`softlab.inference.verdict_table` with ``params/claims.yml``).

:func:`book_results` runs all of it for a parameter set, caches it under
``cache_dir()/book/<key>/`` (the key covers the configuration, the claims file and the source
code of the analysis modules) and writes ``results/<set>/metrics.parquet`` and
``verdicts.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from softlab.cartography import CartographyStats, auroc, cartography_stats, human_ambiguous, human_uncertainty_relation
from softlab.data import entropy, human_mode
from softlab.data.cifar import DataUnavailable
from softlab.evaluation import TABLE_COLUMNS, RunPredictions, evaluate_runs, write_metrics_table
from softlab.experiment import Arm, ArmConfig, GridResults, prepare_arm, run_arm
from softlab.io import atomic_path, atomic_write_text, config_key
from softlab.paths import cache_dir, results_dir
from softlab.posthoc import apply_temperature, fit_official_temperature, fit_temperature_scaling

if TYPE_CHECKING:  # pragma: no cover
    from softlab.inference import ArmPredictions
    from softlab.store import RunStore
    from softlab.train import TrainConfig

TS_SUFFIX = "+ts"
#: The twin scaled on official labels only (:func:`softlab.posthoc.fit_official_temperature`).
OFFICIAL_TS_SUFFIX = "+ts-official"
#: Bumped when what is cached by :func:`book_results` changes shape.
RESULTS_VERSION = 2


# ----------------------------------------------------------------------------- per run


def run_temperatures(grid: GridResults) -> pd.DataFrame:
    """Per run: the post-hoc temperatures fitted on its calibration split (columns ``dataset,
    condition, seed, fold, temperature, temperature_official, calibration_items``):
    ``temperature`` against each item's human distribution where it has one (else its official
    label), ``temperature_official`` against the official labels only."""
    arm = grid.arm
    rows = []
    for i, row in enumerate(grid.run_keys()):
        pos, probs = grid.calibration_probs(i)
        t = fit_temperature_scaling(probs, arm.target_reference(pos))
        t_official = fit_official_temperature(probs, arm.official[pos])
        rows.append(
            {
                "dataset": arm.name,
                "condition": row.condition,
                "seed": int(row.seed),
                "fold": int(row.fold),
                "temperature": t,
                "temperature_official": t_official,
                "calibration_items": len(pos),
            }
        )
    return pd.DataFrame(rows)


def _temperature_lookup(temperatures: pd.DataFrame, column: str = "temperature") -> dict[tuple[str, int, int], float]:
    columns = (temperatures[c].tolist() for c in ("condition", "seed", "fold", column))
    return {(str(c), int(s), int(f)): float(t) for c, s, f, t in zip(*columns)}


def evaluated_items(arm: Arm) -> np.ndarray:
    """Positions (in ``arm.annotated`` order) of the labelled items whose fold was trained."""
    return np.flatnonzero(np.isin(arm.folds[arm.annotated], arm.config.folds_to_run()))


def arm_predictions(grid: GridResults, temperatures: pd.DataFrame) -> ArmPredictions:
    """The arm's :class:`softlab.inference.ArmPredictions`: pooled out-of-fold predictions of
    every condition and its ``+ts`` and ``+ts-official`` twins, with held-out dynamics statistics
    per item."""
    from softlab.inference import ArmPredictions

    arm = grid.arm
    keep = evaluated_items(arm)
    ann = arm.annotated[keep]
    ref = arm.reference[keep]
    official = arm.official[ann]
    ref_mode = human_mode(ref, official)
    seeds = grid.seeds
    temps = _temperature_lookup(temperatures)
    temps_official = _temperature_lookup(temperatures, "temperature_official")
    n, c = len(ann), arm.n_classes
    probs: dict[str, np.ndarray] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for cond in grid.conditions:
        raw = np.full((len(seeds), n, c), np.nan, dtype=np.float32)
        scaled = np.full_like(raw, np.nan)
        scaled_official = np.full_like(raw, np.nan)
        conf = np.full((len(seeds), n), np.nan)
        var = np.full_like(conf, np.nan)
        corr = np.full_like(conf, np.nan)
        for si, seed in enumerate(seeds):
            for fold in arm.config.folds_to_run():
                i = grid.index(cond, seed, fold)
                pos, p = grid.heldout(i)
                where = np.searchsorted(ann, pos)
                raw[si, where] = p
                scaled[si, where] = apply_temperature(p, temps[(cond, seed, fold)])
                scaled_official[si, where] = apply_temperature(p, temps_official[(cond, seed, fold)])
                _, dyn = grid.heldout_dynamics(i)
                if np.isfinite(dyn).all():
                    st = cartography_stats(dyn, ref_mode[where])
                    conf[si, where], var[si, where], corr[si, where] = st.confidence, st.variability, st.correctness
        probs[cond] = raw
        probs[cond + TS_SUFFIX] = scaled
        probs[cond + OFFICIAL_TS_SUFFIX] = scaled_official
        arrays[cond] = {"heldout_confidence": conf, "heldout_variability": var, "heldout_correctness": corr}
    difficulty = arm.difficulty()[keep]
    strata = {
        "all": np.ones(n, dtype=bool),
        **{d: difficulty == d for d in ("easy", "medium", "hard")},
        "mode-shifted": arm.mode_shifted()[keep],
    }
    design = "pooled" if len(arm.config.folds_to_run()) == arm.config.folds else "single-fold"
    # seeds that share a teacher (the fixed-teacher design: n_teachers < seeds) are not independent
    # for the teacher-based conditions: their tests take the variance from the teachers
    suffixes = ("", TS_SUFFIX, OFFICIAL_TS_SUFFIX)
    teacher_based = tuple(c + x for c in grid.conditions if c.endswith("/synthetic") for x in suffixes)
    teachers = np.array([arm.teacher_of(s) for s in seeds] if teacher_based else list(seeds))
    shared = bool(teacher_based) and len(np.unique(teachers)) < len(teachers)
    return ArmPredictions(
        arm=arm.name,
        reference_name=arm.reference_name,
        seeds=np.asarray(seeds),
        official=official,
        reference=ref,
        strata=strata,
        probs=probs,
        item_arrays=arrays,
        design=design,
        disjoint_official=np.asarray(arm.disjoint_labels),
        disjoint_probs=_disjoint_probs(grid),
        seed_clusters=teachers if shared else None,
        clustered_conditions=teacher_based if shared else (),
    )


def _disjoint_probs(grid: GridResults) -> dict[str, np.ndarray]:
    """condition -> ``(seeds, folds, items, classes)``: every fold model's probabilities on the
    disjoint evaluation sample (tests with ``split: disjoint``); NaN where a run diverged."""
    arm = grid.arm
    folds = list(arm.config.folds_to_run())
    n = len(arm.disjoint_labels)
    if n == 0:
        return {}
    out = {}
    for cond in grid.conditions:
        stack = np.full((len(grid.seeds), len(folds), n, arm.n_classes), np.nan, dtype=np.float32)
        for si, seed in enumerate(grid.seeds):
            for fi, fold in enumerate(folds):
                stack[si, fi] = grid.results[grid.index(cond, seed, fold)].eval_probs["disjoint"]
        out[cond] = stack
    return out


def chunked_predictions(
    arm_cfg: ArmConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    chunk: int = 100,
    progress: bool = False,
    store: RunStore | None = None,
) -> Iterator[ArmPredictions]:
    """The :func:`arm_predictions` of ``seeds`` in chunks of ``chunk`` seeds, each from a freshly
    prepared arm and its runs (loaded from the run cache, trained where missing), so that a
    many-seed pool is read in bounded memory: all 1,100 seeds of the ``stability`` set at once
    (every table of the book) grew past the 24 GB of the 2-core machine. Runs of a seed do not
    depend on the other seeds of the list, so the chunks load exactly the runs one call would —
    except that the first seed of a set records training dynamics, hence ``record_dynamics``
    must be off. Per-seed values computed from the chunks and concatenated in order equal those
    from one :class:`~softlab.inference.ArmPredictions` of every seed."""
    if chunk < 1:
        raise ValueError(f"chunk: expected a positive number of seeds, got {chunk}")
    if train_cfg.record_dynamics:
        raise ValueError(
            "chunked_predictions: needs record_dynamics false (a set's first seed records training "
            "dynamics, so chunks would key their first seeds differently)"
        )
    for start in range(0, len(seeds), chunk):
        part = [int(s) for s in seeds[start : start + chunk]]
        arm = prepare_arm(arm_cfg, progress=progress, seeds=part)
        grid = run_arm(arm, train_cfg, part, progress=progress, store=store)
        preds = arm_predictions(grid, run_temperatures(grid))
        del grid, arm
        yield preds


def stability_from_runs(params: Mapping[str, Any], chunk: int = 100, progress: bool = False) -> pd.DataFrame:
    """Claim 2 on a many-seed set (:func:`softlab.experiment.stability_summary_of`, one row per
    arm), from its runs read in chunks of seeds (:func:`chunked_predictions`): the per-seed
    held-out accuracy of the set's first two conditions (default ``human/human`` against
    ``human/synthetic``). Trains what the run cache lacks."""
    from softlab.experiment import configs_from_params, per_seed_metric, stability_summary_of

    arm_configs, train_cfg, seeds = configs_from_params(params)
    conditions = list(params.get("conditions") or ["human/human", "human/synthetic"])
    condition, comparator = (conditions + ["human/synthetic"])[:2]
    rows = []
    for name, cfg in arm_configs.items():
        xs, ys = [], []
        for preds in chunked_predictions(cfg, train_cfg, seeds, chunk=chunk, progress=progress):
            xs.append(per_seed_metric(preds, condition, "accuracy", "all"))
            ys.append(per_seed_metric(preds, comparator, "accuracy", "all"))
        rows.append(stability_summary_of(name, np.concatenate(xs), np.concatenate(ys), condition, comparator))
    return pd.concat(rows, ignore_index=True)


def heldout_records(preds: ArmPredictions) -> list[RunPredictions]:
    """One :class:`RunPredictions` per (condition, seed) of the pooled held-out predictions
    (``fold = -1``), with the arm's per-fold difficulty strata. The ``+ts-official`` twins are
    left out (they feed the verdict table only; the chapters' tables filter on ``+ts``)."""
    strata = {k: v for k, v in preds.strata.items() if k != "all"}
    ids = np.arange(len(preds.official))
    out = []
    for cond, p in preds.probs.items():
        if cond.endswith(OFFICIAL_TS_SUFFIX):
            continue
        for si, seed in enumerate(preds.seeds):
            if not np.isfinite(p[si]).all():
                continue  # a diverged run: its items have no prediction
            out.append(
                RunPredictions(
                    dataset=preds.arm,
                    condition=cond,
                    seed=int(seed),
                    fold=-1,
                    split="heldout",
                    probs=p[si],
                    item_ids=ids,
                    official=preds.official,
                    human=preds.reference,
                    strata=strata,
                )
            )
    return out


def disjoint_records(grid: GridResults, temperatures: pd.DataFrame) -> list[RunPredictions]:
    """Per run (and its ``+ts`` twin): predictions on the disjoint evaluation sample."""
    arm = grid.arm
    temps = _temperature_lookup(temperatures)
    ids = np.arange(len(arm.disjoint_labels))
    out = []
    for i, row in enumerate(grid.run_keys()):
        p = grid.results[i].eval_probs["disjoint"]
        if not np.isfinite(p).all():
            continue
        t = temps[(row.condition, int(row.seed), int(row.fold))]
        for cond, probs in ((row.condition, p), (row.condition + TS_SUFFIX, apply_temperature(p, t))):
            out.append(
                RunPredictions(
                    dataset=arm.name,
                    condition=cond,
                    seed=int(row.seed),
                    fold=int(row.fold),
                    split="disjoint",
                    probs=probs,
                    item_ids=ids,
                    official=arm.disjoint_labels,
                )
            )
    return out


def metrics_table(records: Sequence[RunPredictions], n_bins: int = 15) -> pd.DataFrame:
    """The tidy table (``dataset, condition, mode, shape, seed, fold, split, stratum, metric,
    value``) of the given records (:func:`heldout_records`, :func:`disjoint_records`)."""
    return evaluate_runs(records, n_bins=n_bins)


# ----------------------------------------------------------------------------- cartography


def _stats_of(preds: ArmPredictions, cond: str) -> CartographyStats:
    a = preds.item_arrays[cond]
    return CartographyStats(
        confidence=a["heldout_confidence"], variability=a["heldout_variability"], correctness=a["heldout_correctness"]
    )


def heldout_cartography(preds: ArmPredictions) -> pd.DataFrame:
    """Claim 3 on held-out items: per (condition, seed), how the held-out dynamics (reference
    mode over epochs) relate to the reference entropy — ``spearman_confidence_entropy``,
    ``spearman_variability_entropy``, ``auroc_variability_ambiguous``. Tidy columns ``dataset,
    condition, seed, items, metric, value``."""
    rows = []
    for cond in preds.item_arrays:
        st = _stats_of(preds, cond)
        ok = np.isfinite(st.confidence).all(axis=1)
        if not ok.any():
            continue
        rel = human_uncertainty_relation(
            CartographyStats(st.confidence[ok], st.variability[ok], st.correctness[ok]), preds.reference
        )
        for metric in ("spearman_confidence_entropy", "spearman_variability_entropy", "auroc_variability_ambiguous"):
            for seed, value in zip(np.asarray(preds.seeds)[ok], np.asarray(rel[metric]).ravel()):
                rows.append(
                    {
                        "dataset": preds.arm,
                        "condition": cond,
                        "seed": int(seed),
                        "items": "held-out",
                        "metric": metric,
                        "value": float(value),
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "condition", "seed", "items", "metric", "value"])


def cartography_metric_rows(relations: pd.DataFrame) -> pd.DataFrame:
    """The held-out cartography relations (:func:`heldout_cartography`, claim 3's evidence) as
    rows of the tidy metrics table: ``split = "heldout"``, ``fold = -1`` (folds pooled),
    ``stratum = "all"``."""
    columns = list(TABLE_COLUMNS)
    if relations.empty:
        return pd.DataFrame(columns=columns)
    mode_shape = relations["condition"].str.split("/", n=1, expand=True)
    out = relations.assign(mode=mode_shape[0], shape=mode_shape[1], fold=-1, split="heldout", stratum="all")
    return out[columns].astype({"seed": np.int64, "fold": np.int64, "value": np.float64})


def training_cartography(grid: GridResults, reference: str = "human-mode") -> pd.DataFrame:
    """Description only: per run, how its dynamics on its labelled *training* items relate to the
    reference entropy (circular for ``human/human``, whose target there is ``h`` itself). Same
    tidy columns as :func:`heldout_cartography` (``items = "training"``) plus ``fold``."""
    arm = grid.arm
    ref_full = arm.reference_full()
    rows = []
    for row in grid.run_keys():
        if not row.training_dynamics:
            continue
        dyn, pos = grid.dynamics(row.condition, row.seed, row.fold)
        if not np.isfinite(dyn).all() or len(pos) < 3:
            continue
        h = ref_full[pos]
        target = {"official": arm.official[pos], "human-mode": human_mode(h, arm.official[pos]), "soft": h}[reference]
        rel = human_uncertainty_relation(cartography_stats(dyn, target), h)
        for metric in ("spearman_confidence_entropy", "spearman_variability_entropy", "auroc_variability_ambiguous"):
            rows.append(
                {
                    "dataset": arm.name,
                    "condition": row.condition,
                    "seed": int(row.seed),
                    "fold": int(row.fold),
                    "items": "training",
                    "metric": metric,
                    "value": float(rel[metric]),
                }
            )
    return pd.DataFrame(rows)


def hard_label_cartography(grid: GridResults, condition: str = "original/hard") -> pd.DataFrame:
    """The question cartography was made for (Swayamdipta et al. 2020): do the training
    dynamics of a model trained on hard official labels single out the items people find
    ambiguous (top tertile of reference entropy)? Per run of ``condition``: the AUROC of
    variability and of ``1 − confidence`` (official reference) on its labelled training items,
    against the AUROC of the plain predictive entropy of the final model on the same items; and
    the same three on its held-out items. Columns ``dataset, seed, fold, items, score, auroc``."""
    if condition not in grid.conditions:
        return pd.DataFrame(columns=["dataset", "seed", "fold", "items", "score", "auroc"])
    arm = grid.arm
    ref_full = arm.reference_full()
    rows = []
    for i, row in enumerate(grid.run_keys()):
        if row.condition != condition:
            continue
        for items in ("training", "held-out"):
            if items == "training" and not row.training_dynamics:
                continue
            if items == "training":
                dyn, pos = grid.dynamics(row.condition, row.seed, row.fold)
            else:
                pos, dyn = grid.heldout_dynamics(i)
            if not np.isfinite(dyn).all() or len(pos) < 3:
                continue
            amb = human_ambiguous(entropy(ref_full[pos]))
            st = cartography_stats(dyn, arm.official[pos])
            scores = {
                "variability": st.variability,
                "1 - confidence": 1.0 - st.confidence,
                "predictive entropy (final model)": entropy(dyn[-1]),
            }
            for name, s in scores.items():
                rows.append(
                    {
                        "dataset": arm.name,
                        "seed": int(row.seed),
                        "fold": int(row.fold),
                        "items": items,
                        "score": name,
                        "auroc": float(auroc(s, amb)),
                    }
                )
    return pd.DataFrame(rows)


def data_maps(grid: GridResults, seed: int = 0, fold: int = 0, conditions: Sequence[str] | None = None) -> pd.DataFrame:
    """Data-map tables (``softlab.cartography.data_map_table``) of one seed and fold per
    condition, on its labelled *training* items (description), stacked with a ``condition`` column."""
    from softlab.cartography import data_map_table

    arm = grid.arm
    ref_full = arm.reference_full()
    frames = []
    for cond in conditions or grid.conditions:
        if cond not in grid.conditions:
            continue
        dyn, pos = grid.dynamics(cond, seed, fold)
        if not np.isfinite(dyn).all():
            continue
        table = data_map_table(dyn, arm.official[pos], ref_full[pos], item_ids=arm.item_ids[pos])
        frames.append(table.assign(condition=cond, dataset=arm.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def churn_table(grid: GridResults, conditions: Sequence[str] | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Per condition and fold: disagreement of argmax predictions between seeds on the disjoint
    sample (churn, :func:`softlab.stats.churn_interval`)."""
    from softlab.stats import churn_interval

    rows = []
    for cond in conditions or grid.conditions:
        for fold in grid.arm.config.folds_to_run():
            sel = grid.runs.index[(grid.runs["condition"] == cond) & (grid.runs["fold"] == fold)]
            probs = [grid.results[i].eval_probs["disjoint"] for i in sel]
            probs = [p for p in probs if np.isfinite(p).all()]
            if len(probs) < 2:
                continue
            iv = churn_interval(np.stack(probs), n_boot=n_boot)
            rows.append(
                {
                    "dataset": grid.arm.name,
                    "condition": cond,
                    "fold": int(fold),
                    "runs": len(probs),
                    "churn": iv.estimate,
                    "ci_low": iv.low,
                    "ci_high": iv.high,
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the whole book


@dataclass
class BookResults:
    """Everything the chapters 4–7 show, for one parameter set (see the module docstring)."""

    params_name: str
    metrics: pd.DataFrame
    verdicts: pd.DataFrame
    heldout_cartography: pd.DataFrame
    training_cartography: pd.DataFrame
    hard_label_cartography: pd.DataFrame
    data_maps: pd.DataFrame
    churn: pd.DataFrame
    temperatures: pd.DataFrame
    fitted: pd.DataFrame
    teachers: pd.DataFrame
    learning_curves: pd.DataFrame
    runs: pd.DataFrame
    diverged: pd.DataFrame
    predictions: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    TABLES = (
        "metrics",
        "verdicts",
        "heldout_cartography",
        "training_cartography",
        "hard_label_cartography",
        "data_maps",
        "churn",
        "temperatures",
        "fitted",
        "teachers",
        "learning_curves",
        "runs",
        "diverged",
    )


DATA_MAP_CONDITIONS = ("original/hard", "human/hard", "human/synthetic", "human/human-shuffled", "human/human")


NOT_ANALYSIS: tuple[str, ...] = (
    "cli.py",
    "pipeline.py",
    "chapter.py",
    "plots.py",
    "plots_robustness.py",
    "present.py",
    "annotate/",
    "__main__.py",
)
"""Paths (relative to the package) whose code never reaches a cached table: the command line, the
notebook runner, a chapter's setup, figures, page text and the annotation app (all above
:mod:`softlab.report` in the layers, so no cached table can import them). Everything else is hashed."""


def analysis_sources(root: Path | None = None) -> list[Path]:
    """Every ``*.py`` file of the package under ``root`` (default: softlab's own folder) except
    :data:`NOT_ANALYSIS`, found by walking the tree, sorted by relative path: a module added
    later is hashed without anyone listing it."""
    base = Path(__file__).parent if root is None else Path(root)
    found = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        if "__pycache__" in rel or any(rel == x or (x.endswith("/") and rel.startswith(x)) for x in NOT_ANALYSIS):
            continue
        found.append(path)
    return found


def _analysis_fingerprint(root: Path | None = None, claims: Path | None = None) -> str:
    """SHA-256 over the relative path and source of every module of :func:`analysis_sources` and the
    claims file: editing, adding or removing any of them recomputes the book's tables (not its runs)."""
    from softlab.paths import PROJECT_ROOT

    base = Path(__file__).parent if root is None else Path(root)  # this module lives at the package root
    h = hashlib.sha256()
    for path in analysis_sources(base):
        rel = path.relative_to(base).as_posix()
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    claims_path = PROJECT_ROOT / "params" / "claims.yml" if claims is None else Path(claims)
    if claims_path.exists():
        h.update(b"claims\0" + claims_path.read_bytes())
    return h.hexdigest()


def book_key(arm_configs: Mapping[str, ArmConfig], train_cfg: Any, seeds: Sequence[int], n_boot: int) -> str:
    from softlab.experiment import PROTOCOL_VERSION, data_versions
    from softlab.train import TRAINER_VERSION

    return config_key(
        {
            "arms": {
                name: {
                    **cfg.key_dict(),
                    "conditions": list(cfg.conditions),
                    "run_folds": cfg.run_folds,
                    "data": data_versions(cfg),
                }
                for name, cfg in arm_configs.items()
            },
            "train": train_cfg.key_dict(),
            "seeds": [int(s) for s in seeds],
            "n_boot": int(n_boot),
            "protocol": PROTOCOL_VERSION,
            "trainer": TRAINER_VERSION,
            "results_version": RESULTS_VERSION,
            "analysis": _analysis_fingerprint(),
        }
    )


def compute_book(
    arm_configs: Mapping[str, ArmConfig],
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    n_boot: int = 2000,
    params_name: str = "custom",
    progress: bool = False,
    store: RunStore | None = None,
    executor: Any = None,
) -> BookResults:
    """Train (or load) every arm's grid and compute every table, one arm at a time (so at most
    one arm's runs are in memory). ``executor``: where missing runs train (see
    :func:`softlab.experiment.run_arm`; None reads ``$SOFTLAB_DASK``)."""
    from softlab.distributed import open_executor  # imports torch: only when the book is computed

    with open_executor(executor) as ex:  # one executor (e.g. one local Dask cluster) for every arm
        return _compute_book(arm_configs, train_cfg, seeds, n_boot, params_name, progress, store, ex)


def _compute_book(
    arm_configs: Mapping[str, ArmConfig],
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    n_boot: int,
    params_name: str,
    progress: bool,
    store: RunStore | None,
    executor: Any,
) -> BookResults:
    from softlab.inference import verdict_table

    t0 = time.perf_counter()
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in BookResults.TABLES if name != "verdicts"}
    predictions = {}
    timing = {}
    skipped: dict[str, str] = {}
    for name, cfg in arm_configs.items():
        start = time.perf_counter()
        try:
            arm = prepare_arm(cfg, progress=progress)
        except DataUnavailable as exc:  # e.g. CIFAR-10 images on an offline machine: skip, say why
            skipped[name] = str(exc)
            continue
        grid = run_arm(arm, train_cfg, seeds, progress=progress, store=store, executor=executor)
        temps = run_temperatures(grid)
        preds = arm_predictions(grid, temps)
        predictions[name] = preds
        relations = heldout_cartography(preds)
        parts["metrics"].append(metrics_table(heldout_records(preds) + disjoint_records(grid, temps)))
        parts["metrics"].append(cartography_metric_rows(relations))
        parts["heldout_cartography"].append(relations)
        if train_cfg.record_dynamics:
            parts["training_cartography"].append(training_cartography(grid))
            parts["hard_label_cartography"].append(hard_label_cartography(grid))
            first = arm.config.folds_to_run()[0]
            parts["data_maps"].append(data_maps(grid, seed=int(seeds[0]), fold=first, conditions=DATA_MAP_CONDITIONS))
        parts["churn"].append(churn_table(grid, n_boot=n_boot))
        parts["temperatures"].append(temps)
        parts["fitted"].append(arm.fitted_table(seeds))
        parts["teachers"].append(arm.teacher_info)
        parts["learning_curves"].append(grid.learning_curves())
        parts["runs"].append(grid.runs.assign(diverged=[r.diverged for r in grid.results]))
        parts["diverged"].append(grid.diverged().assign(dataset=arm.name))
        timing[name] = time.perf_counter() - start
        del grid
    tables = {
        k: (pd.concat([f for f in v if len(f)], ignore_index=True) if any(len(f) for f in v) else pd.DataFrame())
        for k, v in parts.items()
    }
    verdicts = verdict_table(predictions)
    meta = {
        "params_name": params_name,
        "seeds": [int(s) for s in seeds],
        "seconds_by_arm": timing,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "model": train_cfg.model.kind,
        "epochs": train_cfg.epochs,
        "folds": {n: c.folds for n, c in arm_configs.items()},
        "run_folds": {n: len(c.folds_to_run()) for n, c in arm_configs.items()},
    }
    return BookResults(params_name=params_name, verdicts=verdicts, predictions=predictions, meta=meta, **tables)


# ----------------------------------------------------------------------------- persistence


def _save_predictions(preds: ArmPredictions, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "seeds": np.asarray(preds.seeds),
        "official": preds.official,
        "reference": preds.reference,
    }
    for k, v in preds.strata.items():
        arrays[f"strata::{k}"] = v
    for k, v in preds.probs.items():
        arrays[f"probs::{k}"] = v
    for cond, d in preds.item_arrays.items():
        for k, v in d.items():
            arrays[f"items::{cond}::{k}"] = v
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    atomic_write_text(
        path.with_suffix(".json"),
        json.dumps(
            {
                "arm": preds.arm,
                "reference_name": preds.reference_name,
                "design": preds.design,
                "seed_clusters": None if preds.seed_clusters is None else np.asarray(preds.seed_clusters).tolist(),
                "clustered_conditions": list(preds.clustered_conditions),
            }
        ),
    )


def _load_predictions(path: Path) -> ArmPredictions:
    from softlab.inference import ArmPredictions

    info = json.loads(path.with_suffix(".json").read_text())
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    strata = {k.split("::", 1)[1]: v for k, v in arrays.items() if k.startswith("strata::")}
    probs = {k.split("::", 1)[1]: v for k, v in arrays.items() if k.startswith("probs::")}
    items: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("items::"):
            _, cond, name = k.split("::")
            items.setdefault(cond, {})[name] = v
    return ArmPredictions(
        arm=info["arm"],
        reference_name=info["reference_name"],
        seeds=arrays["seeds"],
        official=arrays["official"],
        reference=arrays["reference"],
        strata=strata,
        probs=probs,
        item_arrays=items,
        design=info["design"],
        seed_clusters=None if info.get("seed_clusters") is None else np.asarray(info["seed_clusters"], dtype=np.int64),
        clustered_conditions=tuple(info.get("clustered_conditions", ())),
    )


def save_book(results: BookResults, folder: Path) -> None:
    """Write ``results`` into ``folder`` atomically (a temporary folder renamed into place).

    Safe with concurrent writers of the same key (two notebooks computing the same book at
    once): the first complete folder wins, a later writer discards its own copy; a folder left
    incomplete by a killed writer (no ``meta.json``) is replaced."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}.{int(time.time() * 1e6)}")
    tmp.mkdir(parents=True)
    try:
        for name in BookResults.TABLES:
            df = getattr(results, name)
            df.reset_index(drop=True).to_parquet(tmp / f"{name}.parquet", index=False)
        for arm, preds in results.predictions.items():
            _save_predictions(preds, tmp / f"predictions__{arm}.npz")
        (tmp / "meta.json").write_text(json.dumps({**results.meta, "arms": list(results.predictions)}, indent=2))
        if folder.exists() and not (folder / "meta.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # left incomplete: never read, replaced
        try:
            os.rename(tmp, folder)  # atomic; fails when another writer's folder is already there
        except OSError:
            if not (folder / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer finished the same results first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_book(folder: Path) -> BookResults:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in BookResults.TABLES}
    predictions = {arm: _load_predictions(folder / f"predictions__{arm}.npz") for arm in meta["arms"]}
    return BookResults(params_name=meta["params_name"], predictions=predictions, meta=meta, **tables)


def metrics_path(params_name: str) -> Path:
    return results_dir() / params_name / "metrics.parquet"


def verdicts_path(params_name: str) -> Path:
    return results_dir() / params_name / "verdicts.parquet"


def cached_book_results(params: Mapping[str, Any]) -> BookResults | None:
    """The :class:`BookResults` of a parameter set when they are in the cache for this
    configuration and analysis code, else None: nothing is trained, prepared or computed (a page
    may show a set, such as the 1,100-seed ``stability`` set, only where it was run here)."""
    from softlab.experiment import configs_from_params

    arm_configs, train_cfg, seeds = configs_from_params(params)
    folder = cache_dir() / "book" / book_key(arm_configs, train_cfg, seeds, int(params.get("n_boot", 2000)))
    if not (folder / "meta.json").exists():
        return None
    results = load_book(folder)
    results.params_name = str(params.get("params_name", "custom"))
    return results


def cached_book_table(params: Mapping[str, Any], name: str) -> pd.DataFrame | None:
    """One table of :class:`BookResults` (a name of ``BookResults.TABLES``) of a parameter set
    when its results are in the cache, else None; reads only that table's file (a chapter shown
    before training, such as chapter 2's fitted ε and T, takes it from there instead of building
    every seed's conditions again)."""
    from softlab.experiment import configs_from_params

    if name not in BookResults.TABLES:
        raise ValueError(f"cached_book_table: unknown table {name!r}; expected one of {list(BookResults.TABLES)}")
    arm_configs, train_cfg, seeds = configs_from_params(params)
    folder = cache_dir() / "book" / book_key(arm_configs, train_cfg, seeds, int(params.get("n_boot", 2000)))
    if not (folder / "meta.json").exists():
        return None
    try:  # a damaged folder is healed by the next run (softlab.store.heal_result_folders), not here
        return pd.read_parquet(folder / f"{name}.parquet")
    except Exception:
        return None


def book_results(params: Mapping[str, Any], progress: bool = False, store: Any = None) -> BookResults:
    """The :class:`BookResults` of a notebook parameter set (``params_name`` and the
    parameters of :func:`softlab.experiment.configs_from_params`, plus ``n_boot``): loaded from
    the cache when this configuration and analysis code were computed before, else computed
    and cached. Also writes ``results/<params_name>/metrics.parquet`` and ``verdicts.parquet``."""
    from softlab.experiment import configs_from_params
    from softlab.inference import write_verdicts

    arm_configs, train_cfg, seeds = configs_from_params(params)
    n_boot = int(params.get("n_boot", 2000))
    name = str(params.get("params_name", "custom"))
    folder = cache_dir() / "book" / book_key(arm_configs, train_cfg, seeds, n_boot)
    if (folder / "meta.json").exists():
        results = load_book(folder)
        results.params_name = name
    else:
        results = compute_book(arm_configs, train_cfg, seeds, n_boot, params_name=name, progress=progress, store=store)
        save_book(results, folder)
    write_metrics_table(results.metrics, metrics_path(name))
    write_verdicts(results.verdicts, verdicts_path(name))
    return results
