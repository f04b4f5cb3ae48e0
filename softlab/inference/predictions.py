"""The unit every test works on: one arm's pooled out-of-fold predictions (:class:`ArmPredictions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from softlab.validation import check_labels, check_probability_rows, check_shape

__all__ = ["ArmPredictions"]


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
    disjoint_official: ``(J,)`` int, official labels of the disjoint evaluation sample (never
        annotated; empty when the arm has none).
    disjoint_probs: condition -> ``(S, F, J, C)`` float: each of seed ``s``'s ``F`` fold models'
        probabilities on the disjoint sample (tests with ``split: disjoint``).
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
    disjoint_official: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    disjoint_probs: Mapping[str, np.ndarray] = field(default_factory=dict)

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

        n_disjoint = np.asarray(self.disjoint_official).shape[0]
        if self.disjoint_probs:
            check_labels(self.disjoint_official, f"{where}: disjoint_official")
        for cond, p in self.disjoint_probs.items():
            shape = np.shape(p)
            if len(shape) != 4 or shape[0] != n_seeds or shape[2:] != (n_disjoint, n_classes):
                raise ValueError(
                    f"{where}: disjoint_probs[{cond!r}]: expected shape (seeds, folds, items, classes) = "
                    f"({n_seeds}, F, {n_disjoint}, {n_classes}), got {shape}"
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
