"""The metrics a pre-registered test may name (:data:`METRICS`), each with its item-group jackknife.

A metric is a per-seed number computed from an arm's pooled predictions on a stratum's items
(:class:`MetricSpec`); :func:`leave_group_out_values` gives it on all items and with each random item
group (:func:`item_groups`) left out, the input of the paired-difference estimator. A new metric
is one entry in :func:`_build_registry` and its test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from softlab import cartography
from softlab import metrics as M

__all__ = ["METRICS", "OFFICIAL_LABEL_METRICS", "MetricSpec", "item_groups", "leave_group_out_values"]

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


def _spearman_spec(name: str, array: str | None, description: str, series_of: str = "entropy") -> MetricSpec:
    """Spearman correlation with the reference entropy ``H(h)`` of a held-out item array, or, when
    ``array`` is None, of a function of the final probabilities: the predictive entropy ``H(p)``
    (``series_of="entropy"``, :func:`softlab.metrics.entropy_spearman`) or the maximum probability
    ``max_c p_c`` (``series_of="max_probability"``; mode-free: it does not depend on which label
    is the reference mode)."""

    def series(probs: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if array is not None:
            return np.asarray(arrays[array], dtype=np.float64)
        return M.entropy(probs) if series_of == "entropy" else np.asarray(probs, dtype=np.float64).max(axis=-1)

    def function(
        probs: np.ndarray, official: np.ndarray, reference: np.ndarray, arrays: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        if array is None and series_of == "entropy":
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
            "spearman_max_probability_entropy",
            None,
            "Spearman of the final model's maximum probability with H(h) (mode-free confidence)",
            series_of="max_probability",
        ),
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

OFFICIAL_LABEL_METRICS: tuple[str, ...] = ("accuracy", "nll", "brier", "ece", "debiased_ce")
"""The metrics that need only official labels: the ones a test on the disjoint sample may name."""
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
