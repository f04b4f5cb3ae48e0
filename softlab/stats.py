"""Descriptive seed statistics the book shows beside the verdicts: churn across runs and the item strata.

Verdicts (paired differences, variance ratios, their intervals) live in :mod:`softlab.inference`;
this module holds what the evaluation tables and the pool construction need.

Definitions
-----------
* **Churn** between runs ``a`` and ``b``: the fraction of items whose argmax prediction differs.
  For ``R ≥ 2`` runs, churn is the mean over all ``R(R−1)/2`` unordered pairs. The per-item
  disagreement is the fraction of pairs that disagree on that item; its mean over items equals
  the churn. Its interval is a percentile bootstrap over items (``n_boot`` resamples, default
  2000, ``numpy.random.default_rng(seed)``; the runs are held fixed).
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

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softlab.data.annotations import mode_shifted  # re-exported: the one definition
from softlab.metrics import entropy

__all__ = [
    "DEFAULT_N_BOOT",
    "STRATA",
    "Interval",
    "churn",
    "churn_interval",
    "difficulty_strata",
    "item_disagreement",
    "mode_shifted",
    "predictions_of",
    "stratum_masks",
    "tertile_thresholds",
]

DEFAULT_N_BOOT: int = 2000
STRATA: tuple[str, ...] = ("all", "easy", "medium", "hard", "mode-shifted")
"""The item strata every table and test names (the one definition)."""
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


def _bootstrap_ci(
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
    return _bootstrap_ci(item_disagreement(probs_or_predictions), np.mean, n_boot, confidence, seed)


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
