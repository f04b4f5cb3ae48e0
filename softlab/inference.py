"""From out-of-fold predictions to verdicts: pre-registered tests, honest intervals, Holm, TOST, power.

The unit of analysis is an :class:`ArmPredictions`: for each seed, the pooled out-of-fold final
probabilities of every evaluated item under every condition (folds are pooled inside a seed, so
each item has exactly one prediction per seed). Seeds are the independent replications; the items
are a sample from a population of items. The tests to run are fixed in ``params/claims.yml``
(:func:`load_claims`); :func:`verdict_table` turns a book's arms into one table.

Definitions
-----------
**Paired difference** (``kind: difference``). For condition ``c``, comparator ``b``, metric ``m``
on the stratum's items ``I``: ``d_s = m(c, s, I) − m(b, s, I)``, estimate ``D = mean_s d_s``.
Its variance carries both sources of randomness of a crossed seeds × items design:
the items are split into ``G`` random groups (seeded), ``m`` is recomputed with each group left
out (delete-a-group jackknife), and the jackknife pseudo-values
``P_sg = G·d_s − (G − 1)·d_s^(−g)`` (for a mean over items: the mean of group ``g``) form an
``S × G`` table analysed as a two-way crossed random-effects layout::

    Var(D) = (MS_seed + MS_group − MS_residual) / (S·G)

(``MS`` the ANOVA mean squares with ``S − 1``, ``G − 1`` and ``(S − 1)(G − 1)`` degrees of
freedom; the expectation is ``σ²_seed/S + σ²_item/G + σ²_seed×item/(S·G)``: seed variance plus
item-sampling variance, the interaction counted once). A negative component estimate is truncated at
zero (the larger of ``MS_seed/(S·G)`` and ``MS_group/(S·G)`` is used). The interval is
``D ± t_ν · sqrt(Var)`` with Satterthwaite degrees of freedom ``ν``; two-sided and one-sided
p-values come from the same ``t``. The **relative effect** ``R = D / |mean_s m(b, s, I)|`` gets
the same treatment applied to its delta-method pseudo-values ``(P^d − R·sign(B̄)·P^b)/|B̄|``.

**Best of several comparators** (claim 1: ``best_of``). The pre-registered comparator is the best
baseline, the one with the best mean in the predicted direction (lowest for ``lower``). Selecting
it from the data makes a naive test anti-conservative against the refuting side, so the
interval for ``δ* = μ_c − μ_best`` (``= max_k δ_k`` for ``lower``) is
``[max_k L_k(α/(2K)), max_k U_k(α/2)]`` from the ``K`` individual intervals (one-sided levels in
brackets): beating the best baseline means beating every baseline (an intersection–union test,
no adjustment needed), while losing to it needs one Bonferroni-adjusted loss. This interval covers
``δ*`` with probability ≥ 1 − α; its p-value is ``min(1, 2·min(max_k p_k^pred, K·min_k p_k^other))``.

**Variance ratio** (``kind: variance_ratio``, claim 2): ``F = s²_c / s²_b`` of the per-seed metric
(all items), tested with Pitman–Morgan: ``t = r_UV·sqrt((n − 2)/(1 − r_UV²))`` on ``n − 2``
degrees of freedom, ``r_UV`` the correlation of ``U = X + Y`` and ``V = X − Y``; exact interval
``F·[K − sqrt(K² − 1), K + sqrt(K² − 1)]`` with ``K = 1 + 2(1 − r²)t²_{n−2}/(n − 2)`` and ``r`` the
correlation of ``X`` and ``Y`` (exact under bivariate normality). The item sample is held fixed:
the estimand is the seed variance on these items.

**Descriptive arms** (MNIST: 100 pre-selected items, not a sample): an exact sign-flip
permutation test over seeds of ``d_s`` (all ``2^S`` sign patterns up to 16 seeds, else
``2^16`` seeded draws) with the interval obtained by inverting it, and for variance ratios an
exact within-seed swap permutation test of ``|log F|``; verdict ``descriptive``.

**Multiplicity**: Holm's step-down adjustment over the primary tests of all verdict arms (the
family); exploratory rows are adjusted within their own family and descriptive rows within
theirs. **Verdicts** (:func:`decide_verdict`): ``confirmed`` / ``refuted`` when the interval
excludes 0 (ratio 1) on the predicted / other side and the Holm-adjusted p < α; otherwise
``equivalent`` when the ``equivalence_confidence`` (90%) interval lies inside ± the margin — a
TOST at α = 5% per side, Schuirmann 1987; otherwise ``inconclusive``. Fewer than ``min_seeds``
seeds → ``inconclusive``. **MDE**: the effect detectable with the configured power at two-sided
level ``α / family size`` (Holm's first step).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sps

from softlab import cartography
from softlab import metrics as M
from softlab.io import atomic_path
from softlab.paths import PROJECT_ROOT
from softlab.validation import check_labels, check_probability_rows, check_shape

__all__ = [
    "CLAIMS_PATH",
    "DIRECTIONS",
    "METRICS",
    "STRATA",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "ArmPredictions",
    "ArmRule",
    "Claims",
    "ClaimsError",
    "Composite",
    "DifferenceResult",
    "MetricSpec",
    "PitmanMorgan",
    "Settings",
    "TestSpec",
    "best_of",
    "crossed_variance",
    "decide_verdict",
    "difference_mde",
    "holm",
    "item_groups",
    "leave_group_out_values",
    "load_claims",
    "paired_difference",
    "pitman_morgan",
    "seeds_for_power",
    "sign_flip_interval",
    "sign_flip_test",
    "swap_permutation_variance_test",
    "variance_ratio_mde",
    "verdict_table",
    "write_verdicts",
]

STRATA: tuple[str, ...] = ("all", "easy", "medium", "hard", "mode-shifted")
DIRECTIONS: tuple[str, ...] = ("lower", "higher")
VERDICTS: tuple[str, ...] = ("confirmed", "refuted", "equivalent", "inconclusive", "descriptive")
KINDS: tuple[str, ...] = ("difference", "variance_ratio")
CLAIMS_PATH: Path = PROJECT_ROOT / "params" / "claims.yml"

VERDICT_COLUMNS: tuple[str, ...] = (
    "claim",
    "arm",
    "test",
    "primary",
    "metric",
    "comparator",
    "estimate",
    "ci_low",
    "ci_high",
    "relative",
    "relative_ci_low",
    "relative_ci_high",
    "p_value",
    "p_adjusted",
    "margin",
    "seeds",
    "mde",
    "verdict",
)
"""The required columns of the verdict table, in order (extra columns follow them)."""

EXTRA_COLUMNS: tuple[str, ...] = (
    "family",
    "family_size",
    "kind",
    "method",
    "stratum",
    "condition",
    "comparator_set",
    "direction",
    "margin_scale",
    "equivalence_ci_low",
    "equivalence_ci_high",
    "df",
    "se",
    "mean_condition",
    "mean_comparator",
    "seed_correlation",
    "mde_relative",
    "n_items",
    "item_groups",
    "reference",
    "design",
    "rationale",
)


# ----------------------------------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ArmPredictions:
    """Out-of-fold predictions of one arm: the unit primary tests work on.

    Attributes
    ----------
    arm: ``"fashion-mnist"``, ``"synthetic-mnist"``, ``"mnist"``, or a user-votes arm name.
    reference_name: ``"human"`` or ``"generator"`` (what fills the reference slot).
    seeds: ``(S,)`` int.
    official: ``(I,)`` int, official labels of the evaluated items.
    reference: ``(I, C)`` float, human (or generator) distributions.
    strata: name -> ``(I,)`` bool: ``"all"``, ``"easy"``, ``"medium"``, ``"hard"``, ``"mode-shifted"``.
    probs: condition -> ``(S, I, C)`` float: seed ``s``'s out-of-fold final probabilities (item ``i``
        predicted by the one model of seed ``s`` that held it out). Conditions are ``mode/shape``
        names (``"human/human"``, ``"original/hard"``, temperature-scaled ``"human/hard+ts"`` ...).
    item_arrays: condition -> name -> ``(S, I)`` float: per-item extras from held-out training
        dynamics: ``"heldout_confidence"`` (mean over epochs of the probability of the reference
        mode), ``"heldout_variability"`` (its SD over epochs).
    design: ``"pooled"`` (K-fold cross-fitting, folds pooled per seed) or ``"single-fold"``.
    """

    arm: str
    reference_name: str
    seeds: np.ndarray
    official: np.ndarray
    reference: np.ndarray
    strata: Mapping[str, np.ndarray]
    probs: Mapping[str, np.ndarray]
    item_arrays: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    design: str = "pooled"

    def __post_init__(self) -> None:
        where = f"ArmPredictions {self.arm!r}"
        seeds = np.asarray(self.seeds)
        if seeds.ndim != 1 or seeds.dtype.kind not in "iu":
            raise ValueError(f"{where}: seeds: expected a 1-D integer array, got {seeds.shape} {seeds.dtype}")
        if len(np.unique(seeds)) != len(seeds):
            raise ValueError(f"{where}: seeds: expected distinct seeds, got {seeds.tolist()}")
        official = check_labels(self.official, f"{where}: official")
        n_items = official.shape[0]
        ref = check_shape(
            check_probability_rows(self.reference, f"{where}: reference"), (n_items, None), f"{where}: reference"
        )
        n_seeds, n_classes = seeds.shape[0], ref.shape[1]
        if self.reference_name not in ("human", "generator"):
            raise ValueError(f"{where}: reference_name: expected 'human' or 'generator', got {self.reference_name!r}")
        if self.design not in ("pooled", "single-fold"):
            raise ValueError(f"{where}: design: expected 'pooled' or 'single-fold', got {self.design!r}")
        for name, mask in self.strata.items():
            m = np.asarray(mask)
            if m.shape != (n_items,) or m.dtype != bool:
                raise ValueError(
                    f"{where}: strata[{name!r}]: expected a boolean mask shaped ({n_items},), got {m.shape} {m.dtype}"
                )
        for cond, p in self.probs.items():
            shape = np.shape(p)
            if shape != (n_seeds, n_items, n_classes):
                raise ValueError(
                    f"{where}: probs[{cond!r}]: expected shape (seeds, items, classes) = "
                    f"({n_seeds}, {n_items}, {n_classes}), got {shape}"
                )
        for cond, arrays in self.item_arrays.items():
            for name, a in arrays.items():
                if np.shape(a) != (n_seeds, n_items):
                    raise ValueError(
                        f"{where}: item_arrays[{cond!r}][{name!r}]: expected shape (seeds, items) = "
                        f"({n_seeds}, {n_items}), got {np.shape(a)}"
                    )

    @property
    def n_seeds(self) -> int:
        return int(np.asarray(self.seeds).shape[0])

    def has(self, condition: str, needs: Sequence[str]) -> bool:
        """Whether ``condition`` has everything a metric needs (``"probs"`` and/or item arrays)."""
        for need in needs:
            if need == "probs":
                if condition not in self.probs:
                    return False
            elif need not in self.item_arrays.get(condition, {}):
                return False
        return True


# ----------------------------------------------------------------------------------------------
# Metric registry
# ----------------------------------------------------------------------------------------------

MetricFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, Mapping[str, np.ndarray]], np.ndarray]
LeaveGroupOut = Callable[[np.ndarray, np.ndarray, np.ndarray, Mapping[str, np.ndarray], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MetricSpec:
    """A per-seed metric: ``function(probs (S, I', C), official (I',), reference (I', C),
    arrays {name: (S, I')}) -> (S,)``.

    ``needs`` names its inputs (``"probs"`` and/or item arrays). ``additive``: the metric is a mean
    over items of a per-item value, so the item jackknife reuses per-item values (the function
    itself applied to one-item runs). ``leave_group_out``: a one-pass evaluator returning
    ``(S, G + 1)`` (all items, then each group left out) that equals the function on those subsets.
    """

    name: str
    function: MetricFunction
    needs: tuple[str, ...]
    description: str
    additive: bool = False
    leave_group_out: LeaveGroupOut | None = None


def _calibration_spec(name: str, correctness: str, estimator: str, labels: str, description: str) -> MetricSpec:
    """A binned calibration metric and its one-pass leave-group-out evaluator."""

    def target(official: np.ndarray, reference: np.ndarray) -> np.ndarray:
        if correctness == "soft":
            return reference
        return M.human_mode(reference, official) if labels == "human-mode" else official

    singles: dict[tuple[str, str, str], Callable[..., np.ndarray]] = {
        ("label", "ece", "official"): lambda p, o, r: M.ece(p, o),
        ("label", "ece", "human-mode"): lambda p, o, r: M.human_mode_ece(r, p, o),
        ("soft", "ece", "-"): lambda p, o, r: M.soft_ece(p, r),
        ("label", "debiased", "official"): lambda p, o, r: M.debiased_calibration_error(p, o),
        ("soft", "debiased", "-"): lambda p, o, r: M.debiased_soft_calibration_error(p, r),
    }
    single = singles[(correctness, estimator, labels)]

    def function(
        probs: np.ndarray, official: np.ndarray, reference: np.ndarray, arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return single(probs, official, reference)

    def lgo(
        probs: np.ndarray,
        official: np.ndarray,
        reference: np.ndarray,
        arrays: Mapping[str, np.ndarray],
        groups: np.ndarray,
    ) -> np.ndarray:
        return M.calibration_leave_group_out(probs, target(official, reference), groups, correctness, estimator)

    return MetricSpec(name, function, ("probs",), description, leave_group_out=lgo)


def _spearman_spec(name: str, array: str | None, description: str) -> MetricSpec:
    """Spearman correlation with the reference entropy ``H(h)`` of a held-out item array, or of the
    predictive entropy ``H(p)`` when ``array`` is None (:func:`softlab.metrics.entropy_spearman`)."""

    def series(probs: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return M.entropy(probs) if array is None else np.asarray(arrays[array], dtype=np.float64)

    def function(
        probs: np.ndarray, official: np.ndarray, reference: np.ndarray, arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        if array is None:
            return M.entropy_spearman(reference, probs)
        return M.spearman_by_run(series(probs, arrays), M.entropy(reference))

    def lgo(
        probs: np.ndarray,
        official: np.ndarray,
        reference: np.ndarray,
        arrays: Mapping[str, np.ndarray],
        groups: np.ndarray,
    ) -> np.ndarray:
        return M.spearman_leave_group_out(series(probs, arrays), M.entropy(reference), groups)

    needs = ("probs",) if array is None else (array,)
    return MetricSpec(name, function, needs, description, leave_group_out=lgo)


def _auroc_variability(
    probs: np.ndarray, official: np.ndarray, reference: np.ndarray, arrays: Mapping[str, np.ndarray]
) -> np.ndarray:
    ambiguous = cartography.human_ambiguous(M.entropy(reference))
    return cartography.auroc(arrays["heldout_variability"], ambiguous)


def _build_registry() -> dict[str, MetricSpec]:
    specs = [
        MetricSpec(
            "accuracy",
            lambda p, o, r, a: M.accuracy(p, o),
            ("probs",),
            "accuracy against the official label",
            additive=True,
        ),
        MetricSpec(
            "accuracy_human_mode",
            lambda p, o, r, a: M.accuracy(p, M.human_mode(r, o)),
            ("probs",),
            "accuracy against the reference mode (ties towards official)",
            additive=True,
        ),
        MetricSpec(
            "nll",
            lambda p, o, r, a: M.nll(p, o),
            ("probs",),
            "negative log-likelihood of the official label (nats)",
            additive=True,
        ),
        MetricSpec(
            "brier",
            lambda p, o, r, a: M.brier(p, o),
            ("probs",),
            "multi-class Brier score, official label",
            additive=True,
        ),
        MetricSpec(
            "kl_human", lambda p, o, r, a: M.kl_divergence(r, p), ("probs",), "KL(h ‖ p) in nats", additive=True
        ),
        _calibration_spec("ece", "label", "ece", "official", "top-label ECE (15 equal-width bins), official label"),
        _calibration_spec("ece_soft", "soft", "ece", "-", "top-label ECE with soft correctness h[ŷ]"),
        _calibration_spec(
            "ece_human_mode",
            "label",
            "ece",
            "human-mode",
            "top-label ECE against the reference mode (biased towards over-confident models)",
        ),
        _calibration_spec(
            "debiased_ce",
            "label",
            "debiased",
            "official",
            "debiased squared L2 calibration error (Kumar et al. 2019), official label",
        ),
        _calibration_spec(
            "debiased_ce_soft",
            "soft",
            "debiased",
            "-",
            "debiased squared L2 calibration error with soft correctness h[ŷ]",
        ),
        _spearman_spec("entropy_spearman", None, "Spearman of H(p) with H(h) across items"),
        _spearman_spec(
            "spearman_confidence_entropy",
            "heldout_confidence",
            "Spearman of held-out confidence (mean over epochs of p[reference mode]) with H(h)",
        ),
        _spearman_spec(
            "spearman_variability_entropy",
            "heldout_variability",
            "Spearman of held-out variability (SD over epochs of p[reference mode]) with H(h)",
        ),
        MetricSpec(
            "auroc_variability_ambiguous",
            _auroc_variability,
            ("heldout_variability",),
            "AUROC of held-out variability for top-tertile-entropy items vs the rest",
        ),
    ]
    return {s.name: s for s in specs}


METRICS: dict[str, MetricSpec] = _build_registry()
"""The metric registry: name -> :class:`MetricSpec`."""


def item_groups(n_items: int, n_groups: int, seed: int) -> np.ndarray:
    """Random, (almost) equal-sized item groups: ``n_groups`` ids ``0..G−1`` dealt to a seeded
    permutation of the items (sizes differ by at most one)."""
    if n_groups < 2 or n_items < n_groups:
        raise ValueError(f"n_groups: expected 2 <= n_groups <= n_items = {n_items}, got {n_groups}")
    rng = np.random.default_rng(seed)
    g = np.empty(n_items, dtype=np.int64)
    g[rng.permutation(n_items)] = np.arange(n_items) % n_groups
    return g


def leave_group_out_values(
    spec: MetricSpec,
    probs: np.ndarray | None,
    official: np.ndarray,
    reference: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    groups: np.ndarray | None,
) -> np.ndarray:
    """The metric per seed on all items and with each item group left out: ``(S, G + 1)``.

    Column 0 is ``spec.function`` on all items; column ``g + 1`` the metric without group ``g``
    (the delete-a-group jackknife replicates). Without ``groups`` the result is ``(S, 1)``. Uses the
    spec's one-pass evaluator, or per-item values for additive metrics, else a loop over groups.
    """
    if groups is not None and spec.leave_group_out is not None:
        return np.asarray(spec.leave_group_out(probs, official, reference, arrays, groups), dtype=np.float64)  # type: ignore[arg-type]
    full = np.asarray(spec.function(probs, official, reference, arrays), dtype=np.float64)  # type: ignore[arg-type]
    if groups is None:
        return full[:, None]
    n_groups = int(groups.max()) + 1
    if spec.additive and probs is not None:
        # per-item values: the metric itself on one-item runs, (S, I, 1, C) -> (S, I)
        per_item = np.asarray(
            spec.function(probs[:, :, None, :], official[:, None], reference[:, None, :], {}), dtype=np.float64
        )
        onehot = (groups[:, None] == np.arange(n_groups)[None, :]).astype(np.float64)  # (I, G)
        without = (per_item.sum(axis=1, keepdims=True) - per_item @ onehot) / (groups.size - onehot.sum(axis=0))
        return np.concatenate([full[:, None], without], axis=1)
    cols = [full]
    for j in range(n_groups):
        keep = groups != j
        sub_probs = None if probs is None else probs[:, keep]
        sub_arrays = {k: v[:, keep] for k, v in arrays.items()}
        cols.append(np.asarray(spec.function(sub_probs, official[keep], reference[keep], sub_arrays), dtype=np.float64))  # type: ignore[arg-type]
    return np.stack(cols, axis=1)


# ----------------------------------------------------------------------------------------------
# Variance of a crossed seeds × items design
# ----------------------------------------------------------------------------------------------


def crossed_variance(pseudo: np.ndarray) -> tuple[float, float]:
    """Variance and Satterthwaite degrees of freedom of the grand mean of an ``S × G`` table.

    Two-way crossed random effects without replication (rows: seeds, columns: item groups):
    ``Var = (MS_row + MS_col − MS_res) / (S·G)`` with the usual ANOVA mean squares, whose
    expectation is ``σ²_row/S + σ²_col/G + σ²_res/(S·G)``. Degrees of freedom:
    ``Var² / Σ_j (c_j MS_j)² / ν_j`` (Satterthwaite 1946). If ``Var`` is below
    ``max(MS_row, MS_col)/(S·G)`` (each an unbiased estimate of a lower bound of the true variance),
    that bound and its degrees of freedom are used — which is the usual truncation of a negative
    variance-component estimate (``MS_col < MS_res``: no detectable item component) at zero, and
    makes the estimate slightly conservative. A single column (no item groups) gives ``s²_rows / S`` on
    ``S − 1`` df. Fewer than 2 rows: ``(nan, nan)``.
    """
    p = np.asarray(pseudo, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pseudo: expected a (seeds, groups) table, got shape {p.shape}")
    s, g = p.shape
    if s < 2 or not np.all(np.isfinite(p)):
        return math.nan, math.nan
    if g == 1:
        return float(p[:, 0].var(ddof=1) / s), float(s - 1)
    grand = p.mean()
    row = p.mean(axis=1)
    col = p.mean(axis=0)
    ms_row = g * ((row - grand) ** 2).sum() / (s - 1)
    ms_col = s * ((col - grand) ** 2).sum() / (g - 1)
    resid = p - row[:, None] - col[None, :] + grand
    df_res = (s - 1) * (g - 1)
    ms_res = (resid**2).sum() / df_res
    n = s * g
    var = (ms_row + ms_col - ms_res) / n
    terms = [(ms_row / n, s - 1), (ms_col / n, g - 1), (ms_res / n, df_res)]
    floor, floor_df = max((ms_row / n, s - 1), (ms_col / n, g - 1))
    if not var > floor:
        return float(floor), float(floor_df)
    den = sum(c**2 / d for c, d in terms)
    return float(var), float(var**2 / den) if den > 0 else float(s - 1)


def _pseudo_values(values: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife pseudo-values ``G·v_full − (G − 1)·v_without_g``: ``(S, G)``
    (``(S, 1)`` = the full values when there are no groups)."""
    v = np.asarray(values, dtype=np.float64)
    g = v.shape[1] - 1
    if g == 0:
        return v[:, :1]
    return g * v[:, :1] - (g - 1) * v[:, 1:]


# ----------------------------------------------------------------------------------------------
# Paired differences
# ----------------------------------------------------------------------------------------------


def _t_quantile(p: float, df: float) -> float:
    return float(sps.t.ppf(p, df)) if df > 0 and math.isfinite(df) else math.nan


@dataclass(frozen=True)
class DifferenceResult:
    """A paired difference ``D`` (condition − comparator) with its relative effect ``R``.

    ``se``/``df`` and ``relative_se``/``relative_df`` define t intervals
    (see :func:`paired_difference`).
    """

    estimate: float
    se: float
    df: float
    relative: float
    relative_se: float
    relative_df: float
    mean_condition: float
    mean_comparator: float
    n_seeds: int

    def interval(self, confidence: float, relative: bool = False) -> tuple[float, float]:
        """Two-sided t interval at ``confidence``."""
        est, se, df = (
            (self.relative, self.relative_se, self.relative_df) if relative else (self.estimate, self.se, self.df)
        )
        q = _t_quantile(0.5 + confidence / 2.0, df)
        return est - q * se, est + q * se

    def one_sided_bound(self, tail: float, upper: bool, relative: bool = False) -> float:
        """Lower (``upper=False``) or upper confidence bound with one-sided error ``tail``."""
        est, se, df = (
            (self.relative, self.relative_se, self.relative_df) if relative else (self.estimate, self.se, self.df)
        )
        q = _t_quantile(1.0 - tail, df)
        return est + q * se if upper else est - q * se

    def p_below(self) -> float:
        """One-sided p-value for ``δ < 0`` (null ``δ ≥ 0``): ``F_t(D/se)``."""
        return float(sps.t.cdf(self.estimate / self.se, self.df)) if self.se > 0 else math.nan

    def p_above(self) -> float:
        """One-sided p-value for ``δ > 0`` (null ``δ ≤ 0``)."""
        return float(sps.t.sf(self.estimate / self.se, self.df)) if self.se > 0 else math.nan

    def p_value(self) -> float:
        """Two-sided p-value ``2·P(T_ν > |D|/se)``."""
        return min(1.0, 2.0 * min(self.p_below(), self.p_above())) if self.se > 0 else math.nan


def paired_difference(condition_values: np.ndarray, comparator_values: np.ndarray) -> DifferenceResult:
    """Seed-level paired difference with seed and item-sampling variance.

    Inputs are ``(S, G + 1)`` tables from :func:`leave_group_out_values` (column 0: all items;
    column ``g + 1``: group ``g`` left out; ``G = 0`` allowed: seed variance only). Estimate
    ``D = mean_s (c_s − b_s)`` on all items; variance from :func:`crossed_variance` of the
    pseudo-values of ``c − b``; relative effect ``R = D / |B̄|`` (``B̄`` the comparator's mean)
    with the delta-method pseudo-values ``(P^{c−b} − R·sign(B̄)·P^b) / |B̄|``.
    """
    c = np.asarray(condition_values, dtype=np.float64)
    b = np.asarray(comparator_values, dtype=np.float64)
    if c.shape != b.shape or c.ndim != 2:
        raise ValueError(
            f"condition_values/comparator_values: expected equal (S, G+1) shapes, got {c.shape} and {b.shape}"
        )
    n_seeds = c.shape[0]
    d = c[:, 0] - b[:, 0]
    est = float(d.mean())
    mean_c = float(c[:, 0].mean())
    mean_b = float(b[:, 0].mean())
    pd_ = _pseudo_values(c) - _pseudo_values(b)
    var, df = crossed_variance(pd_)
    if mean_b != 0 and math.isfinite(mean_b):
        rel = est / abs(mean_b)
        pr = (pd_ - rel * np.sign(mean_b) * _pseudo_values(b)) / abs(mean_b)
        rvar, rdf = crossed_variance(pr)
    else:
        rel, rvar, rdf = math.nan, math.nan, math.nan
    return DifferenceResult(
        estimate=est,
        se=math.sqrt(var) if var >= 0 else math.nan,
        df=df,
        relative=rel,
        relative_se=math.sqrt(rvar) if rvar >= 0 else math.nan,
        relative_df=rdf,
        mean_condition=mean_c,
        mean_comparator=mean_b,
        n_seeds=n_seeds,
    )


@dataclass(frozen=True)
class Composite:
    """A test of a condition against the best of ``K`` comparators (see the module docstring)."""

    selected: int
    estimate: float
    relative: float
    results: tuple[DifferenceResult, ...]
    direction: str

    @property
    def k(self) -> int:
        return len(self.results)

    def interval(self, confidence: float, relative: bool = False) -> tuple[float, float]:
        """``[max_k L_k(α/(2K)), max_k U_k(α/2)]`` for ``lower`` (mirror image for ``higher``),
        ``α = 1 − confidence``."""
        a = 1.0 - confidence
        strict = a / (2.0 * self.k)
        loose = a / 2.0
        if self.direction == "lower":
            lo = max(r.one_sided_bound(strict, upper=False, relative=relative) for r in self.results)
            hi = max(r.one_sided_bound(loose, upper=True, relative=relative) for r in self.results)
        else:
            lo = min(r.one_sided_bound(loose, upper=False, relative=relative) for r in self.results)
            hi = min(r.one_sided_bound(strict, upper=True, relative=relative) for r in self.results)
        return lo, hi

    def p_value(self) -> float:
        """Two-sided p-value of the composite interval: ``min(1, 2·min(max_k p_pred, K·min_k p_other))``."""
        if self.direction == "lower":
            pred = [r.p_below() for r in self.results]
            other = [r.p_above() for r in self.results]
        else:
            pred = [r.p_above() for r in self.results]
            other = [r.p_below() for r in self.results]
        if any(not math.isfinite(x) for x in pred + other):
            return math.nan
        return min(1.0, 2.0 * min(max(pred), self.k * min(other)))


def best_of(results: Sequence[DifferenceResult], direction: str) -> Composite:
    """Combine the differences against ``K`` comparators into the test against the best one: the
    comparator with the lowest mean for ``direction="lower"`` (highest for ``"higher"``)."""
    if not results:
        raise ValueError("results: expected at least one comparator")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    means = [r.mean_comparator for r in results]
    sel = int(np.argmin(means)) if direction == "lower" else int(np.argmax(means))
    return Composite(sel, results[sel].estimate, results[sel].relative, tuple(results), direction)


def difference_mde(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of a two-sided t test: ``(t_{1−α/2,ν} + t_{power,ν})·se``."""
    if not (se > 0 and df > 0):
        return math.nan
    return (_t_quantile(1.0 - alpha / 2.0, df) + _t_quantile(power, df)) * se


# ----------------------------------------------------------------------------------------------
# Paired variances (claim 2)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PitmanMorgan:
    """Pitman–Morgan test of ``Var(X) = Var(Y)`` for paired samples, with the exact ratio interval."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    t: float
    r: float
    n: int

    @property
    def df(self) -> int:
        return self.n - 2


def pitman_morgan(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], confidence: float = 0.95
) -> PitmanMorgan:
    """Pitman (1939) – Morgan (1939) test of equal variances of paired ``x``, ``y``.

    ``F = s²_x / s²_y``; ``r_UV = corr(x + y, x − y)``; ``t = r_UV·sqrt((n − 2)/(1 − r²_UV))`` on
    ``n − 2`` df (two-sided p). Interval for ``σ²_x/σ²_y``: ``F·(K ± sqrt(K² − 1))``,
    ``K = 1 + 2(1 − r²)·t²_{n−2, (1+confidence)/2}/(n − 2)``, ``r = corr(x, y)`` — the set of
    ratios the test does not reject, exact under bivariate normality.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x, y: expected equal 1-D shapes, got {a.shape} and {b.shape}")
    n = a.size
    nan = PitmanMorgan(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, n)
    if n < 3:
        return nan
    vx, vy = float(a.var(ddof=1)), float(b.var(ddof=1))
    if vy <= 0 or vx <= 0:
        return nan
    ratio = vx / vy
    r = float(np.corrcoef(a, b)[0, 1])
    u, v = a + b, a - b
    if u.var() <= 0 or v.var() <= 0:
        return nan
    r_uv = float(np.clip(np.corrcoef(u, v)[0, 1], -1.0, 1.0))
    df = n - 2
    if abs(r_uv) >= 1.0:
        t, p = math.copysign(math.inf, r_uv), 0.0
    else:
        t = r_uv * math.sqrt(df / (1.0 - r_uv**2))
        p = float(2.0 * sps.t.sf(abs(t), df))
    q = _t_quantile(0.5 + confidence / 2.0, df)
    k = 1.0 + 2.0 * (1.0 - r**2) * q**2 / df
    root = math.sqrt(max(k**2 - 1.0, 0.0))
    return PitmanMorgan(ratio, ratio * (k - root), ratio * (k + root), p, t, r, n)


def _rho_uv(ratio: float, rho: float) -> float:
    """Population ``corr(X + Y, X − Y)`` for ``Var X / Var Y = ratio`` and ``corr(X, Y) = rho``."""
    return (ratio - 1.0) / math.sqrt((ratio + 1.0) ** 2 - 4.0 * ratio * rho**2)


def variance_ratio_mde(n: int, rho: float, alpha: float = 0.05, power: float = 0.8, direction: str = "lower") -> float:
    """Smallest variance ratio ``λ < 1`` (``direction="lower"``; ``1/λ`` for ``"higher"``) that the
    Pitman–Morgan test detects with ``power`` at two-sided level ``alpha`` with ``n`` seeds.

    Fisher's z for the test correlation: power ``≈ Φ(|atanh ρ_UV|·sqrt(n − 3) − z_{1−α/2})`` with
    ``ρ_UV = (λ − 1)/sqrt((λ + 1)² − 4λρ²)``; solving ``|ρ_UV| = tanh((z_{1−α/2} + z_power)/sqrt(n − 3))``
    gives ``λ = κ − sqrt(κ² − 1)``, ``κ = (1 + a − 2aρ²)/(1 − a)``, ``a = ρ_UV²``.
    """
    if n <= 3 or not -1.0 < rho < 1.0:
        return math.nan
    z = sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power)
    a = math.tanh(z / math.sqrt(n - 3)) ** 2
    kappa = (1.0 + a - 2.0 * a * rho**2) / (1.0 - a)
    lam = kappa - math.sqrt(max(kappa**2 - 1.0, 0.0))
    return lam if direction == "lower" else 1.0 / lam


def seeds_for_power(ratio: float = 0.85, rho: float = 0.5, alpha: float = 0.05, power: float = 0.8) -> int:
    """Seeds needed for the Pitman–Morgan test to detect a variance ratio ``ratio`` with ``power`` at
    two-sided level ``alpha`` when the per-seed metrics of the two conditions correlate ``rho``:
    ``n = ⌈((z_{1−α/2} + z_power) / |atanh ρ_UV|)² + 3⌉`` (Fisher's z; :func:`variance_ratio_mde`)."""
    if not ratio > 0 or ratio == 1.0:
        raise ValueError(f"ratio: expected a positive variance ratio other than 1, got {ratio!r}")
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho: expected a correlation in (-1, 1), got {rho!r}")
    z = sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power)
    return math.ceil((z / abs(math.atanh(_rho_uv(ratio, rho)))) ** 2 + 3.0)


# ----------------------------------------------------------------------------------------------
# Exact tests (descriptive arms)
# ----------------------------------------------------------------------------------------------

_MAX_EXACT_SEEDS = 16
_N_RANDOM_FLIPS = 2**16


def _sign_patterns(n: int, seed: int) -> np.ndarray:
    if n <= _MAX_EXACT_SEEDS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(_N_RANDOM_FLIPS, n))
    signs[0] = 1.0  # the observed pattern is always part of the reference set
    return signs


def sign_flip_test(d: np.ndarray | Sequence[float], seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(d) = 0`` (``d`` symmetric about 0 under the
    null): the share of sign patterns with ``|mean(±d)| ≥ |mean(d)|`` — all ``2^n`` patterns for up to
    16 values (exact), else ``2^16`` seeded random patterns including the identity."""
    x = np.asarray(d, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        return math.nan
    signs = _sign_patterns(x.size, seed)
    stat = np.abs(signs @ x) / x.size
    obs = abs(x.mean())
    return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs)))


def sign_flip_interval(d: np.ndarray | Sequence[float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval by inverting :func:`sign_flip_test`: the shifts ``δ`` with ``p(d − δ) > 1 − confidence``
    (found by bisection on each side of the mean). Infinite when even the most extreme pattern is
    not rare enough (e.g. ``2/2^n ≥ 1 − confidence``)."""
    x = np.asarray(d, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        return math.nan, math.nan
    alpha = 1.0 - confidence
    signs = _sign_patterns(x.size, seed)
    center = float(x.mean())
    spread = float(x.max() - x.min()) + abs(center) + 1e-12

    def accepted(delta: float) -> bool:
        y = x - delta
        stat = np.abs(signs @ y) / y.size
        obs = abs(y.mean())
        return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs))) > alpha

    def edge(outward: float) -> float:
        far = center + outward * spread
        if accepted(far):
            return math.copysign(math.inf, outward)
        inside, outside = center, far
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            if accepted(mid):
                inside = mid
            else:
                outside = mid
        return inside

    return edge(-1.0), edge(1.0)


def swap_permutation_variance_test(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], seed: int = 0
) -> float:
    """Two-sided permutation p-value for paired variances: swap ``x_s`` and ``y_s`` within seeds
    (exact over all ``2^n`` swap patterns up to 16 seeds) and compare ``|ln(s²_x/s²_y)|``. Exact
    under exchangeability of the two conditions within a seed."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        return math.nan
    swap = _sign_patterns(a.size, seed) < 0  # True: swap this seed
    xa = np.where(swap, b, a)
    ya = np.where(swap, a, b)
    vx, vy = xa.var(axis=1, ddof=1), ya.var(axis=1, ddof=1)
    if a.var(ddof=1) <= 0 or b.var(ddof=1) <= 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.abs(np.log(vx / vy))
    obs = abs(math.log(a.var(ddof=1) / b.var(ddof=1)))
    return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs)))


# ----------------------------------------------------------------------------------------------
# Multiplicity and verdicts
# ----------------------------------------------------------------------------------------------


def holm(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: with ``p_(1) ≤ … ≤ p_(m)``,
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``. NaN entries count in ``m`` (a test that was
    run but gave no p-value), are ordered last and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values: expected a 1-D array, got shape {p.shape}")
    m = p.size
    out = np.full(m, np.nan)
    if m == 0:
        return out
    filled = np.where(np.isnan(p), np.inf, p)
    order = np.argsort(filled, kind="stable")
    running = 0.0
    for rank, idx in enumerate(order):
        if not np.isfinite(filled[idx]):
            break
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def decide_verdict(
    *,
    direction: str,
    ci: tuple[float, float],
    equivalence_ci: tuple[float, float],
    equivalence_bounds: tuple[float, float],
    p_adjusted: float,
    seeds: int,
    min_seeds: int,
    alpha: float,
    null: float = 0.0,
    descriptive: bool = False,
) -> str:
    """The verdict of one test.

    ``descriptive`` arms → ``"descriptive"``; fewer than ``min_seeds`` seeds or a missing estimate
    → ``"inconclusive"``; ``"confirmed"`` / ``"refuted"`` when ``ci`` excludes ``null`` on the
    predicted / other side (``direction`` ``"lower"``: predicted side below ``null``) **and**
    ``p_adjusted < alpha``; ``"equivalent"`` when ``equivalence_ci`` lies strictly inside
    ``equivalence_bounds`` (TOST); else ``"inconclusive"``. Confirmed/refuted take precedence: an
    effect that is significant but smaller than the margin is reported as confirmed/refuted (the
    table's ``equivalence_ci_*`` columns show it is inside the margin).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    if descriptive:
        return "descriptive"
    lo, hi = ci
    if seeds < min_seeds or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    significant = math.isfinite(p_adjusted) and p_adjusted < alpha
    below, above = hi < null, lo > null
    if significant and (below or above):
        return "confirmed" if below == (direction == "lower") else "refuted"
    elo, ehi = equivalence_ci
    blo, bhi = equivalence_bounds
    if math.isfinite(elo) and math.isfinite(ehi) and blo < elo and ehi < bhi:
        return "equivalent"
    return "inconclusive"


# ----------------------------------------------------------------------------------------------
# Pre-registration file
# ----------------------------------------------------------------------------------------------


class ClaimsError(ValueError):
    """``claims.yml`` is malformed; the message names the file, the test and the field."""


@dataclass(frozen=True)
class TestSpec:
    """One pre-registered test (a row of the verdict table)."""

    __test__ = False  # not a pytest test class

    claim: str
    name: str
    primary: bool
    kind: str
    metric: str
    stratum: str
    condition: str
    comparators: tuple[str, ...]
    comparator_rule: str  # "single" or "best"
    direction: str
    margin: float
    margin_scale: str  # "absolute" or "relative"
    rationale: str


@dataclass(frozen=True)
class ArmRule:
    role: str  # "verdict" or "descriptive"
    tests_of: str


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    confidence: float = 0.95
    equivalence_confidence: float = 0.90
    min_seeds: int = 10
    power: float = 0.8
    item_groups: int = 20
    item_group_seed: int = 0


@dataclass(frozen=True)
class Claims:
    """The parsed pre-registration: settings, arm rules and, per arm, its tests."""

    path: Path
    settings: Settings
    statements: Mapping[str, str]
    arms: Mapping[str, ArmRule]
    tests: Mapping[str, tuple[TestSpec, ...]]  # arm name -> its tests (primary and exploratory)

    def rule(self, arm: str) -> ArmRule:
        if arm in self.arms:
            return self.arms[arm]
        if "*" in self.arms:
            return self.arms["*"]
        raise ClaimsError(f"{self.path}: arm {arm!r} is not listed under 'arms' and there is no '*' rule")

    def tests_for(self, arm: str) -> tuple[ArmRule, tuple[TestSpec, ...]]:
        rule = self.rule(arm)
        return rule, self.tests[rule.tests_of]

    def primary_only(self) -> Claims:
        """The same claims with the exploratory tests dropped."""
        tests = {a: tuple(t for t in ts if t.primary) for a, ts in self.tests.items()}
        return Claims(self.path, self.settings, self.statements, self.arms, tests)


_TEST_FIELDS = {"name", "kind", "metric", "stratum", "condition", "comparator", "direction", "margin", "rationale"}


def _parse_test(raw: Any, where: str, claim: str, primary: bool) -> TestSpec:
    if not isinstance(raw, dict):
        raise ClaimsError(f"{where}: expected a mapping of test fields, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ClaimsError(f"{where}: field 'name': expected a non-empty string, got {name!r}")
    where = f"{where}, test {name!r}"
    unknown = set(raw) - _TEST_FIELDS
    if unknown:
        raise ClaimsError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TEST_FIELDS)}")

    def need(key: str) -> Any:
        if key not in raw:
            raise ClaimsError(f"{where}: field {key!r} is missing")
        return raw[key]

    kind = raw.get("kind", "difference")
    if kind not in KINDS:
        raise ClaimsError(f"{where}: field 'kind': expected one of {KINDS}, got {kind!r}")
    metric = need("metric")
    if metric not in METRICS:
        raise ClaimsError(f"{where}: field 'metric': unknown metric {metric!r}; known: {sorted(METRICS)}")
    stratum = need("stratum")
    if stratum not in STRATA:
        raise ClaimsError(f"{where}: field 'stratum': expected one of {STRATA}, got {stratum!r}")
    condition = need("condition")
    if not isinstance(condition, str) or "/" not in condition:
        raise ClaimsError(f"{where}: field 'condition': expected a 'mode/shape' condition name, got {condition!r}")
    comp = need("comparator")
    if isinstance(comp, str) and "/" in comp:
        comparators, rule = (comp,), "single"
    elif (
        isinstance(comp, dict)
        and set(comp) == {"best_of"}
        and isinstance(comp["best_of"], list)
        and comp["best_of"]
        and all(isinstance(c, str) and "/" in c for c in comp["best_of"])
    ):
        comparators, rule = tuple(comp["best_of"]), "best"
        if kind != "difference":
            raise ClaimsError(f"{where}: field 'comparator': best_of is only defined for kind 'difference'")
    else:
        raise ClaimsError(
            f"{where}: field 'comparator': expected a condition name or {{best_of: [conditions]}}, got {comp!r}"
        )
    if condition in comparators:
        raise ClaimsError(f"{where}: field 'comparator': the condition {condition!r} cannot be its own comparator")
    direction = need("direction")
    if direction not in DIRECTIONS:
        raise ClaimsError(f"{where}: field 'direction': expected one of {DIRECTIONS}, got {direction!r}")
    margin = need("margin")
    if not isinstance(margin, dict) or set(margin) != {"value", "scale"}:
        raise ClaimsError(
            f"{where}: field 'margin': expected {{value: <number>, scale: absolute|relative}}, got {margin!r}"
        )
    value, scale = margin["value"], margin["scale"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ClaimsError(f"{where}: field 'margin.value': expected a positive number, got {value!r}")
    if scale not in ("absolute", "relative"):
        raise ClaimsError(f"{where}: field 'margin.scale': expected 'absolute' or 'relative', got {scale!r}")
    if kind == "variance_ratio" and (scale != "relative" or not value < 1):
        raise ClaimsError(f"{where}: field 'margin': a variance ratio needs a relative margin below 1, got {margin!r}")
    rationale = raw.get("rationale", "")
    if not isinstance(rationale, str) or (primary and not rationale.strip()):
        raise ClaimsError(f"{where}: field 'rationale': a primary test needs a one-line rationale, got {rationale!r}")
    return TestSpec(
        claim=claim,
        name=name,
        primary=primary,
        kind=kind,
        metric=metric,
        stratum=stratum,
        condition=condition,
        comparators=comparators,
        comparator_rule=rule,
        direction=direction,
        margin=float(value),
        margin_scale=scale,
        rationale=" ".join(rationale.split()),
    )


def load_claims(path: str | Path | None = None) -> Claims:
    """Read and validate the pre-registration file (default ``params/claims.yml``).

    Raises :class:`ClaimsError` naming the file, the claim/arm/test and the field for anything
    malformed: unknown metrics, strata, directions or fields, missing rationale, not exactly one
    primary test per claim and verdict arm, an arm rule pointing at an arm without tests.
    """
    p = Path(path) if path is not None else CLAIMS_PATH
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ClaimsError(f"{p}: no such file") from None
    except yaml.YAMLError as exc:
        raise ClaimsError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ClaimsError(f"{p}: expected a mapping with 'settings', 'arms' and 'claims'")
    unknown = set(raw) - {"version", "settings", "arms", "claims"}
    if unknown:
        raise ClaimsError(f"{p}: unknown top-level field(s) {sorted(unknown)}")
    if raw.get("version") != 1:
        raise ClaimsError(f"{p}: field 'version': expected 1, got {raw.get('version')!r}")

    s_raw = raw.get("settings") or {}
    if not isinstance(s_raw, dict):
        raise ClaimsError(f"{p}: field 'settings': expected a mapping")
    defaults = Settings()
    values: dict[str, Any] = {}
    for key, default in defaults.__dict__.items():
        v = s_raw.get(key, default)
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ClaimsError(f"{p}: field 'settings.{key}': expected a non-negative integer, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ClaimsError(f"{p}: field 'settings.{key}': expected a number in (0, 1), got {v!r}")
        values[key] = v
    if set(s_raw) - set(values):
        raise ClaimsError(f"{p}: unknown field(s) in 'settings': {sorted(set(s_raw) - set(values))}")
    if values["item_groups"] == 1:
        raise ClaimsError(f"{p}: field 'settings.item_groups': expected 0 (no item jackknife) or at least 2, got 1")
    settings = Settings(**values)

    a_raw = raw.get("arms")
    if not isinstance(a_raw, dict) or not a_raw:
        raise ClaimsError(f"{p}: field 'arms': expected a mapping of arm names to rules")
    claims_raw = raw.get("claims")
    if not isinstance(claims_raw, dict) or not claims_raw:
        raise ClaimsError(f"{p}: field 'claims': expected a mapping of claim ids to claims")

    statements: dict[str, str] = {}
    tests: dict[str, list[TestSpec]] = {}
    primaries: dict[tuple[str, str], int] = {}
    for cid, c_raw in claims_raw.items():
        claim = str(cid)
        where_c = f"{p}: claim {claim}"
        if not isinstance(c_raw, dict) or set(c_raw) - {"statement", "arms"}:
            raise ClaimsError(f"{where_c}: expected a mapping with 'statement' and 'arms'")
        statement = c_raw.get("statement")
        if not isinstance(statement, str) or not statement.strip():
            raise ClaimsError(f"{where_c}: field 'statement': expected a non-empty string")
        statements[claim] = " ".join(statement.split())
        arms_raw = c_raw.get("arms")
        if not isinstance(arms_raw, dict) or not arms_raw:
            raise ClaimsError(f"{where_c}: field 'arms': expected a mapping of arm names to tests")
        for arm, t_raw in arms_raw.items():
            where_a = f"{where_c}, arm {arm!r}"
            if not isinstance(t_raw, dict) or set(t_raw) - {"primary", "exploratory"} or "primary" not in t_raw:
                raise ClaimsError(
                    f"{where_a}: expected a mapping with 'primary' (one test) and optional 'exploratory' (a list)"
                )
            if isinstance(t_raw["primary"], list):
                raise ClaimsError(
                    f"{where_a}: field 'primary': expected exactly one test, got a list of {len(t_raw['primary'])}"
                )
            arm_tests = tests.setdefault(str(arm), [])
            arm_tests.append(_parse_test(t_raw["primary"], where_a, claim, primary=True))
            primaries[(claim, str(arm))] = primaries.get((claim, str(arm)), 0) + 1
            expl = t_raw.get("exploratory") or []
            if not isinstance(expl, list):
                raise ClaimsError(f"{where_a}: field 'exploratory': expected a list of tests")
            for e in expl:
                arm_tests.append(_parse_test(e, where_a, claim, primary=False))
    for arm, ts in tests.items():
        seen: set[str] = set()
        for t in ts:
            if t.name in seen:
                raise ClaimsError(
                    f"{p}: arm {arm!r}, test {t.name!r}: field 'name': test names must be unique within an arm"
                )
            seen.add(t.name)

    arms: dict[str, ArmRule] = {}
    for arm, r_raw in a_raw.items():
        where = f"{p}: arms, arm {arm!r}"
        if not isinstance(r_raw, dict) or set(r_raw) - {"role", "tests_of"}:
            raise ClaimsError(f"{where}: expected {{role: verdict|descriptive, tests_of: <arm>}}, got {r_raw!r}")
        role = r_raw.get("role")
        if role not in ("verdict", "descriptive"):
            raise ClaimsError(f"{where}: field 'role': expected 'verdict' or 'descriptive', got {role!r}")
        tests_of = str(r_raw.get("tests_of", arm))
        if tests_of not in tests:
            raise ClaimsError(f"{where}: field 'tests_of': no tests are declared for arm {tests_of!r}")
        arms[str(arm)] = ArmRule(role, tests_of)
    for arm in tests:
        if arm not in arms:
            raise ClaimsError(f"{p}: arm {arm!r} has tests under 'claims' but no rule under 'arms'")
        for claim in statements:
            if arms[arm].role == "verdict" and primaries.get((claim, arm), 0) != 1:
                raise ClaimsError(f"{p}: claim {claim}, arm {arm!r}: expected exactly one primary test")
    return Claims(p, settings, statements, arms, {a: tuple(ts) for a, ts in tests.items()})


# ----------------------------------------------------------------------------------------------
# The verdict table
# ----------------------------------------------------------------------------------------------


class _ArmEvaluator:
    """Evaluates metrics of one arm, caching ``(S, G + 1)`` leave-group-out tables."""

    def __init__(self, arm: ArmPredictions, settings: Settings, with_groups: bool) -> None:
        self.arm = arm
        self.settings = settings
        self.with_groups = with_groups
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        self._groups: dict[str, np.ndarray | None] = {}
        self.official = np.asarray(arm.official).astype(np.int64)
        self.reference = np.asarray(arm.reference, dtype=np.float64)

    def items(self, stratum: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.arm.strata[stratum]))

    def groups(self, stratum: str) -> np.ndarray | None:
        if stratum not in self._groups:
            n = self.items(stratum).size
            g = min(self.settings.item_groups, n // 2)
            self._groups[stratum] = (
                item_groups(n, g, self.settings.item_group_seed) if self.with_groups and g >= 2 else None
            )
        return self._groups[stratum]

    def values(self, condition: str, metric: str, stratum: str, with_groups: bool = True) -> np.ndarray:
        key = (condition, metric, stratum if with_groups else stratum + "#nogroups")
        if key not in self._cache:
            spec = METRICS[metric]
            idx = self.items(stratum)
            full = idx.size == self.official.size
            probs = None
            if "probs" in spec.needs:
                p = self.arm.probs[condition]
                probs = p if full else np.asarray(p)[:, idx]
            arrays = {
                name: (np.asarray(a) if full else np.asarray(a)[:, idx])
                for name, a in self.arm.item_arrays.get(condition, {}).items()
                if name in spec.needs
            }
            groups = self.groups(stratum) if with_groups else None
            self._cache[key] = leave_group_out_values(
                spec, probs, self.official[idx], self.reference[idx], arrays, groups
            )
        return self._cache[key]


def _nan_row() -> dict[str, float]:
    keys = (
        "estimate",
        "ci_low",
        "ci_high",
        "relative",
        "relative_ci_low",
        "relative_ci_high",
        "p_value",
        "equivalence_ci_low",
        "equivalence_ci_high",
        "df",
        "se",
        "mean_condition",
        "mean_comparator",
        "seed_correlation",
    )
    return dict.fromkeys(keys, math.nan)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation across seeds (NaN when undefined)."""
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _evaluate_test(ev: _ArmEvaluator, test: TestSpec, settings: Settings, descriptive: bool) -> dict[str, Any] | None:
    arm = ev.arm
    spec = METRICS[test.metric]
    if test.stratum not in arm.strata or not arm.has(test.condition, spec.needs):
        return None
    present = [c for c in test.comparators if arm.has(c, spec.needs)]
    if not present:
        return None
    n_items = int(ev.items(test.stratum).size)
    row: dict[str, Any] = _nan_row()
    row.update(
        claim=test.claim,
        arm=arm.arm,
        test=test.name,
        primary=test.primary and not descriptive,
        metric=test.metric,
        stratum=test.stratum,
        condition=test.condition,
        comparator_set=", ".join(present),
        direction=test.direction,
        margin=test.margin,
        margin_scale=test.margin_scale,
        seeds=arm.n_seeds,
        n_items=n_items,
        kind=test.kind,
        reference=arm.reference_name,
        design=arm.design,
        rationale=test.rationale,
        item_groups=0,
        comparator=present[0],
    )
    if n_items == 0:  # an empty stratum (a votes arm with one vote per item has no hard items): the test
        # stays in its family with no estimate (inconclusive) instead of failing on a (seeds, 0, C) array
        row.update(method="no items in this stratum")
        return row
    conf, eq_conf = settings.confidence, settings.equivalence_confidence
    if test.kind == "variance_ratio":
        x = ev.values(test.condition, test.metric, test.stratum, with_groups=False)[:, 0]
        y = ev.values(present[0], test.metric, test.stratum, with_groups=False)[:, 0]
        pm = pitman_morgan(x, y, conf)
        pm_eq = pitman_morgan(x, y, eq_conf)
        row.update(
            estimate=pm.ratio,
            ci_low=pm.ci_low,
            ci_high=pm.ci_high,
            relative=pm.ratio - 1.0,
            relative_ci_low=pm.ci_low - 1.0,
            relative_ci_high=pm.ci_high - 1.0,
            p_value=pm.p_value,
            equivalence_ci_low=pm_eq.ci_low,
            equivalence_ci_high=pm_eq.ci_high,
            df=float(pm.df),
            mean_condition=float(np.mean(x)),
            mean_comparator=float(np.mean(y)),
            method="pitman-morgan",
            seed_correlation=pm.r,
        )
        if descriptive:
            row.update(
                p_value=swap_permutation_variance_test(x, y), method="swap-permutation (exact) + pitman-morgan interval"
            )
        return row

    if descriptive:
        cvals = ev.values(test.condition, test.metric, test.stratum, with_groups=False)[:, 0]
        comps = [ev.values(c, test.metric, test.stratum, with_groups=False)[:, 0] for c in present]
        means = [float(v.mean()) for v in comps]
        pick = int(np.argmin(means)) if test.direction == "lower" else int(np.argmax(means))
        d = cvals - comps[pick]
        lo, hi = sign_flip_interval(d, conf)
        base = abs(means[pick]) if means[pick] != 0 else math.nan
        row.update(
            seed_correlation=_correlation(cvals, comps[pick]),
            comparator=present[pick],
            estimate=float(d.mean()),
            ci_low=lo,
            ci_high=hi,
            p_value=sign_flip_test(d),
            relative=float(d.mean()) / base,
            relative_ci_low=lo / base,
            relative_ci_high=hi / base,
            mean_condition=float(cvals.mean()),
            mean_comparator=means[pick],
            method="sign-flip permutation over seeds (exact; items fixed)",
        )
        return row

    groups = ev.groups(test.stratum)
    row["item_groups"] = 0 if groups is None else int(groups.max()) + 1
    cvals = ev.values(test.condition, test.metric, test.stratum)
    results = [paired_difference(cvals, ev.values(c, test.metric, test.stratum)) for c in present]
    method = "t, seeds x item-groups crossed variance (jackknife), Satterthwaite df"
    if test.comparator_rule == "best":
        comp = best_of(results, test.direction)
        sel = results[comp.selected]
        ci, rci = comp.interval(conf), comp.interval(conf, relative=True)
        eq = comp.interval(eq_conf, relative=test.margin_scale == "relative")
        p = comp.p_value()
        row["comparator"] = present[comp.selected]
        method += f"; best of {len(present)} (intersection-union / Bonferroni)"
    else:
        sel = results[0]
        ci, rci = sel.interval(conf), sel.interval(conf, relative=True)
        eq = sel.interval(eq_conf, relative=test.margin_scale == "relative")
        p = sel.p_value()
    comp_full = ev.values(row["comparator"], test.metric, test.stratum)[:, 0]
    row.update(
        seed_correlation=_correlation(cvals[:, 0], comp_full),
        estimate=sel.estimate,
        ci_low=ci[0],
        ci_high=ci[1],
        relative=sel.relative,
        relative_ci_low=rci[0],
        relative_ci_high=rci[1],
        p_value=p,
        equivalence_ci_low=eq[0],
        equivalence_ci_high=eq[1],
        df=sel.df,
        se=sel.se,
        mean_condition=sel.mean_condition,
        mean_comparator=sel.mean_comparator,
        method=method,
    )
    return row


def _equivalence_bounds(kind: str, margin: float) -> tuple[float, float]:
    """Equivalence region on the scale of the equivalence interval: ``(1 − m, 1/(1 − m))`` for a
    variance ratio (symmetric on the log scale), ``(−m, m)`` for a difference (absolute margin) or a
    relative effect (relative margin)."""
    if kind == "variance_ratio":
        return 1.0 - margin, 1.0 / (1.0 - margin)
    return -margin, margin


def verdict_table(
    arms: Mapping[str, ArmPredictions],
    claims: Claims | None = None,
) -> pd.DataFrame:
    """Run every pre-registered test on every arm and return one row per test that could run.

    ``arms`` maps arm names to :class:`ArmPredictions`; ``claims`` defaults to :func:`load_claims`.
    A test whose stratum, condition, every comparator or a needed item array is absent from an arm
    is skipped (it does not run and is not counted in a family). Families: ``primary`` (primary
    tests of verdict arms), ``exploratory`` (other tests of verdict arms), ``descriptive``
    (descriptive arms); Holm within each. Columns: :data:`VERDICT_COLUMNS`, then
    :data:`EXTRA_COLUMNS`. For variance ratios, ``estimate``/``ci_*`` are the ratio and
    ``relative = ratio − 1``; ``mde`` is the detectable ratio. For differences ``mde`` is the
    detectable absolute difference (``mde_relative`` over the comparator's mean). Rows are sorted:
    primary family first, then claim, arm, test order of the file.
    """
    claims = load_claims() if claims is None else claims
    st = claims.settings
    rows: list[dict[str, Any]] = []
    for key, arm in arms.items():
        if key != arm.arm:
            raise ValueError(f"arms: key {key!r} differs from ArmPredictions.arm {arm.arm!r}")
        rule, tests = claims.tests_for(arm.arm)
        descriptive = rule.role == "descriptive"
        ev = _ArmEvaluator(arm, st, with_groups=not descriptive and st.item_groups >= 2)
        for order, test in enumerate(tests):
            row = _evaluate_test(ev, test, st, descriptive)
            if row is None:
                continue
            row["family"] = "descriptive" if descriptive else ("primary" if test.primary else "exploratory")
            row["_order"] = order
            rows.append(row)
    columns = list(VERDICT_COLUMNS) + list(EXTRA_COLUMNS)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for fam in ("primary", "exploratory", "descriptive"):
        members = [r for r in rows if r["family"] == fam]
        adjusted = holm(np.array([r["p_value"] for r in members], dtype=float))
        for r, p_adj in zip(members, adjusted):
            r["p_adjusted"] = float(p_adj)
            r["family_size"] = len(members)
    for r in rows:
        level = st.alpha / max(int(r["family_size"]), 1)
        if r["kind"] == "variance_ratio":
            rho = float(r["seed_correlation"])
            mde = (
                variance_ratio_mde(int(r["seeds"]), rho, level, st.power, r["direction"])
                if math.isfinite(rho)
                else math.nan
            )
            r["mde"], r["mde_relative"] = mde, mde - 1.0
            null = 1.0
        else:
            mde = difference_mde(float(r["se"]), float(r["df"]), level, st.power)
            r["mde"] = mde
            r["mde_relative"] = mde / abs(r["mean_comparator"]) if r["mean_comparator"] else math.nan
            null = 0.0
        r["verdict"] = decide_verdict(
            direction=r["direction"],
            ci=(r["ci_low"], r["ci_high"]),
            equivalence_ci=(r["equivalence_ci_low"], r["equivalence_ci_high"]),
            equivalence_bounds=_equivalence_bounds(r["kind"], r["margin"]),
            p_adjusted=r["p_adjusted"],
            seeds=int(r["seeds"]),
            min_seeds=st.min_seeds,
            alpha=st.alpha,
            null=null,
            descriptive=r["family"] == "descriptive",
        )
    fam_order = {"primary": 0, "exploratory": 1, "descriptive": 2}
    rows.sort(key=lambda r: (fam_order[r["family"]], r["claim"], r["arm"], r["_order"]))
    table = pd.DataFrame([{c: r.get(c, math.nan) for c in columns} for r in rows], columns=columns)
    table["primary"] = table["primary"].astype(bool)
    table["seeds"] = table["seeds"].astype(int)
    table["family_size"] = table["family_size"].astype(int)
    table["item_groups"] = table["item_groups"].astype(int)
    return table


def write_verdicts(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the verdict table to ``path`` (``results/<set>/verdicts.parquet``) atomically, after
    checking it has the :data:`VERDICT_COLUMNS` in order and ``p_adjusted ≥ p_value`` wherever both
    are defined."""
    missing = [c for c in VERDICT_COLUMNS if c not in table.columns]
    if missing or list(table.columns[: len(VERDICT_COLUMNS)]) != list(VERDICT_COLUMNS):
        raise ValueError(f"table: expected the columns {list(VERDICT_COLUMNS)} first; missing {missing}")
    p, pa = table["p_value"].to_numpy(float), table["p_adjusted"].to_numpy(float)
    both = np.isfinite(p) & np.isfinite(pa)
    if np.any(pa[both] < p[both] - 1e-12):
        raise ValueError("table: p_adjusted is below p_value in some rows")
    bad = set(table["verdict"]) - set(VERDICTS)
    if bad:
        raise ValueError(f"table: unknown verdicts {sorted(bad)}; expected some of {VERDICTS}")
    dest = Path(path)
    with atomic_path(dest) as tmp:
        table.to_parquet(tmp, index=False)
    return dest
