"""Annotation budgets (the book's chapter "Robustness and annotation budgets"): how many votes per
item, on how many items, fed how. Arrays only (no torch): the protocol (:mod:`softlab.experiment`)
calls these per seed, the trainer only reads the per-epoch labels they return.

- :func:`subsample_votes` — ``k`` votes per item drawn **without replacement** from the item's own
  vote counts (a multivariate hypergeometric draw per item). ``k = None`` ("all") returns the
  counts unchanged. An item with fewer than ``k`` votes keeps all of its votes (it is never given
  more than it has): Fashion-MNIST-H has 53–79 votes per item, so this only happens for small
  votes tables.
- :func:`annotated_mask` — which items keep their human labels when only a fraction ``f`` is
  annotated: a seeded subsample stratified by official label (each class contributes its share to
  within one item); the rest train with ``original/hard``.
- :func:`sampled_vote_labels` — the ``human/sampled`` delivery ("stochastic label sampling"): for
  every epoch, each item's target is one vote drawn from its own (sub)sampled votes, i.e. a class
  drawn with probability ``counts_ic / n_i``. Returned as class indices ``(epochs, n)``; the trainer
  turns them into one-hot targets epoch by epoch (``softlab.train.Member.epoch_labels``).

Every draw comes from ``numpy.random.SeedSequence([tag, *seed parts])`` so a seed (or a (seed,
fold) pair) gives the same draw on every machine and different seeds give independent draws; the
three draws use different tags, so they are independent of each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Bumped whenever a draw below changes what it returns (it enters every budgeted run's cache key).
BUDGETS_VERSION = 1
#: ``SeedSequence`` tags of the three draws (arbitrary constants; they keep the draws independent).
_SUBSAMPLE_TAG = 230_001
_FRACTION_TAG = 230_002
_SAMPLED_TAG = 230_003

Ints = NDArray[np.int64]


def _rng(tag: int, seed: int | Sequence[int]) -> np.random.Generator:
    parts = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if any(p < 0 for p in parts):
        raise ValueError(f"seed: expected non-negative integers, got {parts}")
    return np.random.default_rng(np.random.SeedSequence([tag, *parts]))


def whole_counts(counts: ArrayLike, name: str = "counts") -> Ints:
    """``counts`` (n, C) as int64, checked: 2-D, finite, non-negative whole numbers of votes, and
    at least one vote per item (one line naming the first offending row otherwise)."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (items, classes) array of vote counts, got shape {c.shape}")
    bad = ~np.isfinite(c) | (c < 0) | (c != np.round(c))
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(
            f"{name}: row {row} is {c[row].tolist()}; expected non-negative whole numbers of votes "
            "(weighted votes cannot be subsampled vote by vote)"
        )
    empty = c.sum(axis=1) == 0
    if empty.any():
        raise ValueError(f"{name}: row {int(np.flatnonzero(empty)[0])} has no votes; expected at least one per item")
    return c.astype(np.int64)


def check_votes_per_item(k: int | None) -> int | None:
    """``None`` (all votes) or a positive int; one-line error otherwise."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise ValueError(f"votes_per_item: expected a positive number of votes (or all), got {k!r}")
    return int(k)


def subsample_votes(counts: ArrayLike, k: int | None, seed: int | Sequence[int]) -> Ints:
    """(n, C) int64: ``k`` votes per item drawn without replacement from that item's ``counts``.

    Row ``i`` is a multivariate hypergeometric draw of ``min(k, n_i)`` votes from row ``i`` of
    ``counts`` (``n_i`` = its number of votes), so it never exceeds ``counts`` elementwise and
    sums to ``min(k, n_i)``; an item with at most ``k`` votes keeps all of them. ``k = None``
    returns the counts themselves (a copy). Deterministic per ``seed``; a fresh draw per seed.
    """
    c = whole_counts(counts)
    k = check_votes_per_item(k)
    if k is None:
        return c.copy()
    rng = _rng(_SUBSAMPLE_TAG, seed)
    out = c.copy()
    n_votes = c.sum(axis=1)
    for i in np.flatnonzero(n_votes > k):
        out[i] = rng.multivariate_hypergeometric(c[i], k)
    return out


def check_annotated_fraction(fraction: float) -> float:
    """A share in (0, 1]; one-line error otherwise."""
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"annotated_fraction: expected a share in (0, 1], got {fraction!r}")
    return f


def annotated_mask(labels: ArrayLike, fraction: float, seed: int | Sequence[int]) -> NDArray[np.bool_]:
    """(n,) bool: the items that keep their human labels when only ``fraction`` of them are
    annotated — ``round(fraction · n)`` items (at least one), stratified by ``labels`` (the
    official label): the total is apportioned over classes by largest remainder (exact integer
    arithmetic, ties in seeded random order), so each class contributes its share
    ``size · n_class / n`` to within one item, and each class's items are a seeded uniform
    choice. ``fraction = 1`` keeps every item."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of official labels, got shape {y.shape}")
    f = check_annotated_fraction(fraction)
    n = len(y)
    if f == 1.0 or n == 0:
        return np.ones(n, dtype=bool)
    size = max(1, round(f * n))
    rng = _rng(_FRACTION_TAG, seed)
    classes, n_class = np.unique(y, return_counts=True)
    # largest-remainder apportionment of ``size`` over the classes (exact integers, random ties)
    quota = size * n_class
    take = quota // n
    spare = size - int(take.sum())
    order = np.lexsort((rng.random(len(classes)), -(quota % n)))
    take[order[:spare]] += 1
    mask = np.zeros(n, dtype=bool)
    for c, t in zip(classes, take):
        idx = np.flatnonzero(y == c)
        mask[rng.choice(idx, size=int(t), replace=False)] = True
    return mask


def sampled_vote_labels(counts: ArrayLike, epochs: int, seed: int | Sequence[int]) -> Ints:
    """(epochs, n) int64: for every epoch, each item's class is one vote drawn from its own
    ``counts`` row (class ``c`` with probability ``counts_ic / n_i``); never another item's vote.
    Deterministic per ``seed``. The ``human/sampled`` condition trains on their one-hot targets."""
    c = whole_counts(counts)
    if isinstance(epochs, bool) or int(epochs) < 1:
        raise ValueError(f"epochs: expected at least 1, got {epochs!r}")
    rng = _rng(_SAMPLED_TAG, seed)
    cum = np.cumsum(c, axis=1)  # (n, C) integer: votes of classes 0..c
    # vote number r (uniform in 0..n_i-1) of item i belongs to the first class whose cumulative
    # count exceeds r; a class with no votes has no numbers, so it is never drawn (exact integers)
    r = rng.integers(0, cum[:, -1][None, :], size=(int(epochs), len(c)))
    return (r[:, :, None] >= cum[None, :, :]).sum(axis=2).astype(np.int64)


def one_hot_labels(labels: ArrayLike, n_classes: int) -> NDArray[np.float32]:
    """(…, n_classes) float32 one-hot rows of integer ``labels``."""
    y = np.asarray(labels, dtype=np.int64)
    return np.eye(int(n_classes), dtype=np.float32)[y]
