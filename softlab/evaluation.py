"""Turn trained runs into one tidy metric table.

Input: a list of :class:`RunPredictions`, one per trained model and evaluation split — a plain
record independent of the trainer. Output: a :class:`pandas.DataFrame` with the columns
:data:`TABLE_COLUMNS` = ``dataset, condition, mode, shape, seed, fold, split, stratum, metric,
value`` — one row per (run, stratum, metric).

* ``condition`` is ``"<mode>/<shape>"`` (e.g. ``"original/hard"``, ``"human/human-shuffled"``);
  ``mode`` and ``shape`` are its two parts.
* ``stratum``: ``all`` always; where the record has human labels also ``easy``, ``medium``,
  ``hard`` (human-entropy tertiles, :func:`softlab.stats.difficulty_strata`) and
  ``mode-shifted`` (human mode ≠ official label). Tertile thresholds are computed once per
  ``(dataset, split)`` over the union of the distinct items (by ``item_ids``) of all records
  given, so an item is in the same stratum in every fold, seed and condition. Strata with no
  items produce no rows.
* ``metric``: the names of :func:`softlab.metrics.metric_suite` (official-label metrics always,
  human-alignment metrics where human labels exist) plus ``n_items`` (items in the stratum).
  Undefined values (e.g. a Spearman correlation over items that all have the same human entropy)
  are NaN.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from softlab.io import atomic_path
from softlab.metrics import DEFAULT_N_BINS, entropy, human_mode, metric_suite, reliability_bins
from softlab.stats import STRATA, item_disagreement, stratum_masks, tertile_thresholds
from softlab.validation import check_labels, check_probability_rows, check_shape

__all__ = [
    "TABLE_COLUMNS",
    "RunPredictions",
    "disagreement_table",
    "entropy_thresholds",
    "evaluate_runs",
    "parse_condition",
    "read_metrics_table",
    "reliability_frame",
    "write_metrics_table",
]

TABLE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "condition",
    "mode",
    "shape",
    "seed",
    "fold",
    "split",
    "stratum",
    "metric",
    "value",
)


def parse_condition(condition: str) -> tuple[str, str]:
    """Split ``"<mode>/<shape>"`` into ``(mode, shape)``; ValueError on any other form."""
    if not isinstance(condition, str) or condition.count("/") != 1:
        raise ValueError(f"condition: expected '<mode>/<shape>' such as 'original/hard', got {condition!r}")
    mode, shape = condition.split("/")
    if not mode or not shape:
        raise ValueError(f"condition: expected '<mode>/<shape>' such as 'original/hard', got {condition!r}")
    return mode, shape


@dataclass(frozen=True, eq=False)
class RunPredictions:
    """Predictions of one trained model on one evaluation split.

    Attributes
    ----------
    dataset: dataset name (``"fashion-mnist"``, ...).
    condition: training condition ``"<mode>/<shape>"``.
    seed, fold: the run's seed and cross-validation fold (use ``-1`` for "no fold").
    split: name of the evaluated item set (e.g. ``"heldout"`` for the held-out fold,
        ``"disjoint"`` for the large official-label split).
    probs: float array ``(items, classes)``, predicted distributions.
    item_ids: int array ``(items,)``, stable item identifiers within ``(dataset, split)``.
    official: int array ``(items,)``, official labels.
    human: float array ``(items, classes)`` of human (reference) distributions — the evaluation
        reference, identical for every condition — or ``None`` where there are none.
    strata: optional precomputed item masks ``{stratum: (items,) bool}`` (e.g. difficulty
        tertiles fitted per fold on training items, :meth:`softlab.experiment.Arm.difficulty`);
        when given they replace the tertiles computed from the records, and ``all`` is added.
    """

    dataset: str
    condition: str
    seed: int
    fold: int
    split: str
    probs: np.ndarray
    item_ids: np.ndarray
    official: np.ndarray
    human: np.ndarray | None = None
    strata: Mapping[str, np.ndarray] | None = None
    mode: str = field(init=False)
    shape: str = field(init=False)

    def __post_init__(self) -> None:
        mode, shape = parse_condition(self.condition)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "shape", shape)
        where = self.where
        probs = np.asarray(self.probs)
        if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
            raise ValueError(f"{where}.probs: expected shape (n_items, n_classes), got {probs.shape}")
        n_items, n_classes = probs.shape
        ids = np.asarray(self.item_ids)
        if ids.shape != (n_items,):
            raise ValueError(f"{where}.item_ids: expected shape ({n_items},), got {ids.shape}")
        if len(np.unique(ids)) != n_items:
            raise ValueError(f"{where}.item_ids: item ids must be unique")
        off = check_shape(check_labels(self.official, f"{where}.official", n_classes), (n_items,), f"{where}.official")
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "official", off)
        if self.human is not None:
            h = check_probability_rows(self.human, f"{where}.human")
            object.__setattr__(self, "human", check_shape(h, (n_items, n_classes), f"{where}.human"))
        if self.strata is not None:
            masks = {}
            for name, mask in self.strata.items():
                m = np.asarray(mask)
                if m.shape != (n_items,) or m.dtype != bool:
                    raise ValueError(
                        f"{where}.strata[{name!r}]: expected a boolean mask shaped ({n_items},), "
                        f"got {m.shape} {m.dtype}"
                    )
                masks[str(name)] = m
            object.__setattr__(self, "strata", masks)

    @property
    def where(self) -> str:
        return (
            f"RunPredictions({self.dataset!r}, {self.condition!r}, seed={self.seed}, "
            f"fold={self.fold}, split={self.split!r})"
        )


def _digest(rec: RunPredictions) -> str:
    h = hashlib.sha256()
    strata = (
        []
        if rec.strata is None
        else [np.frombuffer(k.encode(), dtype=np.uint8) for k in sorted(rec.strata)]
        + [rec.strata[k] for k in sorted(rec.strata)]
    )
    for arr in (rec.item_ids, rec.official, rec.human, *strata):
        if arr is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(arr)
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def entropy_thresholds(records: Iterable[RunPredictions]) -> dict[tuple[str, str], tuple[float, float]]:
    """Human-entropy tertile thresholds ``(t1, t2)`` per ``(dataset, split)``, over the distinct
    items (by item id; first occurrence wins) of the records that have human labels."""
    pools: dict[tuple[str, str], dict[object, float]] = {}
    for rec in records:
        if rec.human is None:
            continue
        pool = pools.setdefault((rec.dataset, rec.split), {})
        ent = entropy(rec.human)
        for item, e in zip(rec.item_ids.tolist(), ent.tolist()):
            pool.setdefault(item, e)
    return {key: tertile_thresholds(np.fromiter(pool.values(), dtype=np.float64)) for key, pool in pools.items()}


def _groups(records: Sequence[RunPredictions], by_seed: bool) -> dict[tuple[object, ...], list[RunPredictions]]:
    groups: dict[tuple[object, ...], list[RunPredictions]] = {}
    for rec in records:
        key: tuple[object, ...] = (rec.dataset, rec.split, rec.fold, _digest(rec), rec.probs.shape[1])
        if not by_seed:
            key = (rec.condition,) + key
        groups.setdefault(key, []).append(rec)
    return groups


_MAX_STACK_ELEMENTS = 4_000_000
"""Records are stacked at most this many probabilities at a time (bounds memory: ~32 MB per
float64 copy)."""


def _chunks(group: list[RunPredictions]) -> list[list[RunPredictions]]:
    per_run = group[0].probs.size
    size = max(1, _MAX_STACK_ELEMENTS // per_run)
    return [group[i : i + size] for i in range(0, len(group), size)]


def _masks_for(
    rec: RunPredictions,
    thresholds: Mapping[tuple[str, str], tuple[float, float]],
    strata: Sequence[str],
) -> dict[str, np.ndarray]:
    if rec.strata is not None:
        masks = {"all": np.ones(rec.probs.shape[0], dtype=bool), **rec.strata}
    elif rec.human is None:
        masks = {"all": np.ones(rec.probs.shape[0], dtype=bool)}
    else:
        masks = stratum_masks(rec.human, rec.official, thresholds[(rec.dataset, rec.split)])
    return {name: masks[name] for name in strata if name in masks and masks[name].any()}


def _thresholds(
    records: Sequence[RunPredictions], given: Mapping[tuple[str, str], tuple[float, float]] | None
) -> dict[tuple[str, str], tuple[float, float]]:
    """:func:`entropy_thresholds` of ``records``, overridden per ``(dataset, split)`` by ``given``."""
    return {**entropy_thresholds(records), **(given or {})}


def _check_records(records: Iterable[RunPredictions]) -> list[RunPredictions]:
    recs = list(records)
    if not recs:
        raise ValueError("records: expected at least one RunPredictions")
    for i, rec in enumerate(recs):
        if not isinstance(rec, RunPredictions):
            raise ValueError(f"records[{i}]: expected RunPredictions, got {type(rec).__name__}")
    return recs


def _check_strata(strata: Sequence[str]) -> list[str]:
    bad = [s for s in strata if s not in STRATA]
    if bad:
        raise ValueError(f"strata: unknown stratum {bad}; expected a subset of {list(STRATA)}")
    return list(strata)


def evaluate_runs(
    records: Iterable[RunPredictions],
    n_bins: int = DEFAULT_N_BINS,
    strata: Sequence[str] = STRATA,
    thresholds: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """The tidy metric table (:data:`TABLE_COLUMNS`) of every record, stratum and metric.

    Records that share dataset, split, fold, items, official and human labels are stacked and
    evaluated in one vectorised call. ``thresholds`` overrides the per-``(dataset, split)``
    entropy tertiles (default :func:`entropy_thresholds` of ``records``).
    """
    recs = _check_records(records)
    strata = _check_strata(strata)
    thr = _thresholds(recs, thresholds)
    cols: dict[str, list[object]] = {c: [] for c in TABLE_COLUMNS}
    stacks = [chunk for whole in _groups(recs, by_seed=True).values() for chunk in _chunks(whole)]
    for group in stacks:
        first = group[0]
        probs = np.stack([r.probs for r in group])  # (R, N, C)
        for stratum, mask in _masks_for(first, thr, strata).items():
            human = None if first.human is None else first.human[mask]
            try:
                values = metric_suite(probs[:, mask], first.official[mask], human, n_bins)
            except ValueError as err:
                names = ", ".join(r.where for r in group)
                raise ValueError(f"evaluating {names}: {err}") from err
            values["n_items"] = np.full(len(group), float(mask.sum()))
            for metric, vals in values.items():
                for rec, v in zip(group, np.asarray(vals).tolist()):
                    cols["dataset"].append(rec.dataset)
                    cols["condition"].append(rec.condition)
                    cols["mode"].append(rec.mode)
                    cols["shape"].append(rec.shape)
                    cols["seed"].append(int(rec.seed))
                    cols["fold"].append(int(rec.fold))
                    cols["split"].append(rec.split)
                    cols["stratum"].append(stratum)
                    cols["metric"].append(metric)
                    cols["value"].append(float(v))
    df = pd.DataFrame(cols)
    df["seed"] = df["seed"].astype(np.int64)
    df["fold"] = df["fold"].astype(np.int64)
    df["value"] = df["value"].astype(np.float64)
    return df


def reliability_frame(
    records: Iterable[RunPredictions],
    reference: str = "official",
    stratum: str = "all",
    n_bins: int = DEFAULT_N_BINS,
    thresholds: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Reliability-diagram bins of every record (input for :func:`softlab.plots.plot_reliability`).

    ``reference`` is ``"official"`` or ``"human-mode"`` (records without human labels are skipped
    for the latter and for strata other than ``all``). Columns: ``dataset, condition, mode, shape,
    seed, fold, split, stratum, reference, bin, bin_lower, bin_upper, mean_confidence, accuracy,
    count`` (empty bins: count 0, NaN confidence/accuracy).
    """
    if reference not in ("official", "human-mode"):
        raise ValueError(f"reference: expected 'official' or 'human-mode', got {reference!r}")
    recs = _check_records(records)
    _check_strata([stratum])
    thr = _thresholds(recs, thresholds)
    frames = []
    for rec in recs:
        if rec.human is None and (reference != "official" or stratum != "all"):
            continue
        mask = _masks_for(rec, thr, [stratum]).get(stratum)
        if mask is None:
            continue
        labels = rec.official if rec.human is None or reference == "official" else human_mode(rec.human, rec.official)
        rb = reliability_bins(rec.probs[mask], labels[mask], n_bins)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": rec.dataset,
                    "condition": rec.condition,
                    "mode": rec.mode,
                    "shape": rec.shape,
                    "seed": int(rec.seed),
                    "fold": int(rec.fold),
                    "split": rec.split,
                    "stratum": stratum,
                    "reference": reference,
                    "bin": np.arange(n_bins),
                    "bin_lower": rb.bin_lower,
                    "bin_upper": rb.bin_upper,
                    "mean_confidence": rb.mean_confidence,
                    "accuracy": rb.accuracy,
                    "count": rb.count,
                }
            )
        )
    if not frames:
        raise ValueError(f"records: none has what reference={reference!r}, stratum={stratum!r} needs")
    return pd.concat(frames, ignore_index=True)


def disagreement_table(
    records: Iterable[RunPredictions],
    strata: Sequence[str] = STRATA,
    thresholds: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Churn across seeds (:func:`softlab.stats.churn`) per condition, fold, split and stratum.

    Runs of one condition are compared when they share dataset, split, fold and items. Columns:
    ``dataset, condition, mode, shape, fold, split, stratum, n_runs, churn``; groups with fewer
    than 2 runs are left out.
    """
    recs = _check_records(records)
    strata = _check_strata(strata)
    thr = _thresholds(recs, thresholds)
    rows = []
    for group in _groups(recs, by_seed=False).values():
        if len(group) < 2:
            continue
        first = group[0]
        pred = np.stack([np.argmax(r.probs, axis=-1) for r in group])
        per_item = item_disagreement(pred)
        for stratum, mask in _masks_for(first, thr, strata).items():
            rows.append(
                (
                    first.dataset,
                    first.condition,
                    first.mode,
                    first.shape,
                    int(first.fold),
                    first.split,
                    stratum,
                    len(group),
                    float(per_item[mask].mean()),
                )
            )
    cols = ["dataset", "condition", "mode", "shape", "fold", "split", "stratum", "n_runs", "churn"]
    return pd.DataFrame(rows, columns=cols)


def write_metrics_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a tidy metric table to Parquet atomically (temporary file + rename).

    ``df`` must have the columns :data:`TABLE_COLUMNS` (extra columns are kept).
    """
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"df: missing column(s) {missing} of the metric table")
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False, engine="pyarrow")


def read_metrics_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`write_metrics_table`."""
    df = pd.read_parquet(path, engine="pyarrow")
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{os.fspath(path)}: missing column(s) {missing} of the metric table")
    return df
