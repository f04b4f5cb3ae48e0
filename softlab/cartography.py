"""Dataset cartography (Swayamdipta et al. 2020) under hard and soft reference labels.

Training dynamics are predicted distributions recorded after each epoch, shaped
``(..., n_epochs, n_items, n_classes)`` — ``(epochs, items, classes)`` for one run or
``(runs, epochs, items, classes)`` for many; every statistic below is computed for all runs at
once and has shape ``(..., n_items)``.

For epoch ``e`` and item ``i`` let ``p_ei`` be the predicted distribution and ``s_ei`` the
probability given to the reference:

* reference ``official`` or ``human-mode`` (a label ``r_i``): ``s_ei = p_ei[r_i]``;
  correct at epoch ``e`` iff ``argmax_c p_eic = r_i``;
* reference ``soft`` (the human distribution ``h_i``): ``s_ei = Σ_c h_ic p_eic`` — the expected
  probability of a label drawn from ``h_i``; correctness at epoch ``e`` is ``h_i[argmax_c p_eic]``
  — the probability that an annotator drawn from ``h_i`` agrees with the prediction (equal to the
  0/1 correctness when ``h_i`` is one-hot).

Then **confidence** ``= mean_e s_ei``, **variability** ``= sqrt(mean_e (s_ei − confidence_i)²)``
(population SD, ``ddof=0``, as in Swayamdipta et al.), **correctness** ``= mean_e`` of the
per-epoch correctness.

Regions (:class:`RegionRule`, configurable): an item is **ambiguous** when its variability is
strictly above the ``ambiguous_quantile`` quantile of the variabilities of its run (default 2/3:
the top third; equal variabilities share the verdict, so if all are equal none is ambiguous);
otherwise **easy-to-learn** when confidence ≥ ``confidence_threshold`` (default 0.5) and
**hard-to-learn** when below. Ambiguity takes precedence, so the three regions partition the items.

Relation to human uncertainty: Spearman correlation of variability and of confidence with the
human entropy ``H(h_i)`` (nats), and the AUROC with which variability ranks *human-ambiguous*
items — items whose ``H(h_i)`` exceeds a threshold (default: the 2/3 quantile of the entropies,
i.e. the top tertile, matching the ``hard`` stratum of :mod:`softlab.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from softlab.metrics import entropy, human_mode, spearman_by_run
from softlab.validation import check_labels, check_probability_rows, check_shape

__all__ = [
    "REFERENCES",
    "REGIONS",
    "CartographyStats",
    "RegionRule",
    "assign_regions",
    "auroc",
    "cartography_stats",
    "data_map_table",
    "human_ambiguous",
    "human_uncertainty_relation",
]

REGIONS: tuple[str, ...] = ("easy-to-learn", "ambiguous", "hard-to-learn")
REFERENCES: tuple[str, ...] = ("official", "human-mode", "soft")

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class CartographyStats:
    """Per-item training-dynamics statistics, each shaped ``(..., n_items)``."""

    confidence: Floats
    variability: Floats
    correctness: Floats


@dataclass(frozen=True)
class RegionRule:
    """Thresholds that assign data-map regions (see the module docstring)."""

    ambiguous_quantile: float = 2.0 / 3.0
    confidence_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.ambiguous_quantile <= 1.0:
            raise ValueError(f"ambiguous_quantile: expected a number in [0, 1], got {self.ambiguous_quantile!r}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold: expected a number in [0, 1], got {self.confidence_threshold!r}")


def _check_dynamics(dynamics: ArrayLike) -> Floats:
    """Dynamics as float64 ``(..., n_epochs, n_items, n_classes)``: every (epoch, item) row a probability row."""
    return check_probability_rows(dynamics, "dynamics", min_ndim=3)


def cartography_stats(dynamics: ArrayLike, reference: ArrayLike) -> CartographyStats:
    """Confidence, variability and correctness of every item (module docstring for definitions).

    ``reference`` is either integer labels ``(n_items,)`` (official or human mode) or a soft
    distribution ``(n_items, n_classes)`` (each row summing to 1) — the soft variant. A reference
    may also carry the leading run axes of ``dynamics``.
    """
    d = _check_dynamics(dynamics)
    ref = np.asarray(reference)
    n_items, n_classes = d.shape[-2], d.shape[-1]
    pred = np.argmax(d, axis=-1)  # (..., E, N)
    if ref.dtype.kind in "iu":
        if ref.shape[-1:] != (n_items,):
            raise ValueError(f"reference: expected labels shaped (..., {n_items}), got {ref.shape}")
        r = np.expand_dims(check_labels(ref, "reference", n_classes, ndim=None), -2)  # (..., 1, N)
        r = np.broadcast_to(r, pred.shape)
        score = np.take_along_axis(d, r[..., None], axis=-1)[..., 0]
        correct = (pred == r).astype(np.float64)
    elif ref.dtype.kind == "f":
        if ref.shape[-2:] != (n_items, n_classes):
            raise ValueError(f"reference: expected a soft label shaped (..., {n_items}, {n_classes}), got {ref.shape}")
        h = np.expand_dims(check_probability_rows(ref, "reference"), -3)  # (..., 1, N, C)
        score = (h * d).sum(axis=-1)
        hb = np.broadcast_to(h, d.shape)
        correct = np.take_along_axis(hb, pred[..., None], axis=-1)[..., 0]
    else:
        raise ValueError(f"reference: expected integer labels or float distributions, got dtype {ref.dtype}")
    confidence = score.mean(axis=-2)
    variability = score.std(axis=-2, ddof=0)
    return CartographyStats(confidence=confidence, variability=variability, correctness=correct.mean(axis=-2))


def assign_regions(
    confidence: ArrayLike,
    variability: ArrayLike,
    rule: RegionRule = RegionRule(),
) -> NDArray[np.str_]:
    """Region name per item (``"easy-to-learn"``, ``"ambiguous"``, ``"hard-to-learn"``).

    The variability quantile is taken along the last (item) axis, separately for each run.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    var = np.asarray(variability, dtype=np.float64)
    if conf.shape != var.shape or conf.ndim == 0 or conf.shape[-1] == 0:
        raise ValueError(
            f"confidence/variability: expected equal non-empty shapes (..., n_items), got {conf.shape} and {var.shape}"
        )
    cut = np.quantile(var, rule.ambiguous_quantile, axis=-1, keepdims=True)
    out = np.where(conf >= rule.confidence_threshold, "easy-to-learn", "hard-to-learn").astype(object)
    out[var > cut] = "ambiguous"
    return out.astype(str)


def auroc(scores: ArrayLike, positive: ArrayLike) -> Floats:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` labels, along the last axis.

    Mann–Whitney form: ``(Σ ranks of positives − P(P+1)/2) / (P·Q)`` with average ranks on ties
    (ties count ½), ``P`` positives and ``Q`` negatives. NaN when either class is absent.
    ``scores`` may have leading run axes; ``positive`` broadcasts against it.
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive).astype(bool)
    s, pos = np.broadcast_arrays(s, pos)
    ranks = rankdata(s, axis=-1)
    n_pos = pos.sum(axis=-1).astype(np.float64)
    n_neg = pos.shape[-1] - n_pos
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=-1)
    den = n_pos * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rank_sum - n_pos * (n_pos + 1) / 2.0) / np.where(den > 0, den, 1.0), np.nan)


def human_ambiguous(human_entropy: ArrayLike, threshold: float | None = None) -> NDArray[np.bool_]:
    """Boolean mask of human-ambiguous items: ``H(h) > threshold`` (default: the 2/3 quantile of the
    given entropies, i.e. the top tertile; equal entropies share the verdict)."""
    e = np.asarray(human_entropy, dtype=np.float64)
    if e.size == 0:
        raise ValueError("human_entropy: expected a non-empty array")
    t = float(np.quantile(e, 2.0 / 3.0)) if threshold is None else float(threshold)
    return e > t


def human_uncertainty_relation(
    stats: CartographyStats,
    human: ArrayLike,
    ambiguous_threshold: float | None = None,
) -> dict[str, Floats]:
    """How the training dynamics mirror human uncertainty.

    ``human`` is the human distribution ``(n_items, n_classes)``. Returns arrays shaped like the
    leading run axes of ``stats``:

    * ``spearman_variability_entropy``: Spearman ρ of variability with ``H(h)``;
    * ``spearman_confidence_entropy``: Spearman ρ of confidence with ``H(h)``;
    * ``auroc_variability_ambiguous``: AUROC of variability for human-ambiguous items
      (:func:`human_ambiguous` with ``ambiguous_threshold``);
    * ``n_ambiguous``: the number of human-ambiguous items (same for every run).
    """
    h = check_shape(check_probability_rows(human, "human"), (stats.variability.shape[-1], None), "human")
    e = entropy(h)
    amb = human_ambiguous(e, ambiguous_threshold)
    lead = stats.variability.shape[:-1]
    return {
        "spearman_variability_entropy": spearman_by_run(stats.variability, e),
        "spearman_confidence_entropy": spearman_by_run(stats.confidence, e),
        "auroc_variability_ambiguous": auroc(stats.variability, amb),
        "n_ambiguous": np.full(lead, int(amb.sum())),
    }


def data_map_table(
    dynamics: ArrayLike,
    official: ArrayLike,
    human: ArrayLike | None = None,
    item_ids: ArrayLike | None = None,
    rule: RegionRule = RegionRule(),
) -> pd.DataFrame:
    """Tidy data-map table: one row per (run, reference, item).

    ``dynamics`` is ``(epochs, items, classes)`` or ``(runs, epochs, items, classes)``. References:
    ``official`` always; ``human-mode`` (ties towards official) and ``soft`` when ``human``
    ``(items, classes)`` is given. Columns: ``run``, ``reference``, ``item``, ``confidence``,
    ``variability``, ``correctness``, ``region``, and ``human_entropy`` (nats; NaN without human).
    """
    d = _check_dynamics(dynamics)
    if d.ndim == 3:
        d = d[None]
    elif d.ndim != 4:
        raise ValueError(f"dynamics: expected 3 or 4 dimensions, got shape {d.shape}")
    n_runs, _, n_items, n_classes = d.shape
    off = check_shape(check_labels(official, "official", n_classes), (n_items,), "official")
    ids = np.arange(n_items) if item_ids is None else check_shape(item_ids, (n_items,), "item_ids")
    refs: list[tuple[str, NDArray[np.int64] | Floats]] = [("official", off)]
    h_entropy = np.full(n_items, np.nan)
    if human is not None:
        h = check_shape(check_probability_rows(human, "human"), (n_items, n_classes), "human")
        refs.append(("human-mode", human_mode(h, off)))
        refs.append(("soft", h))
        h_entropy = entropy(h)
    frames = []
    for name, ref in refs:
        st = cartography_stats(d, ref)
        regions = assign_regions(st.confidence, st.variability, rule)
        frames.append(
            pd.DataFrame(
                {
                    "run": np.repeat(np.arange(n_runs), n_items),
                    "reference": name,
                    "item": np.tile(ids, n_runs),
                    "confidence": st.confidence.ravel(),
                    "variability": st.variability.ravel(),
                    "correctness": st.correctness.ravel(),
                    "region": regions.ravel(),
                    "human_entropy": np.tile(h_entropy, n_runs),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
