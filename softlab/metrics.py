"""Calibration and human-alignment metrics, vectorised over many runs at once.

Conventions
-----------
* ``probs`` has shape ``(..., n_items, n_classes)``: usually ``(runs, items, classes)`` or a single
  run ``(items, classes)``. Every row must be a probability vector (finite entries ``>= 0`` summing to 1
  within :data:`softlab.validation.PROB_SUM_TOL`). Computation is done in float64.
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from softlab.data.annotations import entropy, human_mode
from softlab.validation import check_labels, check_probability_rows, check_shape

__all__ = [
    "DEFAULT_N_BINS",
    "EPS",
    "HUMAN_METRICS",
    "LN2",
    "OFFICIAL_METRICS",
    "ReliabilityBins",
    "accuracy",
    "adaptive_ece",
    "brier",
    "calibration_leave_group_out",
    "classwise_ece",
    "debiased_calibration_error",
    "debiased_soft_calibration_error",
    "ece",
    "entropy",
    "entropy_calibration_error",
    "entropy_spearman",
    "generator_teacher_agreement",
    "human_mode",
    "human_mode_ece",
    "js_divergence",
    "kl_divergence",
    "mce",
    "metric_suite",
    "nll",
    "reliability_bins",
    "reliability_table",
    "soft_ece",
    "spearman_by_run",
    "spearman_leave_group_out",
    "total_variation",
]

EPS: float = 1e-12
"""Lower clip for predicted probabilities inside a logarithm (``ln(1e-12) ≈ -27.6`` nats)."""

DEFAULT_N_BINS: int = 15
LN2: float = float(np.log(2.0))

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
_Scalar = TypeVar("_Scalar", bound=np.generic)
#: Per-bin sums of one binning: item count, confidence, correctness and (correctness − confidence)².
BinSums = tuple[Floats, Floats, Floats, Floats]


# ----------------------------------------------------------------------------------------------
# Input checking (every public function validates its inputs once, with softlab.validation)
# ----------------------------------------------------------------------------------------------


def _check_distribution(x: ArrayLike, name: str) -> Floats:
    """``x`` as float64 ``(..., N, C)`` probability rows, clipped to [0, 1]."""
    return np.clip(check_probability_rows(x, name), 0.0, 1.0)


def _check_labels(labels: ArrayLike, probs: Floats, name: str) -> Ints:
    """Integer labels in ``0..C−1`` broadcast to ``probs.shape[:-1]``."""
    lab = check_labels(labels, name, probs.shape[-1], ndim=None)
    try:
        return np.broadcast_to(lab, probs.shape[:-1])
    except ValueError:
        raise ValueError(
            f"{name}: shape {lab.shape} does not match predictions; expected (n_items,) = "
            f"({probs.shape[-2]},) or {probs.shape[:-1]}"
        ) from None


def _check_reference(reference: ArrayLike, probs: Floats, name: str = "human") -> Floats:
    """Reference distributions ``(N, C)`` or ``probs.shape``, broadcast to ``probs.shape``."""
    h = _check_distribution(reference, name)
    if h.shape[-1] != probs.shape[-1]:
        raise ValueError(f"{name}: has {h.shape[-1]} classes but predictions have {probs.shape[-1]}")
    try:
        return np.broadcast_to(h, probs.shape)
    except ValueError:
        raise ValueError(
            f"{name}: shape {h.shape} does not match predictions {probs.shape}; expected "
            f"(n_items, n_classes) or the full prediction shape"
        ) from None


def _check_pair(human: ArrayLike, probs: ArrayLike) -> tuple[Floats, Floats]:
    """A human distribution and predictions, validated and broadcast against each other."""
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


def _check_n_bins(n_bins: int) -> int:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    return int(n_bins)


def _flatten_runs(arr: NDArray[_Scalar], tail: int) -> tuple[NDArray[_Scalar], tuple[int, ...]]:
    """Reshape ``arr`` to ``(R, *arr.shape[-tail:])`` and return the leading shape."""
    lead = arr.shape[: arr.ndim - tail]
    return arr.reshape((-1, *arr.shape[arr.ndim - tail :])), lead


# ----------------------------------------------------------------------------------------------
# The one definition of each metric, on validated arrays (items on the last axis of per-item
# arrays). The public functions below and metric_suite both call these; metric_suite only shares
# the intermediates (ln p, top label, bins) between them.
# ----------------------------------------------------------------------------------------------


def _log_probs(p: Floats) -> Floats:
    """``ln max(p, EPS)``: the only logarithm of a prediction any metric takes."""
    return np.log(np.maximum(p, EPS))


def _top_label(p: Floats) -> tuple[Floats, Ints]:
    """Top-label confidence ``max_c p_c`` and prediction ``argmax_c p_c`` (lowest index on ties)."""
    pred = np.argmax(p, axis=-1)
    conf = np.take_along_axis(p, pred[..., None], axis=-1)[..., 0]
    return conf, pred


def _label_hits(pred: Ints, labels: Ints) -> Floats:
    """0/1 correctness ``1[ŷ_i = y_i]``."""
    return (pred == labels).astype(np.float64)


def _soft_hits(pred: Ints, reference: Floats) -> Floats:
    """Soft correctness ``h_i[ŷ_i]``: the chance that a label drawn from ``h_i`` agrees with ``ŷ_i``."""
    return np.take_along_axis(reference, pred[..., None], axis=-1)[..., 0]


def _accuracy(hits: Floats) -> Floats:
    return hits.mean(axis=-1)


def _nll(log_p: Floats, labels: Ints) -> Floats:
    return -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0].mean(axis=-1)


def _brier(p: Floats, labels: Ints) -> Floats:
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, labels[..., None], 1.0, axis=-1)
    return ((p - onehot) ** 2).sum(axis=-1).mean(axis=-1)


def _kl_items(a: Floats, log_b: Floats) -> Floats:
    """Per-item ``Σ_c a_c (ln a_c − log_b_c)`` with ``0 · ln 0 = 0``."""
    pos = a > 0
    return np.where(pos, a * (np.log(np.where(pos, a, 1.0)) - log_b), 0.0).sum(axis=-1)


def _kl(human: Floats, log_p: Floats) -> Floats:
    return np.maximum(_kl_items(human, log_p), 0.0).mean(axis=-1)


def _js(human: Floats, p: Floats) -> Floats:
    m = 0.5 * (human + p)
    log_m = np.log(np.where(m > 0, m, 1.0))  # m > 0 wherever human or p is, so no clip is needed
    js = 0.5 * _kl_items(human, log_m) + 0.5 * _kl_items(p, log_m)
    return np.clip(js, 0.0, LN2).mean(axis=-1)


def _total_variation(human: Floats, p: Floats) -> Floats:
    return np.clip(0.5 * np.abs(human - p).sum(axis=-1), 0.0, 1.0).mean(axis=-1)


def _entropy_calibration_error(human_entropy: Floats, pred_entropy: Floats) -> Floats:
    return np.abs(pred_entropy - human_entropy).mean(axis=-1)


# binned calibration errors: per-bin sums of (R, N) confidences and correctness


def _uniform_bin_index(conf: Floats, n_bins: int) -> Ints:
    """Bin of each confidence for ``n_bins`` equal-width bins ``[0,1/B], (1/B,2/B], ..., ((B-1)/B,1]``."""
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner, conf, side="left").astype(np.int64)


def _equal_mass_bin_index(conf: Floats, n_bins: int) -> Ints:
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


def _group_bin_sums(conf: Floats, hits: Floats, bins: Ints, n_bins: int, groups: Ints, n_groups: int) -> BinSums:
    """Per (run, group, bin) item count and sums of confidence, correctness and
    ``(correctness − confidence)²``; inputs ``(R, N)``, outputs ``(R, n_groups, n_bins)``."""
    n_runs = conf.shape[0]
    flat = ((np.arange(n_runs)[:, None] * n_groups + groups[None, :]) * n_bins + bins).ravel()
    size = n_runs * n_groups * n_bins
    shape = (n_runs, n_groups, n_bins)
    count = np.bincount(flat, minlength=size).reshape(shape).astype(np.float64)
    # (bincount with weights returns float64: astype only tells the type checker, it copies nothing)
    conf_sum = np.bincount(flat, weights=conf.ravel(), minlength=size).reshape(shape).astype(np.float64, copy=False)
    hit_sum = np.bincount(flat, weights=hits.ravel(), minlength=size).reshape(shape).astype(np.float64, copy=False)
    dsq_sum = (
        np.bincount(flat, weights=((hits - conf) ** 2).ravel(), minlength=size)
        .reshape(shape)
        .astype(np.float64, copy=False)
    )
    return count, conf_sum, hit_sum, dsq_sum


def _bin_sums(conf: Floats, hits: Floats, bins: Ints, n_bins: int) -> BinSums:
    """:func:`_group_bin_sums` with every item in one group: outputs ``(R, n_bins)``."""
    sums = _group_bin_sums(conf, hits, bins, n_bins, np.zeros(conf.shape[-1], dtype=np.int64), 1)
    return sums[0][:, 0], sums[1][:, 0], sums[2][:, 0], sums[3][:, 0]


def _ece_from_sums(count: Floats, conf_sum: Floats, hit_sum: Floats, dsq_sum: Floats | None = None) -> Floats:
    """``Σ_b (n_b / N) · |acc_b − conf_b|`` (see :func:`ece`); last axis: bins."""
    return np.abs(hit_sum - conf_sum).sum(axis=-1) / count.sum(axis=-1)


def _mce_from_sums(count: Floats, conf_sum: Floats, hit_sum: Floats, dsq_sum: Floats | None = None) -> Floats:
    """``max_b |acc_b − conf_b|`` over non-empty bins (see :func:`mce`); last axis: bins."""
    safe = np.maximum(count, 1)
    gap = np.where(count > 0, np.abs(hit_sum - conf_sum) / safe, 0.0)
    return gap.max(axis=-1)


def _debiased_from_sums(count: Floats, conf_sum: Floats, hit_sum: Floats, dsq_sum: Floats, correctness: str) -> Floats:
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


def _classwise_ece(p: Floats, labels: Ints, n_bins: int) -> Floats:
    """Class-wise ECE of ``p`` (R, N, C) against ``labels`` (R, N); see :func:`classwise_ece`."""
    n_runs, n_items, n_classes = p.shape
    hits = (labels[:, :, None] == np.arange(n_classes)).astype(np.float64)  # (R, N, C)
    conf = np.moveaxis(p, -1, 1).reshape(-1, n_items)  # (R*C, N)
    hits = np.moveaxis(hits, -1, 1).reshape(-1, n_items)
    per_class = _ece_from_sums(*_bin_sums(conf, hits, _uniform_bin_index(conf, n_bins), n_bins))
    return per_class.reshape(n_runs, n_classes).mean(axis=-1)


_CORRECTNESS = ("label", "soft")
_CALIBRATION_ESTIMATORS = ("ece", "debiased")


def _correctness_inputs(
    probs: ArrayLike, target: ArrayLike, correctness: str
) -> tuple[Floats, Floats, tuple[int, ...]]:
    """Validated top-label confidence and correctness, flattened to ``(R, N)``, and the run shape.

    ``correctness="label"``: ``target`` holds labels ``y_i`` and correctness is ``1[ŷ_i = y_i]``.
    ``correctness="soft"``: ``target`` holds reference distributions ``h_i`` and correctness is
    ``h_i[ŷ_i]`` (the probability that a label drawn from ``h_i`` agrees with the prediction).
    """
    if correctness not in _CORRECTNESS:
        raise ValueError(f"correctness: expected one of {_CORRECTNESS}, got {correctness!r}")
    p = _check_distribution(probs, "probs")
    conf, pred = _top_label(p)
    if correctness == "label":
        hits = _label_hits(pred, _check_labels(target, p, "labels"))
    else:
        hits = _soft_hits(pred, _check_reference(target, p, "reference"))
    conf2, lead = _flatten_runs(conf, 1)
    hits2, _ = _flatten_runs(hits, 1)
    return conf2, hits2, lead


def _binned_error(
    probs: ArrayLike,
    target: ArrayLike,
    n_bins: int,
    correctness: str,
    binning: Callable[[Floats, int], Ints],
    from_sums: Callable[[Floats, Floats, Floats, Floats], Floats],
) -> Floats:
    """A top-label binned calibration error of validated inputs, shaped like the runs."""
    n_bins = _check_n_bins(n_bins)
    conf, hits, lead = _correctness_inputs(probs, target, correctness)
    return from_sums(*_bin_sums(conf, hits, binning(conf, n_bins), n_bins)).reshape(lead)


# ----------------------------------------------------------------------------------------------
# Basic quantities
# ----------------------------------------------------------------------------------------------


def accuracy(probs: ArrayLike, labels: ArrayLike) -> Floats:
    """Accuracy ``(1/N) Σ_i 1[ŷ_i = y_i]`` (fraction in [0, 1]; argmax ties → lowest index)."""
    p = _check_distribution(probs, "probs")
    return _accuracy(_label_hits(_top_label(p)[1], _check_labels(labels, p, "labels")))


def nll(probs: ArrayLike, labels: ArrayLike) -> Floats:
    """Negative log-likelihood ``-(1/N) Σ_i ln max(p_{i,y_i}, EPS)`` in nats."""
    p = _check_distribution(probs, "probs")
    return _nll(_log_probs(p), _check_labels(labels, p, "labels"))


def brier(probs: ArrayLike, labels: ArrayLike) -> Floats:
    """Multi-class Brier score ``(1/N) Σ_i Σ_c (p_ic - 1[c = y_i])²`` (Brier 1950; range [0, 2]).

    Note: this is the sum over classes, i.e. ``n_classes`` times the mean squared error over all
    (item, class) cells.
    """
    p = _check_distribution(probs, "probs")
    return _brier(p, _check_labels(labels, p, "labels"))


# ----------------------------------------------------------------------------------------------
# Binned calibration errors
# ----------------------------------------------------------------------------------------------


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
    """Top-label expected calibration error with equal-width bins.

    ``ECE = Σ_b (n_b / N) · |acc_b − conf_b|`` where bin ``b`` holds the items whose top-label
    confidence ``conf_i`` falls in the b-th of ``n_bins`` equal-width intervals of [0, 1] (see the
    module docstring for edges), ``acc_b`` is the fraction of them with ``ŷ_i = y_i`` and
    ``conf_b`` their mean confidence. Empty bins contribute 0. Range [0, 1].
    """
    return _binned_error(probs, labels, n_bins, "label", _uniform_bin_index, _ece_from_sums)


def adaptive_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
    """Adaptive (equal-mass) top-label ECE (Nguyen & O'Connor 2015; Nixon et al. 2019).

    Same formula as :func:`ece`, but the items of each run are sorted by confidence (stable sort)
    and cut into ``n_bins`` consecutive groups of (almost) equal size — sizes as
    ``numpy.array_split`` gives them. With fewer items than bins some bins are empty.
    """
    return _binned_error(probs, labels, n_bins, "label", _equal_mass_bin_index, _ece_from_sums)


def mce(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
    """Maximum calibration error ``max_b |acc_b − conf_b|`` over the non-empty equal-width bins of
    :func:`ece`. Range [0, 1]; always ``MCE ≥ ECE``."""
    return _binned_error(probs, labels, n_bins, "label", _uniform_bin_index, _mce_from_sums)


def classwise_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
    """Class-wise ECE (Kull et al. 2019): ``(1/C) Σ_c Σ_b (n_bc / N) · |freq_bc − conf_bc|``.

    For each class ``c`` the items are binned by ``p_ic`` into the equal-width bins of :func:`ece`
    (here a probability of exactly 0 matters and lands in the first bin); ``conf_bc`` is the mean
    ``p_ic`` of bin ``b`` and ``freq_bc`` the fraction of its items with ``y_i = c``. Range [0, 1].
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_distribution(probs, "probs")
    y = _check_labels(labels, p, "labels")
    p3, lead = _flatten_runs(p, 2)
    return _classwise_ece(p3, y.reshape(p3.shape[:2]), n_bins).reshape(lead)


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability-diagram data for equal-width top-label bins.

    ``bin_lower``/``bin_upper`` have shape ``(n_bins,)``; ``count`` (items in the bin),
    ``mean_confidence`` and ``accuracy`` have shape ``lead + (n_bins,)`` where ``lead`` is
    ``probs.shape[:-2]``. For an empty bin ``count`` is 0 and ``mean_confidence``/``accuracy``
    are NaN (undefined, not zero).
    """

    bin_lower: Floats
    bin_upper: Floats
    count: Ints
    mean_confidence: Floats
    accuracy: Floats


def reliability_bins(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> ReliabilityBins:
    """Per-bin mean confidence, accuracy and count (the ingredients of :func:`ece`)."""
    n_bins = _check_n_bins(n_bins)
    conf, hits, lead = _correctness_inputs(probs, labels, "label")
    count, conf_sum, hit_sum, _ = _bin_sums(conf, hits, _uniform_bin_index(conf, n_bins), n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    shape = lead + (n_bins,)
    return ReliabilityBins(
        bin_lower=edges[:-1].copy(),
        bin_upper=edges[1:].copy(),
        count=count.astype(np.int64).reshape(shape),
        mean_confidence=mean_conf.reshape(shape),
        accuracy=acc.reshape(shape),
    )


def reliability_table(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> pd.DataFrame:
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


def kl_divergence(human: ArrayLike, probs: ArrayLike) -> Floats:
    """Mean Kullback–Leibler divergence ``(1/N) Σ_i KL(h_i ‖ p_i)``,
    ``KL(h‖p) = Σ_c h_c ln(h_c / max(p_c, EPS))`` in nats (``0 · ln 0 = 0``). ≥ 0.

    Argument order follows the notation: the human distribution first, the prediction second.
    """
    h, p = _check_pair(human, probs)
    return _kl(h, _log_probs(p))


def js_divergence(human: ArrayLike, probs: ArrayLike) -> Floats:
    """Mean Jensen–Shannon divergence ``(1/N) Σ_i JS(h_i, p_i)`` in nats,
    ``JS(h, p) = ½ KL(h‖m) + ½ KL(p‖m)`` with ``m = (h + p)/2``. Symmetric, in [0, ln 2].

    (This is the *divergence*; ``scipy.spatial.distance.jensenshannon`` returns its square root.)
    """
    h, p = _check_pair(human, probs)
    return _js(h, p)


def total_variation(human: ArrayLike, probs: ArrayLike) -> Floats:
    """Mean total-variation distance ``(1/N) Σ_i ½ Σ_c |h_ic − p_ic|``. In [0, 1]."""
    h, p = _check_pair(human, probs)
    return _total_variation(h, p)


def entropy_calibration_error(human: ArrayLike, probs: ArrayLike) -> Floats:
    """Entropy calibration error ``(1/N) Σ_i |H(p_i) − H(h_i)|`` in nats. In [0, ln C]."""
    h, p = _check_pair(human, probs)
    return _entropy_calibration_error(entropy(h), entropy(p))


def spearman_by_run(x: ArrayLike, y: ArrayLike) -> Floats:
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


def entropy_spearman(human: ArrayLike, probs: ArrayLike) -> Floats:
    """Spearman rank correlation across items of ``H(p_i)`` with ``H(h_i)`` (per run).

    NaN where undefined (all human or all predicted entropies equal, or a single item).
    """
    h, p = _check_pair(human, probs)
    return spearman_by_run(entropy(p), entropy(h))


def human_mode_ece(
    human: ArrayLike,
    probs: ArrayLike,
    official: ArrayLike | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> Floats:
    """Top-label ECE (:func:`ece`) with correctness measured against the human mode
    ``m_i`` (:func:`human_mode`, ties towards ``official`` when given)."""
    p = _check_distribution(probs, "probs")
    h = _check_reference(human, p)
    labels = None if official is None else _check_labels(official, p, "official")
    return ece(p, human_mode(h, labels), n_bins)


# ----------------------------------------------------------------------------------------------
# Soft-reference and debiased calibration errors
# ----------------------------------------------------------------------------------------------


def _debiased_label(count: Floats, conf_sum: Floats, hit_sum: Floats, dsq_sum: Floats) -> Floats:
    return _debiased_from_sums(count, conf_sum, hit_sum, dsq_sum, "label")


def _debiased_soft(count: Floats, conf_sum: Floats, hit_sum: Floats, dsq_sum: Floats) -> Floats:
    return _debiased_from_sums(count, conf_sum, hit_sum, dsq_sum, "soft")


def soft_ece(probs: ArrayLike, reference: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
    """Soft-reference top-label ECE: :func:`ece` with correctness ``h_i[ŷ_i]`` instead of ``1[ŷ_i = y_i]``.

    ``ECE_soft = Σ_b (n_b / N) · |mean_{i∈b} h_i[ŷ_i] − mean_{i∈b} conf_i|`` with the equal-width bins
    of :func:`ece` (module docstring). ``h_i[ŷ_i]`` is the probability that an annotator drawn from
    the reference distribution ``h_i`` agrees with the prediction (the soft correctness of
    :mod:`softlab.cartography`); with one-hot ``h`` this is :func:`ece` against the one-hot label.
    ``reference`` is ``(n_items, n_classes)`` or the full prediction shape. Range [0, 1].
    """
    return _binned_error(probs, reference, n_bins, "soft", _uniform_bin_index, _ece_from_sums)


def debiased_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
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
    return _binned_error(probs, labels, n_bins, "label", _uniform_bin_index, _debiased_label)


def debiased_soft_calibration_error(probs: ArrayLike, reference: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> Floats:
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
    return _binned_error(probs, reference, n_bins, "soft", _uniform_bin_index, _debiased_soft)


def _check_groups(groups: ArrayLike, n_items: int) -> tuple[Ints, int]:
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
    probs: ArrayLike,
    target: ArrayLike,
    groups: ArrayLike,
    correctness: str = "label",
    estimator: str = "debiased",
    n_bins: int = DEFAULT_N_BINS,
) -> Floats:
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
    conf, hits, lead = _correctness_inputs(probs, target, correctness)
    g, n_groups = _check_groups(groups, conf.shape[1])
    per_group = _group_bin_sums(conf, hits, _uniform_bin_index(conf, n_bins), n_bins, g, n_groups)
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

    def __init__(self, v: Floats, groups: Ints) -> None:
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

    def without(self, j: int) -> Floats:
        np.cumsum(self._member == j, axis=-1, out=self._cum[:, 1:])
        flat = self._cum.ravel()
        removed = (flat[self._start] + flat[self._end]).reshape(self._shape)
        return self.full - removed / 2.0


def spearman_leave_group_out(x: ArrayLike, y: ArrayLike, groups: ArrayLike) -> Floats:
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

    def pearson(ra: Floats, rb: Floats, keep: NDArray[np.bool_] | None, n_keep: int) -> Floats:
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
    probs: ArrayLike,
    official: ArrayLike,
    human: ArrayLike | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, Floats]:
    """Every metric of this module for a stack of runs, as ``{name: array of shape probs.shape[:-2]}``.

    Names and definitions: ``accuracy``, ``nll``, ``brier``, ``ece``, ``adaptive_ece``, ``mce``,
    ``classwise_ece`` and ``debiased_ce`` against ``official``; when ``human`` is given also
    ``accuracy_human_mode``, ``nll_human_mode``, ``ece_human_mode`` (against the human mode, ties
    towards ``official``), ``kl_human`` (KL(h‖p)), ``js_human``, ``tv_human``,
    ``entropy_calibration_error``, ``entropy_spearman``, ``ece_soft`` and ``debiased_ce_soft``
    (soft-reference calibration). Each value comes from the same private definition as the
    single-metric function of that name; the inputs are validated once and the intermediates
    several metrics share (``ln p``, the top label, entropies, bin sums) are computed once.
    """
    n_bins = _check_n_bins(n_bins)
    p = _check_distribution(probs, "probs")
    y = _check_labels(official, p, "official")
    p3, lead = _flatten_runs(p, 2)  # (R, N, C)
    y2 = y.reshape(p3.shape[:2])

    log_p = _log_probs(p3)
    conf, pred = _top_label(p3)
    uniform_bins = _uniform_bin_index(conf, n_bins)

    hits = _label_hits(pred, y2)
    sums = _bin_sums(conf, hits, uniform_bins, n_bins)
    out: dict[str, Floats] = {
        "accuracy": _accuracy(hits),
        "nll": _nll(log_p, y2),
        "brier": _brier(p3, y2),
        "ece": _ece_from_sums(*sums),
        "adaptive_ece": _ece_from_sums(*_bin_sums(conf, hits, _equal_mass_bin_index(conf, n_bins), n_bins)),
        "mce": _mce_from_sums(*sums),
        "classwise_ece": _classwise_ece(p3, y2, n_bins),
        "debiased_ce": _debiased_label(*sums),
    }
    if human is not None:
        h3 = _check_reference(human, p).reshape(p3.shape)
        mode = human_mode(h3, y2)
        hits_mode = _label_hits(pred, mode)
        soft_sums = _bin_sums(conf, _soft_hits(pred, h3), uniform_bins, n_bins)
        h_ent, p_ent = entropy(h3), entropy(p3)
        out.update(
            {
                "accuracy_human_mode": _accuracy(hits_mode),
                "nll_human_mode": _nll(log_p, mode),
                "ece_human_mode": _ece_from_sums(*_bin_sums(conf, hits_mode, uniform_bins, n_bins)),
                "kl_human": _kl(h3, log_p),
                "js_human": _js(h3, p3),
                "tv_human": _total_variation(h3, p3),
                "entropy_calibration_error": _entropy_calibration_error(h_ent, p_ent),
                "entropy_spearman": spearman_by_run(p_ent, h_ent),
                "ece_soft": _ece_from_sums(*soft_sums),
                "debiased_ce_soft": _debiased_soft(*soft_sums),
            }
        )
    return {name: np.asarray(v, dtype=np.float64).reshape(lead) for name, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Generator labels
# ----------------------------------------------------------------------------------------------


def generator_teacher_agreement(soft_labels: ArrayLike, teacher_probs: ArrayLike) -> dict[str, float]:
    """How far a classifier (the *teacher*) agrees with the synthetic MNIST generator's soft labels
    (:mod:`softlab.generator`).

    With ``g_i`` the generator label and ``p_i`` the teacher's distribution of item ``i``:

    * ``mode_agreement`` = :func:`accuracy` of ``p`` against ``argmax_c g_ic`` (lowest index on ties);
    * ``mean_total_variation`` = :func:`total_variation` of ``g`` and ``p``, in [0, 1];
    * ``support_mass`` = mean over items of ``Σ_{c: g_ic > 0} p_ic``, the teacher's mass on the
      generator's (one or two) classes;
    * ``n_items``.
    """
    g = check_probability_rows(soft_labels, "soft_labels")
    check_shape(g, (None, None), "soft_labels")
    p = check_shape(check_probability_rows(teacher_probs, "teacher_probs"), g.shape, "teacher_probs")
    return {
        "mode_agreement": float(accuracy(p, np.argmax(g, axis=1))),
        "mean_total_variation": float(total_variation(g, p)),
        "support_mass": float(np.mean(np.where(g > 0, p, 0.0).sum(axis=1))),
        "n_items": int(g.shape[0]),
    }
