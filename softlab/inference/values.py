"""Per-seed metric values of one arm, with their item-group jackknife replicates, computed once and cached.

:class:`ArmValues` answers "metric ``m`` of condition ``c`` on stratum ``s``" with the ``(S, G + 1)``
table of :func:`~softlab.inference.registry.leave_group_out_values` (column 0: all items; column
``g + 1``: item group ``g`` left out). On the held-out split the items are the pooled out-of-fold
predictions; on the ``disjoint`` split (the arm's large evaluation sample, official labels only,
never annotated) each seed has one prediction per fold model, and a seed's value is the mean
over its fold models of the metric on the same items (the same item groups for every fold model,
so the replicates stay a delete-a-group jackknife over items).
"""

from __future__ import annotations

import numpy as np

from softlab.inference.predictions import ArmPredictions
from softlab.inference.registry import METRICS, item_groups, leave_group_out_values

__all__ = ["SPLITS", "ArmValues"]

SPLITS: tuple[str, ...] = ("heldout", "disjoint")
"""Where a test's items come from: the pooled held-out folds, or the disjoint evaluation sample."""


class ArmValues:
    """Evaluates metrics of one arm, caching ``(S, G + 1)`` leave-group-out tables."""

    def __init__(self, arm: ArmPredictions, n_groups: int, group_seed: int, with_groups: bool) -> None:
        self.arm = arm
        self.n_groups = n_groups
        self.group_seed = group_seed
        self.with_groups = with_groups
        self._cache: dict[tuple[str, str, str, str, bool], np.ndarray] = {}
        self._groups: dict[tuple[str, str], np.ndarray | None] = {}
        self.official = np.asarray(arm.official).astype(np.int64)
        self.reference = np.asarray(arm.reference, dtype=np.float64)

    def has(self, condition: str, metric: str, stratum: str, split: str = "heldout") -> bool:
        """Whether the arm holds what ``metric`` needs for ``condition`` on ``split``/``stratum``."""
        if split == "disjoint":
            return stratum == "all" and condition in self.arm.disjoint_probs
        return stratum in self.arm.strata and self.arm.has(condition, METRICS[metric].needs)

    def items(self, stratum: str, split: str = "heldout") -> np.ndarray:
        if split == "disjoint":
            return np.arange(np.asarray(self.arm.disjoint_official).size)
        return np.flatnonzero(np.asarray(self.arm.strata[stratum]))

    def groups(self, stratum: str, split: str = "heldout") -> np.ndarray | None:
        key = (split, stratum)
        if key not in self._groups:
            n = self.items(stratum, split).size
            g = min(self.n_groups, n // 2)
            self._groups[key] = item_groups(n, g, self.group_seed) if self.with_groups and g >= 2 else None
        return self._groups[key]

    def values(
        self, condition: str, metric: str, stratum: str, with_groups: bool = True, split: str = "heldout"
    ) -> np.ndarray:
        key = (condition, metric, stratum, split, with_groups)
        if key not in self._cache:
            self._cache[key] = (
                self._disjoint(condition, metric, with_groups)
                if split == "disjoint"
                else self._heldout(condition, metric, stratum, with_groups)
            )
        return self._cache[key]

    def _heldout(self, condition: str, metric: str, stratum: str, with_groups: bool) -> np.ndarray:
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
        return leave_group_out_values(spec, probs, self.official[idx], self.reference[idx], arrays, groups)

    def _disjoint(self, condition: str, metric: str, with_groups: bool) -> np.ndarray:
        spec = METRICS[metric]
        probs = np.asarray(self.arm.disjoint_probs[condition])  # (S, F, J, C)
        s, f, j, c = probs.shape
        official = np.asarray(self.arm.disjoint_official).astype(np.int64)
        onehot = np.eye(c)[official]  # no reference distribution off the annotated pool
        groups = self.groups("all", "disjoint") if with_groups else None
        table = leave_group_out_values(spec, probs.reshape(s * f, j, c), official, onehot, {}, groups)
        return table.reshape(s, f, -1).mean(axis=1)
