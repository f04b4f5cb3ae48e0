"""Seed-stability statistics, paired bootstrap comparisons and difficulty strata.

Tidy metric tables (see :mod:`softlab.evaluation`) have one row per
``(dataset, condition, mode, shape, seed, fold, split, stratum, metric)`` and a ``value`` column.

Definitions
-----------
* **Across-seed spread**: for each group, the metric is first averaged over folds within a seed
  (``average_folds=True``), then the mean, the sample standard deviation (``ddof=1``) and the
  sample variance over seeds are reported.
* **Churn** between runs ``a`` and ``b``: the fraction of items whose argmax prediction differs.
  For ``R ≥ 2`` runs, churn is the mean over all ``R(R−1)/2`` unordered pairs. The per-item
  disagreement is the fraction of pairs that disagree on that item; its mean over items equals
  the churn.
* **Percentile bootstrap**: resample the units (or clusters of units) with replacement
  ``n_boot`` times (default 2000) with ``numpy.random.default_rng(seed)``; the interval is the
  ``(1−confidence)/2`` and ``(1+confidence)/2`` quantiles of the resampled statistic.
* **Paired difference** of condition B against baseline A: for every unit ``(seed, fold)``
  present in both, ``d = value_B − value_A``; reported as the mean of ``d`` with a bootstrap
  interval over units (or over seeds with ``cluster="seed"``).
* **Variance ratio** of condition B over A: ``Var_seeds(B) / Var_seeds(A)`` of the fold-averaged
  metric, over seeds present in both; bootstrap resamples seeds, the same seeds for both
  conditions (paired).
* **Difficulty strata**: tertiles of human entropy ``H(h)`` (nats). With thresholds ``t1``, ``t2``
  the 1/3 and 2/3 quantiles (numpy's default linear interpolation) of the entropies given:
  ``easy``: ``H ≤ t1``; ``medium``: ``t1 < H ≤ t2``; ``hard``: ``H > t2``. Items with equal
  entropy always share a stratum, so strata can be unequal in size (e.g. many unanimous items
  with ``H = 0`` all land in ``easy``; ``medium`` can even be empty).
* **Mode-shifted** items: human mode (ties towards the official label) ≠ official label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from softlab.data.annotations import mode_shifted  # re-exported: the one definition
from softlab.metrics import entropy

__all__ = [
    "DEFAULT_N_BOOT",
    "KEY_COLUMNS",
    "STRATA",
    "Interval",
    "bootstrap_ci",
    "bootstrap_summary",
    "churn",
    "churn_interval",
    "cluster_bootstrap_mean",
    "difficulty_strata",
    "item_disagreement",
    "mode_shifted",
    "paired_differences",
    "predictions_of",
    "seed_summary",
    "stratum_masks",
    "tertile_thresholds",
    "variance_ratio",
]

DEFAULT_N_BOOT: int = 2000
KEY_COLUMNS: tuple[str, ...] = ("dataset", "condition", "mode", "shape", "split", "stratum", "metric")
"""Columns that identify a metric series (everything except seed, fold and value)."""
STRATA: tuple[str, ...] = ("all", "easy", "medium", "hard", "mode-shifted")
_DIFFICULTY = ("easy", "medium", "hard")


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int


def _check_boot_args(n_boot: int, confidence: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")


def _check_values(values: ArrayLike) -> NDArray[np.float64]:
    """The resampled units' values: a non-empty 1-D array of finite numbers, as float64."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values: contains NaN or infinity; drop undefined values first")
    return v


_MAX_INDICES = 2_000_000
"""Resamples are drawn in chunks of at most this many unit indices (bounds memory)."""


def _resample(
    n_units: int, n_boot: int, seed: int, statistic_of: Callable[[NDArray[np.int64]], NDArray[np.float64]]
) -> NDArray[np.float64]:
    """``n_boot`` bootstrap replicates: resample ``r`` draws ``n_units`` unit indices with
    replacement (``numpy.random.default_rng(seed).integers``, resamples in order, in chunks) and
    ``statistic_of(indices)`` maps a chunk ``(m, n_units)`` of them to ``m`` statistics."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _MAX_INDICES // n_units))
    boots = []
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        boots.append(statistic_of(rng.integers(0, n_units, size=(m, n_units))))
        done += m
    return np.concatenate(boots)


def _quantiles(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    statistic: Callable[..., np.ndarray] = np.mean,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` of 1-D ``values``.

    ``statistic(samples, axis=-1)`` must reduce the last axis (``np.mean``, ``np.median``, ...).
    The estimate is ``statistic(values)`` on the original sample. Resamples are drawn in chunks to
    bound memory. Same ``seed`` ⇒ same interval.
    """
    _check_boot_args(n_boot, confidence)
    v = _check_values(values)
    boot = _resample(v.size, n_boot, seed, lambda idx: np.asarray(statistic(v[idx], axis=-1), dtype=np.float64))
    lo, hi = _quantiles(boot, confidence)
    return Interval(float(statistic(v)), lo, hi, confidence, v.size)


def cluster_bootstrap_mean(
    values: np.ndarray | Sequence[float],
    clusters: np.ndarray | Sequence[object] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of ``values`` with a percentile-bootstrap interval that resamples whole clusters.

    With ``clusters=None`` each value is its own cluster (ordinary bootstrap of the mean). A
    resample draws ``K`` clusters with replacement (``K`` = number of clusters) and takes the mean
    of all values in the drawn clusters (clusters weighted by their size). ``n`` of the result is
    the number of clusters.
    """
    _check_boot_args(n_boot, confidence)
    v = _check_values(values)
    if clusters is None:
        sums, counts = v, np.ones_like(v)
    else:
        c = np.asarray(clusters)
        if c.shape != v.shape:
            raise ValueError(f"clusters: expected shape {v.shape} like values, got {c.shape}")
        _, inverse = np.unique(c, return_inverse=True)
        sums = np.bincount(inverse, weights=v).astype(np.float64, copy=False)  # float64 already
        counts = np.bincount(inverse).astype(np.float64)
    k = sums.size
    boot = _resample(k, n_boot, seed, lambda idx: sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    lo, hi = _quantiles(boot, confidence)
    return Interval(float(v.mean()), lo, hi, confidence, int(k))


# ----------------------------------------------------------------------------------------------
# Tidy-table statistics
# ----------------------------------------------------------------------------------------------


def _check_columns(df: pd.DataFrame, needed: Sequence[str], name: str = "df") -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")


def _default_by(df: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    return [c for c in KEY_COLUMNS if c in df.columns and c not in exclude]


def _per_seed(df: pd.DataFrame, by: list[str], average_folds: bool) -> pd.DataFrame:
    """Rows ``by + [seed] (+ fold)`` with NaN values dropped; folds averaged if asked."""
    clean = df.dropna(subset=["value"])
    if average_folds and "fold" in clean.columns:
        # as_index=False gives a DataFrame (pandas-stubs types every SeriesGroupBy.mean as a Series)
        return cast(
            pd.DataFrame, clean.groupby(by + ["seed"], as_index=False, sort=True, observed=True)["value"].mean()
        )
    return clean


def seed_summary(df: pd.DataFrame, by: Sequence[str] | None = None, average_folds: bool = True) -> pd.DataFrame:
    """Across-seed mean, SD and variance of each metric series.

    ``df`` needs ``seed`` and ``value`` (and ``fold`` when ``average_folds``). ``by`` defaults to
    the :data:`KEY_COLUMNS` present. NaN values are dropped first. Output columns:
    ``by + [n_seeds, mean, sd, variance]`` with ``sd``/``variance`` the sample (``ddof=1``)
    statistics over seeds (NaN with a single seed). With ``average_folds=False`` the rows of each
    group (seed × fold) are treated as the sample and ``n_seeds`` counts rows.
    """
    _check_columns(df, ["seed", "value"])
    by = list(by) if by is not None else _default_by(df)
    _check_columns(df, by)
    per_seed = _per_seed(df, by, average_folds)
    g = per_seed.groupby(by, sort=True, observed=True)["value"]
    out = g.agg(n_seeds="count", mean="mean", sd=lambda s: s.std(ddof=1), variance=lambda s: s.var(ddof=1))
    return out.reset_index()


def bootstrap_summary(
    df: pd.DataFrame,
    by: Sequence[str] | None = None,
    cluster: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``value`` per group with a percentile-bootstrap interval over its rows.

    Each row (a seed × fold unit) is resampled; with ``cluster="seed"`` whole seeds are resampled
    (see :func:`cluster_bootstrap_mean`). NaN values are dropped. Output columns:
    ``by + [n, estimate, ci_low, ci_high]``.
    """
    _check_columns(df, ["value"])
    by = list(by) if by is not None else _default_by(df)
    _check_columns(df, by + ([cluster] if cluster else []))
    rows = []
    for key, part in df.dropna(subset=["value"]).groupby(by, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        iv = cluster_bootstrap_mean(
            part["value"].to_numpy(),
            part[cluster].to_numpy() if cluster else None,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        )
        rows.append((*key, iv.n, iv.estimate, iv.low, iv.high))
    return pd.DataFrame(rows, columns=by + ["n", "estimate", "ci_low", "ci_high"])


def paired_differences(
    df: pd.DataFrame,
    baseline: str,
    conditions: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
    unit: Sequence[str] = ("seed", "fold"),
    cluster: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired differences ``value[condition] − value[baseline]`` with bootstrap intervals.

    Pairs are matched on ``by + unit`` (default ``by``: dataset, split, stratum, metric — whichever
    are present; ``unit``: seed and fold). Units where either side is missing or NaN are dropped.
    ``conditions`` defaults to every condition other than ``baseline``. With ``cluster="seed"``
    the bootstrap resamples seeds (keeping all folds of a seed together), otherwise units.

    Output columns: ``by + [baseline, condition, n_pairs, n_clusters, mean_baseline,
    mean_condition, difference, ci_low, ci_high]``; ``difference`` is the mean paired difference.
    """
    _check_columns(df, ["condition", "value", *unit])
    by = list(by) if by is not None else _default_by(df, exclude=("condition", "mode", "shape"))
    _check_columns(df, by)
    if cluster is not None and cluster not in unit:
        raise ValueError(f"cluster: must be one of the unit columns {list(unit)}, got {cluster!r}")
    present = list(pd.unique(df["condition"]))
    if baseline not in present:
        raise ValueError(f"baseline: condition {baseline!r} not in table; has {present}")
    targets = [c for c in present if c != baseline] if conditions is None else list(conditions)
    for c in targets:
        if c not in present:
            raise ValueError(f"conditions: condition {c!r} not in table; has {present}")
    keys = by + list(unit)
    clean = df.dropna(subset=["value"])
    base = clean[clean["condition"] == baseline][keys + ["value"]]
    if base.duplicated(keys).any():
        raise ValueError(f"df: baseline {baseline!r} has several rows per {keys}; add columns to `by`")
    rows = []
    for cond in targets:
        other = clean[clean["condition"] == cond][keys + ["value"]]
        if other.duplicated(keys).any():
            raise ValueError(f"df: condition {cond!r} has several rows per {keys}; add columns to `by`")
        merged = base.merge(other, on=keys, suffixes=("_base", "_cond"))
        groups = merged.groupby(by, sort=True, observed=True) if by else [((), merged)]
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            d = (part["value_cond"] - part["value_base"]).to_numpy()
            iv = cluster_bootstrap_mean(
                d,
                part[cluster].to_numpy() if cluster else None,
                n_boot=n_boot,
                confidence=confidence,
                seed=seed,
            )
            rows.append(
                (
                    *key,
                    baseline,
                    cond,
                    d.size,
                    iv.n,
                    float(part["value_base"].mean()),
                    float(part["value_cond"].mean()),
                    iv.estimate,
                    iv.low,
                    iv.high,
                )
            )
    cols = by + [
        "baseline",
        "condition",
        "n_pairs",
        "n_clusters",
        "mean_baseline",
        "mean_condition",
        "difference",
        "ci_low",
        "ci_high",
    ]
    return pd.DataFrame(rows, columns=cols)


def variance_ratio(
    df: pd.DataFrame,
    numerator: str,
    denominator: str,
    by: Sequence[str] | None = None,
    average_folds: bool = True,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Ratio of across-seed variances ``Var(numerator) / Var(denominator)`` with a paired bootstrap.

    Per group (default ``by``: dataset, split, stratum, metric present), the metric is averaged over
    folds within each seed (``average_folds``), the seeds present in both conditions are kept, and
    the sample variances (``ddof=1``) over those seeds are compared. Bootstrap: draw seeds with
    replacement (the same draw for both conditions) and recompute the ratio; draws in which the
    denominator variance is 0 (e.g. a single distinct seed drawn) are undefined, excluded, and
    counted in ``n_degenerate``. A ratio below 1 means the numerator condition is more stable;
    ``1 − ratio`` is the relative variance reduction.

    Output columns: ``by + [numerator, denominator, n_seeds, var_numerator, var_denominator,
    ratio, ci_low, ci_high, n_degenerate]``. Groups with fewer than 2 paired seeds get NaN.
    """
    _check_boot_args(n_boot, confidence)
    _check_columns(df, ["condition", "seed", "value"])
    by = list(by) if by is not None else _default_by(df, exclude=("condition", "mode", "shape"))
    _check_columns(df, by)
    present = list(pd.unique(df["condition"]))
    for name, cond in (("numerator", numerator), ("denominator", denominator)):
        if cond not in present:
            raise ValueError(f"{name}: condition {cond!r} not in table; has {present}")
    keys = by + ["seed"]

    def seeds_of(cond: str) -> pd.DataFrame:
        part = df[df["condition"] == cond]
        per = _per_seed(part, keys, average_folds)
        if per.duplicated(keys).any():
            raise ValueError(f"df: condition {cond!r} has several rows per {keys}; add columns to `by`")
        return per[keys + ["value"]]

    merged = seeds_of(denominator).merge(seeds_of(numerator), on=keys, suffixes=("_den", "_num"))
    rows = []
    groups = merged.groupby(by, sort=True, observed=True) if by else [((), merged)]
    alpha = 1.0 - confidence
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        num = part["value_num"].to_numpy()
        den = part["value_den"].to_numpy()
        n = num.size
        if n < 2:
            rows.append((*key, numerator, denominator, n, np.nan, np.nan, np.nan, np.nan, np.nan, 0))
            continue
        var_num = float(num.var(ddof=1))
        var_den = float(den.var(ddof=1))
        ratio = var_num / var_den if var_den > 0 else np.nan
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        bn = num[idx].var(axis=1, ddof=1)
        bd = den[idx].var(axis=1, ddof=1)
        ok = bd > 0
        n_degenerate = int((~ok).sum())
        if ok.any():
            lo, hi = np.quantile(bn[ok] / bd[ok], [alpha / 2.0, 1.0 - alpha / 2.0])
        else:
            lo = hi = np.nan
        rows.append((*key, numerator, denominator, n, var_num, var_den, ratio, float(lo), float(hi), n_degenerate))
    cols = by + [
        "numerator",
        "denominator",
        "n_seeds",
        "var_numerator",
        "var_denominator",
        "ratio",
        "ci_low",
        "ci_high",
        "n_degenerate",
    ]
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------------------------
# Churn
# ----------------------------------------------------------------------------------------------


def predictions_of(probs_or_predictions: ArrayLike) -> np.ndarray:
    """Argmax predictions ``(runs, items)`` from probabilities ``(runs, items, classes)``, or integer
    predictions ``(runs, items)`` passed through."""
    a = np.asarray(probs_or_predictions)
    if a.ndim == 3:
        return np.argmax(a, axis=-1).astype(np.int64)
    if a.ndim == 2 and a.dtype.kind in "iu":
        return a.astype(np.int64)
    raise ValueError(
        "probs_or_predictions: expected probabilities (runs, items, classes) or integer predictions "
        f"(runs, items); got shape {a.shape}, dtype {a.dtype}"
    )


def item_disagreement(probs_or_predictions: ArrayLike) -> np.ndarray:
    """Per item, the fraction of the ``R(R−1)/2`` pairs of runs whose argmax predictions differ.

    Computed from the class counts ``n_k`` of the item's predictions:
    ``1 − Σ_k n_k(n_k−1) / (R(R−1))``. Needs at least 2 runs. Shape ``(items,)``.
    """
    pred = predictions_of(probs_or_predictions)
    n_runs, n_items = pred.shape
    if n_runs < 2:
        raise ValueError(f"probs_or_predictions: churn needs at least 2 runs, got {n_runs}")
    n_classes = int(pred.max()) + 1 if pred.size else 1
    flat = pred + n_classes * np.arange(n_items)[None, :]
    counts = np.bincount(flat.ravel(), minlength=n_items * n_classes).reshape(n_items, n_classes)
    agree_pairs = (counts * (counts - 1)).sum(axis=1) / 2.0
    total_pairs = n_runs * (n_runs - 1) / 2.0
    return 1.0 - agree_pairs / total_pairs


def churn(probs_or_predictions: ArrayLike) -> float:
    """Mean over pairs of runs of the fraction of items whose argmax prediction differs."""
    return float(item_disagreement(probs_or_predictions).mean())


def churn_interval(
    probs_or_predictions: ArrayLike,
    n_boot: int = DEFAULT_N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Churn with a percentile-bootstrap interval over items (the runs are held fixed)."""
    return bootstrap_ci(item_disagreement(probs_or_predictions), np.mean, n_boot, confidence, seed)


# ----------------------------------------------------------------------------------------------
# Strata
# ----------------------------------------------------------------------------------------------


def tertile_thresholds(human_entropy: ArrayLike) -> tuple[float, float]:
    """The 1/3 and 2/3 quantiles ``(t1, t2)`` of the given human entropies (nats)."""
    e = np.asarray(human_entropy, dtype=np.float64).ravel()
    if e.size == 0 or not np.all(np.isfinite(e)):
        raise ValueError("human_entropy: expected a non-empty array of finite entropies")
    t1, t2 = np.quantile(e, [1.0 / 3.0, 2.0 / 3.0])
    return float(t1), float(t2)


def difficulty_strata(human_entropy: ArrayLike, thresholds: tuple[float, float] | None = None) -> np.ndarray:
    """Label each item ``"easy"``, ``"medium"`` or ``"hard"`` by human entropy.

    ``easy``: ``H ≤ t1``; ``medium``: ``t1 < H ≤ t2``; ``hard``: ``H > t2``, with ``(t1, t2)``
    from :func:`tertile_thresholds` of these entropies unless given (e.g. thresholds of the whole
    pool when labelling one fold). Equal entropies always share a stratum.
    """
    e = np.asarray(human_entropy, dtype=np.float64)
    t1, t2 = tertile_thresholds(e) if thresholds is None else thresholds
    if t1 > t2:
        raise ValueError(f"thresholds: expected t1 <= t2, got {thresholds!r}")
    out = np.full(e.shape, "medium", dtype=object)
    out[e <= t1] = "easy"
    out[e > t2] = "hard"
    return out.astype(str)


def stratum_masks(
    human: ArrayLike,
    official: ArrayLike | None,
    thresholds: tuple[float, float] | None = None,
) -> dict[str, np.ndarray]:
    """Boolean item masks for the strata ``all``, ``easy``, ``medium``, ``hard``, ``mode-shifted``.

    ``human`` is ``(items, classes)``; difficulty uses :func:`difficulty_strata` of ``H(h)``.
    Without official labels (``official=None``) there is no ``mode-shifted`` mask.
    """
    h = np.asarray(human, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"human: expected shape (n_items, n_classes), got {h.shape}")
    strata = difficulty_strata(entropy(h), thresholds)
    masks = {"all": np.ones(h.shape[0], dtype=bool)}
    for name in _DIFFICULTY:
        masks[name] = strata == name
    if official is not None:
        masks["mode-shifted"] = mode_shifted(h, official)
    return masks
