"""Calibration and human-alignment metrics, vectorised over many runs at once.

Conventions
-----------
* ``probs`` has shape ``(..., n_items, n_classes)``: usually ``(runs, items, classes)`` or a single
  run ``(items, classes)``. Every row must be a probability vector (entries in [0, 1], sum 1 within
  ``1e-3``). Computation is done in float64.
* Every per-run metric returns an array of shape ``probs.shape[:-2]``: ``(runs,)`` for a stack of
  runs, a 0-d array for a single run (``float(x)`` turns it into a Python number).
* ``labels`` (official label, human mode, ...) are integers shaped ``(items,)`` (shared by all runs)
  or ``probs.shape[:-1]``. ``human`` distributions are shaped ``(items, classes)`` or
  ``probs.shape``; each row is a probability vector.
* Logarithms are natural: entropies and divergences are in **nats**. ``0 · ln 0 = 0``. Predicted
  probabilities are clipped below at :data:`EPS` only where a logarithm of them is taken, so no
  NaN or infinity can come out of a valid input.
* Binned calibration errors use :data:`DEFAULT_N_BINS` = 15 bins. Equal-width bins are the
  intervals ``[0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]`` (the convention of Guo et al. 2017 and of
  ``sklearn.calibration.calibration_curve``); confidence exactly 0 lands in the first bin and
  exactly 1 in the last.

Notation used in the docstrings: ``p_i`` the predicted distribution of item ``i`` (``N`` items,
``C`` classes), ``y_i`` a reference label, ``h_i`` the human distribution,
``conf_i = max_c p_ic``, ``ŷ_i = argmax_c p_ic`` (lowest index on ties), ``H(q) = -Σ_c q_c ln q_c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from softlab.data.annotations import entropy, human_mode  # noqa: F401  (re-exported: the one definition of each)

__all__ = [
    "EPS",
    "DEFAULT_N_BINS",
    "LN2",
    "entropy",
    "human_mode",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "adaptive_ece",
    "mce",
    "classwise_ece",
    "ReliabilityBins",
    "reliability_bins",
    "reliability_table",
    "kl_divergence",
    "js_divergence",
    "total_variation",
    "entropy_calibration_error",
    "entropy_spearman",
    "human_mode_ece",
    "soft_ece",
    "debiased_calibration_error",
    "debiased_soft_calibration_error",
    "calibration_leave_group_out",
    "spearman_by_run",
    "spearman_leave_group_out",
    "metric_suite",
    "OFFICIAL_METRICS",
    "HUMAN_METRICS",
]

EPS: float = 1e-12
"""Lower clip for predicted probabilities inside a logarithm (``ln(1e-12) ≈ -27.6`` nats)."""

DEFAULT_N_BINS: int = 15
LN2: float = float(np.log(2.0))
_SUM_TOL = 1e-3
_RANGE_TOL = 1e-6


# ----------------------------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------------------------


def _check_pair(human: np.ndarray | object, probs: np.ndarray | object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a human distribution and predictions and broadcast them against each other."""
    p = _check_distribution(probs, "probs")
    h = _check_distribution(human, "human")
    if h.shape[-1] != p.shape[-1]:
        raise ValueError(f"human: has {h.shape[-1]} classes but predictions have {p.shape[-1]}")
    try:
        h, p = np.broadcast_arrays(h, p)
    except ValueError:
        raise ValueError(
            f"human: shape {h.shape} does not match predictions {p.shape}; expected "
            f"(n_items, n_classes) or the full prediction shape"
        ) from None
    return h, p


def _check_distribution(x: np.ndarray | object, name: str) -> np.ndarray:
    """Return ``x`` as float64 with shape ``(..., N, C)``; raise ValueError if it is not a stack of
    probability vectors."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name}: expected shape (..., n_items, n_classes), got shape {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name}: needs at least one class, got shape {arr.shape}")
    if arr.shape[-2] < 1:
        raise ValueError(f"{name}: needs at least one item, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: non-finite value at index {tuple(int(i) for i in bad)}")
    if arr.min() < -_RANGE_TOL or arr.max() > 1 + _RANGE_TOL:
        bad = np.argwhere((arr < -_RANGE_TOL) | (arr > 1 + _RANGE_TOL))[0]
        raise ValueError(
            f"{name}: probabilities must lie in [0, 1]; index {tuple(int(i) for i in bad)} holds {arr[tuple(bad)]!r}"
        )
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > _SUM_TOL
    if np.any(off):
        bad = np.argwhere(off)[0]
        raise ValueError(
            f"{name}: each row must sum to 1 (±{_SUM_TOL}); row {tuple(int(i) for i in bad)} "
            f"sums to {sums[tuple(bad)]!r}"
        )
    return np.clip(arr, 0.0, 1.0)


def _check_labels(labels: np.ndarray | object, probs: np.ndarray, name: str) -> np.ndarray:
    """Return integer labels broadcast to ``probs.shape[:-1]``."""
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        if lab.dtype.kind == "f" and lab.size and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class labels, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    target = probs.shape[:-1]
    try:
        lab = np.broadcast_to(lab, target)
    except ValueError:
        raise ValueError(
            f"{name}: shape {lab.shape} does not match predictions; expected (n_items,) = "
            f"({probs.shape[-2]},) or {target}"
        ) from None
    n_classes = probs.shape[-1]
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        bad = np.argwhere((lab < 0) | (lab >= n_classes))[0]
        raise ValueError(
            f"{name}: labels must be in [0, {n_classes - 1}]; index {tuple(int(i) for i in bad)} "
            f"holds {int(lab[tuple(bad)])}"
        )
    return lab


def _check_human(human: np.ndarray | object, probs: np.ndarray, name: str = "human") -> np.ndarray:
    h = _check_distribution(human, name)
    if h.shape[-1] != probs.shape[-1]:
        raise ValueError(f"{name}: has {h.shape[-1]} classes but predictions have {probs.shape[-1]}")
    try:
        return np.broadcast_to(h, probs.shape)
    except ValueError:
        raise ValueError(
            f"{name}: shape {h.shape} does not match predictions {probs.shape}; expected "
            f"(n_items, n_classes) or the full prediction shape"
        ) from None


def _check_n_bins(n_bins: int) -> int:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    return int(n_bins)


def _flatten_runs(arr: np.ndarray, tail: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reshape ``arr`` to ``(R, *arr.shape[-tail:])`` and return the leading shape."""
    lead = arr.shape[: arr.ndim - tail]
    return arr.reshape((-1,) + arr.shape[arr.ndim - tail :]), lead


# ----------------------------------------------------------------------------------------------
# Basic quantities
# ----------------------------------------------------------------------------------------------


def _top_label(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence ``max_c p_c`` and prediction ``argmax_c p_c``."""
    pred = np.argmax(probs, axis=-1)
    conf = np.take_along_axis(probs, pred[..., None], axis=-1)[..., 0]
    return conf, pred


def accuracy(probs: np.ndarray | object, labels: np.ndarray | object) -> np.ndarray:
    """Accuracy ``(1/N) Σ_i 1[ŷ_i = y_i]`` (fraction in [0, 1]; argmax ties → lowest index)."""
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    return (np.argmax(p, axis=-1) == y).mean(axis=-1)


def nll(probs: np.ndarray | object, labels: np.ndarray | object) -> np.ndarray:
    """Negative log-likelihood ``-(1/N) Σ_i ln max(p_{i,y_i}, EPS)`` in nats."""
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    py = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    return -np.log(np.maximum(py, EPS)).mean(axis=-1)


def brier(probs: np.ndarray | object, labels: np.ndarray | object) -> np.ndarray:
    """Multi-class Brier score ``(1/N) Σ_i Σ_c (p_ic - 1[c = y_i])²`` (Brier 1950; range [0, 2]).

    Note: this is the sum over classes, i.e. ``n_classes`` times the mean squared error over all
    (item, class) cells.
    """
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, y[..., None], 1.0, axis=-1)
    return ((p - onehot) ** 2).sum(axis=-1).mean(axis=-1)


# ----------------------------------------------------------------------------------------------
# Binned calibration errors
# ----------------------------------------------------------------------------------------------


def _uniform_bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence for ``n_bins`` equal-width bins ``[0,1/B], (1/B,2/B], ..., ((B-1)/B,1]``."""
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner, conf, side="left").astype(np.int64)


def _equal_mass_bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bins along the last axis: sort confidences (stable) and cut the sorted order into
    ``n_bins`` consecutive groups of sizes as ``numpy.array_split`` gives (the first ``N mod B``
    groups hold one extra item). Tied confidences may fall into adjacent bins."""
    n = conf.shape[-1]
    sizes = np.full(n_bins, n // n_bins, dtype=np.int64)
    sizes[: n % n_bins] += 1
    bin_of_rank = np.repeat(np.arange(n_bins, dtype=np.int64), sizes)
    order = np.argsort(conf, axis=-1, kind="stable")
    bins = np.empty(conf.shape, dtype=np.int64)
    np.put_along_axis(bins, order, np.broadcast_to(bin_of_rank, conf.shape), axis=-1)
    return bins


def _bin_sums(
    conf: np.ndarray, hit: np.ndarray, bins: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run, per-bin item counts, confidence sums and hit sums; inputs shaped (R, N)."""
    n_runs = conf.shape[0]
    flat = (bins + n_bins * np.arange(n_runs)[:, None]).ravel()
    size = n_runs * n_bins
    count = np.bincount(flat, minlength=size).reshape(n_runs, n_bins)
    conf_sum = np.bincount(flat, weights=conf.ravel(), minlength=size).reshape(n_runs, n_bins)
    hit_sum = np.bincount(flat, weights=hit.ravel(), minlength=size).reshape(n_runs, n_bins)
    return count, conf_sum, hit_sum


def _ece_from_sums(count: np.ndarray, conf_sum: np.ndarray, hit_sum: np.ndarray) -> np.ndarray:
    n = count.sum(axis=-1)
    return np.abs(hit_sum - conf_sum).sum(axis=-1) / n


def _mce_from_sums(count: np.ndarray, conf_sum: np.ndarray, hit_sum: np.ndarray) -> np.ndarray:
    safe = np.maximum(count, 1)
    gap = np.where(count > 0, np.abs(hit_sum - conf_sum) / safe, 0.0)
    return gap.max(axis=-1)


def _top_label_inputs(
    probs: np.ndarray | object, labels: np.ndarray | object
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    conf, pred = _top_label(p)
    hit = (pred == y).astype(np.float64)
    conf2, lead = _flatten_runs(conf, 1)
    hit2, _ = _flatten_runs(hit, 1)
    return conf2, hit2, lead


def ece(probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Top-label expected calibration error with equal-width bins.

    ``ECE = Σ_b (n_b / N) · |acc_b − conf_b|`` where bin ``b`` holds the items whose top-label
    confidence ``conf_i`` falls in the b-th of ``n_bins`` equal-width intervals of [0, 1] (see the
    module docstring for edges), ``acc_b`` is the fraction of them with ``ŷ_i = y_i`` and
    ``conf_b`` their mean confidence. Empty bins contribute 0. Range [0, 1].
    """
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _top_label_inputs(probs, labels)
    sums = _bin_sums(conf, hit, _uniform_bin_index(conf, n_bins), n_bins)
    return _ece_from_sums(*sums).reshape(lead)


def adaptive_ece(probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Adaptive (equal-mass) top-label ECE (Nguyen & O'Connor 2015; Nixon et al. 2019).

    Same formula as :func:`ece`, but the items of each run are sorted by confidence (stable sort)
    and cut into ``n_bins`` consecutive groups of (almost) equal size — sizes as
    ``numpy.array_split`` gives them. With fewer items than bins some bins are empty.
    """
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _top_label_inputs(probs, labels)
    sums = _bin_sums(conf, hit, _equal_mass_bin_index(conf, n_bins), n_bins)
    return _ece_from_sums(*sums).reshape(lead)


def mce(probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Maximum calibration error ``max_b |acc_b − conf_b|`` over the non-empty equal-width bins of
    :func:`ece`. Range [0, 1]; always ``MCE ≥ ECE``."""
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _top_label_inputs(probs, labels)
    sums = _bin_sums(conf, hit, _uniform_bin_index(conf, n_bins), n_bins)
    return _mce_from_sums(*sums).reshape(lead)


def classwise_ece(probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Class-wise ECE (Kull et al. 2019): ``(1/C) Σ_c Σ_b (n_bc / N) · |freq_bc − conf_bc|``.

    For each class ``c`` the items are binned by ``p_ic`` into the equal-width bins of :func:`ece`
    (here a probability of exactly 0 matters and lands in the first bin); ``conf_bc`` is the mean
    ``p_ic`` of bin ``b`` and ``freq_bc`` the fraction of its items with ``y_i = c``. Range [0, 1].
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    n_classes = p.shape[-1]
    p2, lead = _flatten_runs(p, 2)  # (R, N, C)
    y2 = y.reshape(p2.shape[:2])
    hit = (y2[:, :, None] == np.arange(n_classes)).astype(np.float64)  # (R, N, C)
    conf = np.moveaxis(p2, -1, 1).reshape(-1, p2.shape[1])  # (R*C, N)
    hit = np.moveaxis(hit, -1, 1).reshape(-1, p2.shape[1])
    sums = _bin_sums(conf, hit, _uniform_bin_index(conf, n_bins), n_bins)
    per_class = _ece_from_sums(*sums).reshape(-1, n_classes)
    return per_class.mean(axis=-1).reshape(lead)


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability-diagram data for equal-width top-label bins.

    ``bin_lower``/``bin_upper`` have shape ``(n_bins,)``; ``count`` (items in the bin),
    ``mean_confidence`` and ``accuracy`` have shape ``lead + (n_bins,)`` where ``lead`` is
    ``probs.shape[:-2]``. For an empty bin ``count`` is 0 and ``mean_confidence``/``accuracy``
    are NaN (undefined, not zero).
    """

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray


def reliability_bins(
    probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS
) -> ReliabilityBins:
    """Per-bin mean confidence, accuracy and count (the ingredients of :func:`ece`)."""
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _top_label_inputs(probs, labels)
    count, conf_sum, hit_sum = _bin_sums(conf, hit, _uniform_bin_index(conf, n_bins), n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    shape = lead + (n_bins,)
    return ReliabilityBins(
        bin_lower=edges[:-1].copy(),
        bin_upper=edges[1:].copy(),
        count=count.reshape(shape),
        mean_confidence=mean_conf.reshape(shape),
        accuracy=acc.reshape(shape),
    )


def reliability_table(
    probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS
) -> pd.DataFrame:
    """Tidy reliability-diagram data: one row per (run, bin).

    Columns: ``run`` (flat index over ``probs.shape[:-2]``; 0 for a single run), ``bin``,
    ``bin_lower``, ``bin_upper``, ``mean_confidence``, ``accuracy``, ``count``. Empty bins are kept
    with ``count`` 0 and NaN confidence/accuracy.
    """
    rb = reliability_bins(probs, labels, n_bins)
    count = rb.count.reshape(-1, rb.count.shape[-1])
    n_runs, nb = count.shape
    return pd.DataFrame(
        {
            "run": np.repeat(np.arange(n_runs), nb),
            "bin": np.tile(np.arange(nb), n_runs),
            "bin_lower": np.tile(rb.bin_lower, n_runs),
            "bin_upper": np.tile(rb.bin_upper, n_runs),
            "mean_confidence": rb.mean_confidence.reshape(-1),
            "accuracy": rb.accuracy.reshape(-1),
            "count": count.reshape(-1),
        }
    )


# ----------------------------------------------------------------------------------------------
# Human alignment
# ----------------------------------------------------------------------------------------------


def _kl_items(a: np.ndarray, b: np.ndarray, clip_b: bool) -> np.ndarray:
    """Per-item ``Σ_c a_c (ln a_c − ln b_c)`` with ``0 · ln 0 = 0``."""
    pos = a > 0
    safe_a = np.where(pos, a, 1.0)
    safe_b = np.maximum(b, EPS) if clip_b else np.where(pos, b, 1.0)
    return np.where(pos, a * (np.log(safe_a) - np.log(safe_b)), 0.0).sum(axis=-1)


def kl_divergence(human: np.ndarray | object, probs: np.ndarray | object) -> np.ndarray:
    """Mean Kullback–Leibler divergence ``(1/N) Σ_i KL(h_i ‖ p_i)``,
    ``KL(h‖p) = Σ_c h_c ln(h_c / max(p_c, EPS))`` in nats (``0 · ln 0 = 0``). ≥ 0.

    Argument order follows the notation: the human distribution first, the prediction second.
    """
    h, p = _check_pair(human, probs)
    return np.maximum(_kl_items(h, p, clip_b=True), 0.0).mean(axis=-1)


def js_divergence(human: np.ndarray | object, probs: np.ndarray | object) -> np.ndarray:
    """Mean Jensen–Shannon divergence ``(1/N) Σ_i JS(h_i, p_i)`` in nats,
    ``JS(h, p) = ½ KL(h‖m) + ½ KL(p‖m)`` with ``m = (h + p)/2``. Symmetric, in [0, ln 2].

    (This is the *divergence*; ``scipy.spatial.distance.jensenshannon`` returns its square root.)
    """
    h, p = _check_pair(human, probs)
    m = 0.5 * (h + p)
    js = 0.5 * _kl_items(h, m, clip_b=False) + 0.5 * _kl_items(p, m, clip_b=False)
    return np.clip(js, 0.0, LN2).mean(axis=-1)


def total_variation(human: np.ndarray | object, probs: np.ndarray | object) -> np.ndarray:
    """Mean total-variation distance ``(1/N) Σ_i ½ Σ_c |h_ic − p_ic|``. In [0, 1]."""
    h, p = _check_pair(human, probs)
    return np.clip(0.5 * np.abs(h - p).sum(axis=-1), 0.0, 1.0).mean(axis=-1)


def entropy_calibration_error(human: np.ndarray | object, probs: np.ndarray | object) -> np.ndarray:
    """Entropy calibration error ``(1/N) Σ_i |H(p_i) − H(h_i)|`` in nats. In [0, ln C]."""
    h, p = _check_pair(human, probs)
    return np.abs(entropy(p) - entropy(h)).mean(axis=-1)


def spearman_by_run(x: np.ndarray | object, y: np.ndarray | object) -> np.ndarray:
    """Spearman rank correlation along the last axis, for every leading index at once.

    Ranks are averaged on ties (``scipy.stats.rankdata``), then the Pearson correlation of the ranks
    is taken. Undefined (NaN) when either side is constant or has fewer than 2 items.
    ``x`` and ``y`` are broadcast against each other.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    a, b = np.broadcast_arrays(a, b)
    if a.shape[-1] < 2:
        return np.full(a.shape[:-1], np.nan)
    ra = rankdata(a, axis=-1)
    rb = rankdata(b, axis=-1)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))
    num = (ra * rb).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(rho, -1.0, 1.0)


def entropy_spearman(human: np.ndarray | object, probs: np.ndarray | object) -> np.ndarray:
    """Spearman rank correlation across items of ``H(p_i)`` with ``H(h_i)`` (per run).

    NaN where undefined (all human or all predicted entropies equal, or a single item).
    """
    h, p = _check_pair(human, probs)
    return spearman_by_run(entropy(p), entropy(h))


def human_mode_ece(
    human: np.ndarray | object,
    probs: np.ndarray | object,
    official: np.ndarray | object | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> np.ndarray:
    """Top-label ECE (:func:`ece`) with correctness measured against the human mode
    ``m_i`` (:func:`human_mode`, ties towards ``official`` when given)."""
    p = _check_distribution(probs, "probs")
    h = _check_human(human, p)
    if official is not None:
        official = _check_labels(official, p, "official")
    return ece(p, human_mode(h, official), n_bins)


# ----------------------------------------------------------------------------------------------
# Soft-reference and debiased calibration errors
# ----------------------------------------------------------------------------------------------

_CORRECTNESS = ("label", "soft")
_CALIBRATION_ESTIMATORS = ("ece", "debiased")


def _correctness_inputs(
    probs: np.ndarray | object, target: np.ndarray | object, correctness: str
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Top-label confidence and correctness, flattened to ``(R, N)``.

    ``correctness="label"``: ``target`` holds labels ``y_i`` and correctness is ``1[ŷ_i = y_i]``.
    ``correctness="soft"``: ``target`` holds reference distributions ``h_i`` and correctness is
    ``h_i[ŷ_i]`` (the probability that a label drawn from ``h_i`` agrees with the prediction).
    """
    if correctness == "label":
        return _top_label_inputs(probs, target)
    if correctness != "soft":
        raise ValueError(f"correctness: expected one of {_CORRECTNESS}, got {correctness!r}")
    p = _check_distribution(probs, "probs")
    h = _check_human(target, p, "reference")
    conf, pred = _top_label(p)
    hit = np.take_along_axis(h, pred[..., None], axis=-1)[..., 0]
    conf2, lead = _flatten_runs(conf, 1)
    hit2, _ = _flatten_runs(hit, 1)
    return conf2, hit2, lead


def _calibration_bin_sums(
    conf: np.ndarray, hit: np.ndarray, n_bins: int, groups: np.ndarray | None = None, n_groups: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (run, group, bin) item count and sums of confidence, correctness and
    ``(correctness − confidence)²``; inputs ``(R, N)``, outputs ``(R, n_groups, n_bins)``."""
    n_runs, n_items = conf.shape
    bins = _uniform_bin_index(conf, n_bins)
    g = np.zeros(n_items, dtype=np.int64) if groups is None else groups
    flat = ((np.arange(n_runs)[:, None] * n_groups + g[None, :]) * n_bins + bins).ravel()
    size = n_runs * n_groups * n_bins
    shape = (n_runs, n_groups, n_bins)
    count = np.bincount(flat, minlength=size).reshape(shape).astype(np.float64)
    conf_sum = np.bincount(flat, weights=conf.ravel(), minlength=size).reshape(shape)
    hit_sum = np.bincount(flat, weights=hit.ravel(), minlength=size).reshape(shape)
    dsq_sum = np.bincount(flat, weights=((hit - conf) ** 2).ravel(), minlength=size).reshape(shape)
    return count, conf_sum, hit_sum, dsq_sum


def _debiased_from_sums(
    count: np.ndarray, conf_sum: np.ndarray, hit_sum: np.ndarray, dsq_sum: np.ndarray, correctness: str
) -> np.ndarray:
    """Debiased squared L2 calibration error from per-bin sums (last axis: bins); see
    :func:`debiased_calibration_error` for the formula."""
    total = count.sum(axis=-1, keepdims=True)
    usable = count >= 2
    n = np.where(usable, count, 2.0)
    mean_gap = (hit_sum - conf_sum) / n
    if correctness == "label":
        acc = hit_sum / n
        bias = acc * (1.0 - acc) / (n - 1.0)
    else:
        sample_var = np.maximum(dsq_sum - n * mean_gap**2, 0.0) / (n - 1.0)
        bias = sample_var / n
    per_bin = np.where(usable, (count / total) * (mean_gap**2 - bias), 0.0)
    return per_bin.sum(axis=-1)


def soft_ece(probs: np.ndarray | object, reference: np.ndarray | object, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Soft-reference top-label ECE: :func:`ece` with correctness ``h_i[ŷ_i]`` instead of ``1[ŷ_i = y_i]``.

    ``ECE_soft = Σ_b (n_b / N) · |mean_{i∈b} h_i[ŷ_i] − mean_{i∈b} conf_i|`` with the equal-width bins
    of :func:`ece` (module docstring). ``h_i[ŷ_i]`` is the probability that an annotator drawn from
    the reference distribution ``h_i`` agrees with the prediction (the soft correctness of
    :mod:`softlab.cartography`); with one-hot ``h`` this is :func:`ece` against the one-hot label.
    ``reference`` is ``(n_items, n_classes)`` or the full prediction shape. Range [0, 1].
    """
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _correctness_inputs(probs, reference, "soft")
    sums = _bin_sums(conf, hit, _uniform_bin_index(conf, n_bins), n_bins)
    return _ece_from_sums(*sums).reshape(lead)


def debiased_calibration_error(
    probs: np.ndarray | object, labels: np.ndarray | object, n_bins: int = DEFAULT_N_BINS
) -> np.ndarray:
    """Debiased squared L2 top-label calibration error (Kumar, Liang & Ma 2019), 0/1 correctness.

    Kumar, A., Liang, P. & Ma, T. (2019), "Verified uncertainty calibration", NeurIPS: with the
    equal-width top-label bins of :func:`ece`, bin ``b`` holding ``n_b`` of the ``N`` items, mean
    confidence ``conf_b`` and accuracy ``acc_b`` (``ŷ_i = y_i``),

    ``CE² = Σ_{b: n_b ≥ 2} (n_b / N) · [ (acc_b − conf_b)² − acc_b (1 − acc_b) / (n_b − 1) ]``.

    The plug-in term ``(acc_b − conf_b)²`` overestimates the squared gap by the sampling variance of
    ``acc_b``; ``acc_b(1 − acc_b)/(n_b − 1)`` is its unbiased estimate for Bernoulli outcomes, so
    the estimator is unbiased for the squared L2 calibration error of the binned model and, unlike
    binned ECE, does not grow with the spread of confidences or shrink with the stratum size.
    Bins with a single item have no variance estimate and contribute 0 (as in the authors'
    reference implementation; they still count in ``N``); empty bins contribute 0. The value is
    **not** clipped at 0 (clipping would bias it upwards; small negative values mean "no detectable
    miscalibration") and is on the squared scale (take ``sqrt(max(CE², 0))`` for an RMS error).
    """
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _correctness_inputs(probs, labels, "label")
    sums = _calibration_bin_sums(conf, hit, n_bins)
    return _debiased_from_sums(*sums, "label")[:, 0].reshape(lead)


def debiased_soft_calibration_error(
    probs: np.ndarray | object, reference: np.ndarray | object, n_bins: int = DEFAULT_N_BINS
) -> np.ndarray:
    """Debiased squared L2 calibration error against a soft reference (Kumar, Liang & Ma 2019,
    with the bias term of continuous outcomes).

    Correctness of item ``i`` is ``c_i = h_i[ŷ_i]`` (as in :func:`soft_ece`); with ``d_i = c_i − conf_i``,
    ``d̄_b`` its mean over bin ``b`` and ``s²_b = Σ_{i∈b} (d_i − d̄_b)² / (n_b − 1)`` its within-bin
    sample variance,

    ``CE²_soft = Σ_{b: n_b ≥ 2} (n_b / N) · [ d̄_b² − s²_b / n_b ]``.

    ``s²_b / n_b`` is the unbiased estimate of the sampling variance of ``d̄_b`` for items drawn
    independently within the bin, i.e. the bias of the plug-in ``d̄_b²`` (for 0/1 correctness at
    a constant confidence it equals Kumar et al.'s ``acc_b(1 − acc_b)/(n_b − 1)``). Bins with one
    item contribute 0, empty bins 0; the value is not clipped at 0 and is on the squared scale
    (see :func:`debiased_calibration_error`).
    """
    n_bins = _check_n_bins(n_bins)
    conf, hit, lead = _correctness_inputs(probs, reference, "soft")
    sums = _calibration_bin_sums(conf, hit, n_bins)
    return _debiased_from_sums(*sums, "soft")[:, 0].reshape(lead)


def _check_groups(groups: np.ndarray | object, n_items: int) -> tuple[np.ndarray, int]:
    g = np.asarray(groups)
    if g.shape != (n_items,) or g.dtype.kind not in "iu":
        raise ValueError(f"groups: expected integer group ids shaped ({n_items},), got {g.shape} {g.dtype}")
    g = g.astype(np.int64)
    if n_items and g.min() < 0:
        raise ValueError("groups: group ids must be >= 0")
    n_groups = int(g.max()) + 1 if n_items else 0
    sizes = np.bincount(g, minlength=n_groups)
    if n_groups < 2 or np.any(sizes == 0):
        raise ValueError(f"groups: expected at least 2 non-empty groups numbered 0..G-1, got sizes {sizes.tolist()}")
    return g, n_groups


def calibration_leave_group_out(
    probs: np.ndarray | object,
    target: np.ndarray | object,
    groups: np.ndarray | object,
    correctness: str = "label",
    estimator: str = "debiased",
    n_bins: int = DEFAULT_N_BINS,
) -> np.ndarray:
    """A binned calibration error on all items and with each item group left out, in one pass.

    ``correctness``: ``"label"`` (``target`` = labels) or ``"soft"`` (``target`` = reference
    distributions); ``estimator``: ``"ece"`` (:func:`ece` / :func:`soft_ece`) or ``"debiased"``
    (:func:`debiased_calibration_error` / :func:`debiased_soft_calibration_error`). ``groups``
    assigns each item to one of ``G`` non-empty groups ``0..G−1``. Returns shape
    ``probs.shape[:-2] + (G + 1,)``: index 0 is the metric on all items, index ``g + 1`` the metric
    on the items outside group ``g`` (the delete-a-group jackknife replicates). Per-bin sums are
    accumulated per group once and subtracted, so the cost is that of one evaluation; the values
    equal the single-metric functions on the corresponding subsets.
    """
    n_bins = _check_n_bins(n_bins)
    if estimator not in _CALIBRATION_ESTIMATORS:
        raise ValueError(f"estimator: expected one of {_CALIBRATION_ESTIMATORS}, got {estimator!r}")
    conf, hit, lead = _correctness_inputs(probs, target, correctness)
    g, n_groups = _check_groups(groups, conf.shape[1])
    per_group = _calibration_bin_sums(conf, hit, n_bins, g, n_groups)
    full = [s.sum(axis=1, keepdims=True) for s in per_group]
    stacked = [np.concatenate([f, f - s], axis=1) for f, s in zip(full, per_group)]  # (R, G+1, B)
    if estimator == "ece":
        out = _ece_from_sums(*stacked[:3])
    else:
        count, conf_sum, hit_sum, dsq_sum = stacked
        out = _debiased_from_sums(count, conf_sum, hit_sum, dsq_sum, correctness)
    return out.reshape(lead + (n_groups + 1,))


class _LeaveGroupOutRanks:
    """Average ranks (1-based, ties averaged) of series ``v`` (R, N) among all items and among the
    items outside one group.

    ``rank_i = L_i + (E_i + 1)/2`` with ``L_i`` the number of items below ``v_i`` and ``E_i`` the
    number equal to it (``i`` included) — ``scipy.stats.rankdata``'s average method. One stable
    sort per series gives every item's tie block ``[start_i, end_i)`` in sorted order. Leaving
    group ``j`` out removes ``below_i`` of the items under ``v_i`` and ``within_i`` of its ties, so the
    rank becomes ``rank_i − below_i − within_i/2 = rank_i − (cum_j(start_i) + cum_j(end_i))/2`` with
    ``cum_j(k)`` the number of group-``j`` members among the first ``k`` sorted items. Entries of the
    left-out items are meaningless.
    """

    def __init__(self, v: np.ndarray, groups: np.ndarray) -> None:
        n_runs, n = v.shape
        order = np.argsort(v, axis=-1, kind="stable")
        sv = np.take_along_axis(v, order, axis=-1)
        new_block = np.ones((n_runs, n), dtype=bool)
        new_block[:, 1:] = sv[:, 1:] != sv[:, :-1]
        pos = np.arange(n)
        start_sorted = np.maximum.accumulate(np.where(new_block, pos, 0), axis=-1)
        end_block = np.ones((n_runs, n), dtype=bool)
        end_block[:, :-1] = new_block[:, 1:]
        end_sorted = np.minimum.accumulate(np.where(end_block, pos + 1, n)[:, ::-1], axis=-1)[:, ::-1]
        start = np.empty_like(start_sorted)
        end = np.empty_like(end_sorted)
        np.put_along_axis(start, order, start_sorted, axis=-1)
        np.put_along_axis(end, order, end_sorted, axis=-1)
        self.full = start + (end - start + 1) / 2.0
        offset = (n + 1) * np.arange(n_runs)[:, None]
        self._start = (start + offset).ravel()  # flat indices into the (R, N + 1) cumulative counts
        self._end = (end + offset).ravel()
        self._member = groups[order]  # (R, N): group of the item at each sorted position
        self._cum = np.zeros((n_runs, n + 1), dtype=np.int64)
        self._shape = (n_runs, n)

    def without(self, j: int) -> np.ndarray:
        np.cumsum(self._member == j, axis=-1, out=self._cum[:, 1:])
        flat = self._cum.ravel()
        removed = (flat[self._start] + flat[self._end]).reshape(self._shape)
        return self.full - removed / 2.0


def spearman_leave_group_out(x: np.ndarray | object, y: np.ndarray | object, groups: np.ndarray | object) -> np.ndarray:
    """:func:`spearman_by_run` of ``x`` with ``y`` on all items and with each item group left out.

    ``x`` and ``y`` broadcast against each other (items on the last axis); ``groups`` is as in
    :func:`calibration_leave_group_out`. Returns ``broadcast shape[:-1] + (G + 1,)``: index 0 on
    all items, index ``g + 1`` without group ``g``: the Pearson correlation of average ranks
    (NaN where a side is constant), as :func:`spearman_by_run` defines it. Each distinct series is
    sorted once (a shared 1-D series such as ``H(h)`` only once) and the left-out ranks are updated
    from cumulative group counts (:class:`_LeaveGroupOutRanks`) instead of one sort per subset; the
    tests check every column against :func:`spearman_by_run` on the subset.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape, b.shape)
    lead = shape[:-1]
    n = shape[-1]
    if a.shape[-1] != n or b.shape[-1] != n:
        raise ValueError(f"x, y: expected {n} items on the last axis, got shapes {a.shape} and {b.shape}")
    g, n_groups = _check_groups(groups, n)
    ranks_a = _LeaveGroupOutRanks(a.reshape(-1, n), g)
    ranks_b = _LeaveGroupOutRanks(b.reshape(-1, n), g)
    n_runs = int(np.prod(lead, dtype=np.int64))
    out = np.empty((n_runs, n_groups + 1))

    def pearson(ra: np.ndarray, rb: np.ndarray, keep: np.ndarray | None, n_keep: int) -> np.ndarray:
        # average ranks of n_keep items sum to n_keep (n_keep + 1) / 2, so their mean is known;
        # left-out items are set to 0 after centring and drop out of every sum
        centre = (n_keep + 1) / 2.0
        ca = (ra - centre) if keep is None else np.where(keep, ra - centre, 0.0)
        cb = (rb - centre) if keep is None else np.where(keep, rb - centre, 0.0)
        ca = ca.reshape(a.shape[:-1] + (n,))
        cb = cb.reshape(b.shape[:-1] + (n,))
        num = np.broadcast_to(np.einsum("...i,...i->...", ca, cb), lead).reshape(-1)
        den = np.sqrt(np.einsum("...i,...i->...", ca, ca) * np.einsum("...i,...i->...", cb, cb))
        den = np.broadcast_to(den, lead).reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where((den > 0) & (n_keep >= 2), num / np.where(den > 0, den, 1.0), np.nan)
        return np.clip(rho, -1.0, 1.0)

    out[:, 0] = pearson(ranks_a.full, ranks_b.full, None, n)
    for j in range(n_groups):
        keep = g != j
        out[:, j + 1] = pearson(ranks_a.without(j), ranks_b.without(j), keep, int(keep.sum()))
    return out.reshape(lead + (n_groups + 1,))


# ----------------------------------------------------------------------------------------------
# All metrics at once
# ----------------------------------------------------------------------------------------------

OFFICIAL_METRICS: tuple[str, ...] = (
    "accuracy",
    "nll",
    "brier",
    "ece",
    "adaptive_ece",
    "mce",
    "classwise_ece",
    "debiased_ce",
)
"""Metrics against the official label (names as they appear in the ``metric`` column)."""

HUMAN_METRICS: tuple[str, ...] = (
    "accuracy_human_mode",
    "nll_human_mode",
    "ece_human_mode",
    "kl_human",
    "js_human",
    "tv_human",
    "entropy_calibration_error",
    "entropy_spearman",
    "ece_soft",
    "debiased_ce_soft",
)
"""Metrics that need a human distribution."""


def metric_suite(
    probs: np.ndarray | object,
    official: np.ndarray | object,
    human: np.ndarray | object | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, np.ndarray]:
    """Every metric of this module for a stack of runs, as ``{name: array of shape probs.shape[:-2]}``.

    Names and definitions: ``accuracy``, ``nll``, ``brier``, ``ece``, ``adaptive_ece``, ``mce``,
    ``classwise_ece`` against ``official``; when ``human`` is given also ``accuracy_human_mode``,
    ``nll_human_mode``, ``ece_human_mode`` (against the human mode, ties towards ``official``),
    ``kl_human`` (KL(h‖p)), ``js_human``, ``tv_human``, ``entropy_calibration_error``,
    ``entropy_spearman``, ``ece_soft`` and ``debiased_ce_soft`` (soft-reference calibration); and
    ``debiased_ce`` against ``official``. Values equal those of the single-metric functions; the inputs are
    validated once and shared intermediates (``ln p``, entropies, bins) are computed once, using
    ``KL(h‖p) = −H(h) − Σ_c h_c ln max(p_c, EPS)`` and ``JS(h, p) = H(m) − ½(H(h) + H(p))``.
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_distribution(probs, "probs")
    y = _check_labels(official, p, "official")
    p3, lead = _flatten_runs(p, 2)  # (R, N, C)
    y2 = y.reshape(p3.shape[:2])

    log_p = np.log(np.maximum(p3, EPS))
    conf, pred = _top_label(p3)
    uniform_bins = _uniform_bin_index(conf, n_bins)

    def label_metrics(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        hit = (pred == labels).astype(np.float64)
        nll_ = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0].mean(axis=-1)
        return hit, nll_, _bin_sums(conf, hit, uniform_bins, n_bins)

    hit, nll_official, sums = label_metrics(y2)
    onehot = np.zeros_like(p3)
    np.put_along_axis(onehot, y2[..., None], 1.0, axis=-1)
    out: dict[str, np.ndarray] = {
        "accuracy": hit.mean(axis=-1),
        "nll": nll_official,
        "brier": ((p3 - onehot) ** 2).sum(axis=-1).mean(axis=-1),
        "ece": _ece_from_sums(*sums),
        "adaptive_ece": _ece_from_sums(*_bin_sums(conf, hit, _equal_mass_bin_index(conf, n_bins), n_bins)),
        "mce": _mce_from_sums(*sums),
        "classwise_ece": classwise_ece(p3, y2, n_bins),
        "debiased_ce": debiased_calibration_error(p3, y2, n_bins),
    }
    if human is not None:
        h, _ = _check_pair(human, p)
        h3 = h.reshape(p3.shape)
        mode = human_mode(h3, y2)
        hit_m, nll_m, sums_m = label_metrics(mode)
        h_ent = entropy(h3)
        p_ent = -(p3 * log_p).sum(axis=-1)  # 0 · ln(EPS) = 0, so this is H(p) with 0 ln 0 = 0
        m = 0.5 * (h3 + p3)
        js = entropy(m) - 0.5 * (h_ent + p_ent)
        out.update(
            {
                "accuracy_human_mode": hit_m.mean(axis=-1),
                "nll_human_mode": nll_m,
                "ece_human_mode": _ece_from_sums(*sums_m),
                "kl_human": np.maximum(-h_ent - (h3 * log_p).sum(axis=-1), 0.0).mean(axis=-1),
                "js_human": np.clip(js, 0.0, LN2).mean(axis=-1),
                "tv_human": np.clip(0.5 * np.abs(h3 - p3).sum(axis=-1), 0.0, 1.0).mean(axis=-1),
                "entropy_calibration_error": np.abs(p_ent - h_ent).mean(axis=-1),
                "entropy_spearman": spearman_by_run(p_ent, h_ent),
                "ece_soft": soft_ece(p3, h3, n_bins),
                "debiased_ce_soft": debiased_soft_calibration_error(p3, h3, n_bins),
            }
        )
    return {name: np.asarray(v, dtype=np.float64).reshape(lead) for name, v in out.items()}
