"""Label conditions: mode × shape training targets (the book's chapter 3, "Mode decoupling",
``notebooks/03_mode_decoupling.ipynb``, states the same definitions with their figures).

Notation: ``N`` items in the split, ``C`` classes, ``n`` annotated items. For an annotated item
with official label ``y``, human distribution ``h`` and human mode ``m = argmax h`` (ties resolved
towards ``y``, else the lowest class index — :func:`softlab.data.annotations.human_mode`):

**Mode** axis (which label the target's argmax is):

- ``original`` — the official label ``y``;
- ``human`` — the human mode ``m``.

**Shape** axis (how the probability mass is spread):

- ``hard`` — one-hot.
- ``smooth`` — label smoothing ``(1 − ε)·onehot + ε/C`` (uniform over all ``C`` classes), with ε
  **entropy-matched**: every smoothed target has the same entropy, and ε is chosen (bisection) so
  that it equals the *mean* human entropy ``mean_i H(h_i)`` over the annotated items — the same
  amount of softness as the human labels, by the same measure as ``synthetic`` (the fair
  competitor).
- ``smooth-mass`` (an extra shape, not among the 10 canonical conditions) — label smoothing with
  ε **mass-matched**: its off-mode mass ``1 − max = ε(C − 1)/C`` equals the mean human off-mode
  mass::

      ε = C/(C − 1) · mean_i (1 − max_c h_ic)          (always in [0, 1])

  Human labels put their off-mode mass on one or two classes, smoothing spreads it over all, so
  mass matching gives far *more* entropy than the human labels (Fashion-MNIST-H: ≈ 1.2 against
  ≈ 0.8 nats): an over-smoothed competitor, kept for comparison.
- ``synthetic`` — a teacher's out-of-sample probabilities ``t`` tempered as
  ``softmax(log(max(t, floor)) / T)`` with ``T`` fitted (bisection on ``log T``) so the mean
  entropy over the annotated items equals the mean human entropy ``mean_i H(h_i)``. The mean
  tempered entropy increases monotonically with ``T`` (``dH/d(1/T) = −Var_q(log t)/T ≤ 0``), so the
  fit is unique. If the target is outside what ``T ∈ [e^-12, e^12]`` reaches (e.g. every human
  label one-hot and teacher ties), ``T`` is clamped to the bound and the remaining gap is reported
  in ``fitted["synthetic_entropy_gap"]``.
- ``synthetic-own-data`` (an extra shape) — the same tempering and the same entropy-matched fit
  of ``T``, applied to **cross-fitted** probabilities of teachers that saw only the student's own
  training items: the training items are split into parts, and each part is labelled by a
  teacher trained on the other parts only (never on the item it labels;
  ``softlab.experiment`` trains them). It separates the soft shape of ``synthetic`` from the
  extra data its big teacher saw (≈8× the student's on Fashion-MNIST-H).
- ``human-shuffled`` — the human distributions permuted (seeded, uniformly at random; items may
  keep their own) among annotated items of the same **group**: for the ``original`` mode the
  group is the official label ``y`` (grouping by the human mode there would leak the human mode
  of mode-shifted items through the group), for the ``human`` mode it is the human mode ``m``
  (so the shuffled shape's argmax is already ``m``). Same amount and kind of softness, not the
  item's own. The two permutations are drawn independently from ``seed``.
- ``human`` — the item's own human distribution ``h``.

**Placement** of a shape ``s`` on a required label ``r`` (``y`` or ``m``) swaps the probability at
the shape's own argmax ``a`` with the probability at ``r`` (nothing else changes). The shape's own
argmax breaks ties **towards the required label** ``r`` (if ``s_r`` equals the maximum, ``a = r`` and
nothing changes), otherwise towards the lowest class index. Hence ``human/human`` is ``h`` itself,
``human/human-shuffled`` is the permuted ``h`` unchanged, and ``original/human`` is ``h`` with its
mode moved back to ``y``. Swapping changes neither entropy nor the maximum, so the fitted amounts of
softness hold in both modes.

Items without human labels keep ``original/hard`` (one-hot official) in every condition.
All targets are float32 ``(N, C)``; computation is done in float64. Entropy is in nats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from softlab.data.annotations import entropy, human_mode, soft_labels, votes_per_item
from softlab.validation import (
    PROB_SUM_TOL,
    check_labels,
    check_nonnegative,
    check_probability_rows,
    is_probability_rows,
)

Floats = NDArray[np.float64]

MODES: tuple[str, ...] = ("original", "human")


@dataclass(frozen=True)
class ShapeSpec:
    """One label shape, in one line each: how its target is built (``target``), what is fitted on
    the training items of a fold (``fitted``, empty: nothing), which input of
    :func:`build_conditions` it needs besides the human labels (``needs``), and whether it is one of
    the canonical grid's shapes (``canonical``) or a comparison-only extra."""

    name: str
    target: str
    fitted: str = ""
    needs: str = ""
    canonical: bool = True


#: The table of label shapes: the shape tuples below are read from it.
SHAPE_SPECS: tuple[ShapeSpec, ...] = (
    ShapeSpec("hard", "one-hot"),
    ShapeSpec("smooth", "(1 - eps) onehot + eps / C", "eps: entropy-matched to the mean human entropy"),
    ShapeSpec(
        "synthetic",
        "the big teacher's probabilities tempered softmax(log t / T)",
        "T: entropy-matched to the mean human entropy",
        "teacher_probs",
    ),
    ShapeSpec(
        "human-shuffled",
        "human distributions permuted within official-label (original) or human-mode (human) groups",
        "the permutation, per (seed, fold)",
    ),
    ShapeSpec("human", "the item's own human distribution"),
    ShapeSpec(
        "smooth-mass",
        "(1 - eps) onehot + eps / C",
        "eps: mass-matched to the mean human off-mode mass",
        canonical=False,
    ),
    ShapeSpec(
        "synthetic-own-data",
        "cross-fitted probabilities of teachers trained on the student's own training items, tempered",
        "T: entropy-matched to the mean human entropy",
        "own_teacher_probs",
        canonical=False,
    ),
)
SHAPES: tuple[str, ...] = tuple(s.name for s in SHAPE_SPECS if s.canonical)
#: The 10 canonical mode × shape conditions.
CONDITIONS: tuple[str, ...] = tuple(f"{mode}/{shape}" for mode in MODES for shape in SHAPES)
#: Shapes outside the canonical grid (comparison only): mass-matched label smoothing, the own-data teacher.
EXTRA_SHAPES: tuple[str, ...] = tuple(s.name for s in SHAPE_SPECS if not s.canonical)
#: Shapes made from teacher probabilities (each needs its own teacher input in :func:`build_conditions`).
TEACHER_SHAPES: tuple[str, ...] = tuple(s.name for s in SHAPE_SPECS if s.needs)
EXTRA_CONDITIONS: tuple[str, ...] = tuple(f"{mode}/{shape}" for mode in MODES for shape in EXTRA_SHAPES)
ALL_CONDITIONS: tuple[str, ...] = CONDITIONS + EXTRA_CONDITIONS

#: Teacher probabilities are clipped below at this before taking the logarithm.
TEACHER_FLOOR: float = 1e-12
#: Bracket of ``log T`` searched by :func:`fit_temperature`.
LOG_T_BOUNDS: tuple[float, float] = (-12.0, 12.0)

HumanKind = Literal["auto", "counts", "distribution"]


# --------------------------------------------------------------------------- names


def parse_condition(name: str) -> tuple[str, str]:
    """``"mode/shape"`` → ``(mode, shape)``; raises ValueError for names not in :data:`ALL_CONDITIONS`."""
    if not isinstance(name, str) or name not in ALL_CONDITIONS:
        raise ValueError(
            f"condition: unknown condition {name!r}; expected one of {list(ALL_CONDITIONS)} "
            f"(format 'mode/shape', mode in {list(MODES)}, shape in {list(SHAPES + EXTRA_SHAPES)})"
        )
    mode, shape = name.split("/", 1)
    return mode, shape


def _condition_list(conditions: str | Sequence[str]) -> tuple[str, ...]:
    names = (conditions,) if isinstance(conditions, str) else tuple(conditions)
    if not names:
        raise ValueError("conditions: empty; expected at least one condition name")
    for name in names:
        parse_condition(name)
    dup = [n for k, n in enumerate(names) if n in names[:k]]
    if dup:
        raise ValueError(f"conditions: {dup[0]!r} is listed more than once")
    return names


# --------------------------------------------------------------------------- building blocks


def shape_argmax(shape: np.ndarray, prefer: np.ndarray) -> np.ndarray:
    """Argmax of each row of ``shape`` (n, C), ties broken towards ``prefer`` (n,) when it is among
    the tied maxima, otherwise towards the lowest class index."""
    p = np.asarray(shape)
    r = np.asarray(prefer, dtype=np.int64)
    at_pref = np.take_along_axis(p, r[:, None], axis=1)[:, 0]
    return np.where(at_pref == p.max(axis=1), r, p.argmax(axis=1)).astype(np.int64)


def place_mode(shape: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Place each row's shape on ``label``: swap the entry at the shape's own argmax (ties towards
    ``label``, see :func:`shape_argmax`) with the entry at ``label``. Returns a new array; at most
    two entries per row change, and the multiset of entries of each row is unchanged."""
    p = np.array(shape, copy=True)
    r = np.asarray(label, dtype=np.int64)
    own = shape_argmax(p, r)
    rows = np.arange(len(p))
    at_own, at_r = p[rows, own].copy(), p[rows, r].copy()
    p[rows, own], p[rows, r] = at_r, at_own
    return p


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) int → (n, C) float64 one-hot rows."""
    out = np.zeros((len(labels), n_classes), dtype=np.float64)
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return out


def off_mode_mass(p: np.ndarray) -> np.ndarray:
    """``1 − max_c p_c`` per row: the probability not on the row's top label."""
    return 1.0 - np.asarray(p, dtype=np.float64).max(axis=-1)


def fit_smoothing_epsilon(human: np.ndarray) -> float:
    """ε with mean off-mode mass of ``(1 − ε)·onehot + ε/C`` equal to the human one:
    ``ε = C/(C − 1) · mean_i (1 − max_c h_ic)``."""
    h = np.asarray(human, dtype=np.float64)
    c = h.shape[1]
    return float(min(1.0, max(0.0, c / (c - 1) * off_mode_mass(h).mean())))


def smoothing_entropy(epsilon: float, n_classes: int) -> float:
    """Entropy (nats) of ``(1 − ε)·onehot + ε/C``: top ``1 − ε + ε/C``, ``C − 1`` entries ``ε/C``."""
    c = n_classes
    top, rest = 1.0 - epsilon + epsilon / c, epsilon / c
    out = -top * np.log(top) if top > 0 else 0.0
    if rest > 0:
        out -= (c - 1) * rest * np.log(rest)
    return float(out)


def fit_smoothing_epsilon_entropy(human: np.ndarray, tol: float = 1e-12) -> float:
    """ε with ``H((1 − ε)·onehot + ε/C)`` equal to the mean human entropy ``mean_i H(h_i)``.

    The smoothed entropy rises strictly from 0 (ε = 0) to ``ln C`` (ε = 1), and a mean human
    entropy lies in ``[0, ln C]``, so bisection on ``[0, 1]`` finds the unique ε."""
    h = np.asarray(human, dtype=np.float64)
    c = h.shape[1]
    target = float(entropy(h).mean())
    if target <= 0.0:
        return 0.0
    if target >= np.log(c):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if smoothing_entropy(mid, c) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def smooth_shape(labels: np.ndarray, n_classes: int, epsilon: float) -> np.ndarray:
    """``(1 − ε)·onehot(labels) + ε/C`` as float64 (n, C)."""
    return (1.0 - epsilon) * one_hot(labels, n_classes) + epsilon / n_classes


def softmax(z: ArrayLike, temperature: float = 1.0) -> Floats:
    """``softmax(z / T)`` over the last axis, in float64 (the row maximum is subtracted first)."""
    scaled = np.asarray(z, dtype=np.float64) / temperature
    e = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def temper(probs: ArrayLike, temperature: float, floor: float = TEACHER_FLOOR) -> Floats:
    """``softmax(log(max(p, floor)) / T)`` per row, float64."""
    return softmax(np.log(np.maximum(np.asarray(probs, dtype=np.float64), floor)), temperature)


def _mean_tempered_entropy(log_p: np.ndarray, log_t: float) -> float:
    z = log_p / np.exp(log_t)
    z = z - z.max(axis=-1, keepdims=True)
    log_q = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-(np.exp(log_q) * log_q).sum(axis=-1).mean())


def fit_temperature(
    probs: np.ndarray,
    target_mean_entropy: float,
    tol: float = 1e-9,
    floor: float = TEACHER_FLOOR,
    log_t_bounds: tuple[float, float] = LOG_T_BOUNDS,
) -> tuple[float, float]:
    """Temperature ``T`` with mean entropy (nats) of :func:`temper` ``(probs, T)`` equal to
    ``target_mean_entropy``, by bisection on ``log T`` within ``log_t_bounds``.

    Returns ``(T, gap)`` with ``gap = achieved mean entropy − target`` (``|gap| ≤ tol`` unless the
    target is out of reach, in which case ``T`` is the nearer bound)."""
    log_p = np.log(np.maximum(np.asarray(probs, dtype=np.float64), floor))
    lo, hi = log_t_bounds
    f_lo = _mean_tempered_entropy(log_p, lo) - target_mean_entropy
    if f_lo >= 0:
        return float(np.exp(lo)), f_lo
    f_hi = _mean_tempered_entropy(log_p, hi) - target_mean_entropy
    if f_hi <= 0:
        return float(np.exp(hi)), f_hi
    mid, f_mid = hi, f_hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f_mid = _mean_tempered_entropy(log_p, mid) - target_mean_entropy
        if abs(f_mid) <= tol or hi - lo < 1e-13:
            break
        lo, hi = (mid, hi) if f_mid < 0 else (lo, mid)
    return float(np.exp(mid)), f_mid


def shuffle_within_groups(
    dists: np.ndarray, groups: np.ndarray, seed: int | np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray]:
    """Permute rows of ``dists`` (n, C) among rows sharing a ``groups`` value (n,).

    One ``np.random.default_rng(seed)`` draws ``rng.permutation`` for each group in increasing group
    order. Returns ``(shuffled, source)`` with ``shuffled = dists[source]`` and
    ``groups[source] == groups``."""
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    source = np.arange(len(g), dtype=np.int64)
    for value in np.unique(g):
        idx = np.flatnonzero(g == value)
        source[idx] = idx[rng.permutation(len(idx))]
    return np.asarray(dists)[source], source


# --------------------------------------------------------------------------- validation


def _human_distribution(human: ArrayLike, n: int, kind: str) -> tuple[Floats, Floats | None]:
    """Validate ``human`` and return (distribution float64 (n, C), votes or None)."""
    if kind not in ("auto", "counts", "distribution"):
        raise ValueError(f"human_kind: expected 'auto', 'counts' or 'distribution', got {kind!r}")
    arr = np.asarray(human)
    if arr.ndim != 2:
        raise ValueError(f"human: expected a 2-D array (annotated items × classes), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(
            f"human: has {arr.shape[0]} rows but annotated_items lists {n} items; "
            "expected one row per annotated item, in the same order"
        )
    if arr.shape[1] < 2:
        raise ValueError(f"human: expected at least 2 classes (columns), got {arr.shape[1]}")
    arr = check_nonnegative(arr, "human", what="vote count or probability")
    if kind == "auto":
        if is_probability_rows(arr):
            kind = "distribution"
        elif np.all(arr == np.round(arr)):
            kind = "counts"
        else:
            sums = arr.sum(axis=1)
            r = int(np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOL)[0])
            raise ValueError(
                f"human: row {r} sums to {sums[r]:.6g} and the values are not integer vote counts; "
                "expected rows summing to 1 (a distribution) or integer counts "
                "(pass human_kind='counts' for weighted/fractional counts)"
            )
    if kind == "distribution":
        arr = check_probability_rows(arr, "human")
        return arr / arr.sum(axis=1)[:, None], None
    empty = arr.sum(axis=1) <= 0
    if empty.any():
        raise ValueError(f"human: row {int(np.flatnonzero(empty)[0])} has no votes; every annotated item needs a vote")
    return soft_labels(arr), votes_per_item(arr)


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class LabelConditions:
    """Training targets for every item under each requested condition, with their provenance.

    - ``targets[name]``: float32 (N, C), read-only; unannotated rows are one-hot official.
    - ``official`` (N,), ``annotated_items`` (n,), ``human`` (n, C) float64 distributions and
      ``human_mode`` (n,) (ties towards official) in ``annotated_items`` order.
    - ``items``: per-item table (N rows, index ``item``) — ``official``, ``annotated``, ``votes`` (only
      when counts were given; NaN if unannotated), ``human_entropy`` (nats; NaN if unannotated),
      ``human_mode`` (nullable Int64), ``mode_shifted`` (human mode ≠ official; False if unannotated),
      ``shuffled_from`` (the item whose human distribution ``human/human-shuffled`` gives this
      item; nullable Int64), ``shuffled_from_official_group`` (the same for
      ``original/human-shuffled``) and ``target_entropy[<condition>]`` (nats) per condition.
    - ``fitted``: ``smoothing_epsilon`` (entropy-matched), ``smoothing_epsilon_mass``
      (mass-matched), ``synthetic_temperature`` (NaN without a teacher),
      ``synthetic_entropy_gap``, ``own_data_temperature`` and ``own_data_entropy_gap`` (the same
      for ``synthetic-own-data``), ``human_mean_entropy``, ``human_mean_off_mode_mass``,
      ``human_frac_mode_shifted``, ``n_items``, ``n_annotated``, ``n_classes``, ``seed``.
    """

    conditions: tuple[str, ...]
    targets: Mapping[str, np.ndarray]
    official: np.ndarray
    annotated_items: np.ndarray
    human: np.ndarray
    human_mode: np.ndarray
    items: pd.DataFrame
    fitted: dict[str, float] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.official)

    @property
    def n_classes(self) -> int:
        return int(self.human.shape[1])

    def target(self, name: str) -> np.ndarray:
        """Targets (N, C) float32 for one condition."""
        parse_condition(name)
        if name not in self.targets:
            raise ValueError(f"condition: {name!r} was not built; built: {list(self.conditions)}")
        return self.targets[name]

    def annotated(self, name: str) -> np.ndarray:
        """Targets (n, C) float32 of the annotated items only, in ``annotated_items`` order."""
        return self.target(name)[self.annotated_items]

    def summary(self) -> pd.DataFrame:
        """One row per condition, over the annotated items:

        - ``mean_entropy``: mean target entropy (nats);
        - ``mean_off_mode_mass``: mean of ``1 − max_c p_c``;
        - ``frac_argmax_official`` / ``frac_argmax_human_mode``: fraction of items whose target argmax
          is that label, the argmax breaking ties towards the condition's required label (the
          placement rule: ``y`` for ``original/…``, the human mode for ``human/…``);
        - ``frac_mode_shifted``: ``1 − frac_argmax_official``;
        - ``frac_top_tied``: fraction of items whose target maximum is shared by several classes
          (where the argmax depends on the tie rule);
        - ``mean_tv_to_human``: mean total variation ``½ Σ_c |p_c − h_c|`` to the item's human label;
        - ``parameter``: ε for ``smooth``/``smooth-mass``, T for ``synthetic``, NaN otherwise.
        """
        y = self.official[self.annotated_items]
        rows = []
        for name in self.conditions:
            mode, shape = parse_condition(name)
            p = self.annotated(name).astype(np.float64)
            arg = shape_argmax(p, y if mode == "original" else self.human_mode)
            top_tied = (p == p.max(axis=1, keepdims=True)).sum(axis=1) > 1
            parameter = {
                "smooth": self.fitted.get("smoothing_epsilon", np.nan),
                "smooth-mass": self.fitted.get("smoothing_epsilon_mass", np.nan),
                "synthetic": self.fitted.get("synthetic_temperature", np.nan),
                "synthetic-own-data": self.fitted.get("own_data_temperature", np.nan),
            }.get(shape, np.nan)
            rows.append(
                {
                    "condition": name,
                    "mode": mode,
                    "shape": shape,
                    "mean_entropy": float(entropy(p).mean()),
                    "mean_off_mode_mass": float(off_mode_mass(p).mean()),
                    "frac_argmax_official": float((arg == y).mean()),
                    "frac_argmax_human_mode": float((arg == self.human_mode).mean()),
                    "frac_mode_shifted": float((arg != y).mean()),
                    "frac_top_tied": float(top_tied.mean()),
                    "mean_tv_to_human": float(0.5 * np.abs(p - self.human).sum(axis=1).mean()),
                    "parameter": float(parameter),
                }
            )
        return pd.DataFrame(rows).set_index("condition")


# --------------------------------------------------------------------------- main entry


def build_conditions(
    official: np.ndarray,
    annotated_items: np.ndarray,
    human: np.ndarray,
    teacher_probs: np.ndarray | None = None,
    conditions: str | Sequence[str] = CONDITIONS,
    seed: int = 0,
    human_kind: HumanKind = "auto",
    entropy_tol: float = 1e-9,
    teacher_floor: float = TEACHER_FLOOR,
    own_teacher_probs: np.ndarray | None = None,
) -> LabelConditions:
    """Build the training targets of the requested mode × shape conditions for every item.

    Parameters
    ----------
    official : (N,) int — official labels of all items of the split, in ``[0, C)``.
    annotated_items : (n,) int — distinct indices into ``official`` of the human-labelled items (n ≥ 1).
    human : (n, C) — per annotated item (same order), a distribution (rows sum to 1) or vote counts.
        ``human_kind="auto"`` reads a matrix whose every row is a probability row
        (:func:`softlab.validation.check_probability_rows`) as
        distributions, otherwise integer-valued matrices as counts; ``"counts"`` accepts weighted
        (fractional) counts. Counts are normalised (:func:`softlab.data.annotations.soft_labels`) and
        their row sums reported as ``votes``.
    teacher_probs : (N, C) indexed by item, or (n, C) in ``annotated_items`` order (when ``N == n``
        the (N, C) reading applies); out-of-sample teacher probabilities. Required for ``synthetic``.
    conditions : condition names (default the 10 of :data:`CONDITIONS`; :data:`EXTRA_CONDITIONS`
        may be added) or a single name.
    seed : seeds the two ``human-shuffled`` permutations (the only random choice).
    entropy_tol : tolerance (nats) of the temperature fit on the mean entropy (float64).
    teacher_floor : teacher probabilities are clipped below at this before the logarithm.
    own_teacher_probs : like ``teacher_probs``, the cross-fitted probabilities of teachers trained
        on the student's own training items only; required for ``synthetic-own-data``.

    ε and T are fitted on the annotated items given (see the module docstring for the formulas).
    To keep held-out labels out of training targets, pass the *training* items of a fold only
    (``softlab.experiment`` does): nothing here looks at any other item.
    """
    names = _condition_list(conditions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")

    off = check_labels(official, "official")
    n_items = len(off)
    if n_items == 0:
        raise ValueError("official: empty; expected one label per item of the split")
    items = check_labels(annotated_items, "annotated_items", what="item indices")
    if len(items) == 0:
        raise ValueError("annotated_items: no annotated items; expected at least one human-labelled item")
    bad = (items < 0) | (items >= n_items)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"annotated_items: entry {k} is {items[k]}, outside 0..{n_items - 1} (len(official) = {n_items})"
        )
    uniq, counts_per = np.unique(items, return_counts=True)
    if (counts_per > 1).any():
        raise ValueError(f"annotated_items: item {int(uniq[counts_per > 1][0])} is listed more than once")

    h, votes = _human_distribution(human, len(items), human_kind)
    n_classes = h.shape[1]
    off = check_labels(off, "official", n_classes)
    y = off[items]
    m = human_mode(h, y)

    def teacher_rows(probs: np.ndarray | None, name: str, shape: str) -> np.ndarray | None:
        if probs is None:
            wanted = [n for n in names if parse_condition(n)[1] == shape]
            if wanted:
                raise ValueError(f"{name}: required for the {shape!r} shape (requested {wanted}); got None")
            return None
        t = np.asarray(probs)
        if t.ndim != 2 or t.shape[1] != n_classes or t.shape[0] not in (n_items, len(items)):
            raise ValueError(
                f"{name}: expected shape ({n_items}, {n_classes}) (all items) or "
                f"({len(items)}, {n_classes}) (annotated items), got {t.shape}"
            )
        where = name if t.shape[0] != n_items else f"{name} (rows of annotated_items)"
        return check_probability_rows(t[items] if t.shape[0] == n_items else t, where)

    teacher = teacher_rows(teacher_probs, "teacher_probs", "synthetic")
    own_teacher = teacher_rows(own_teacher_probs, "own_teacher_probs", "synthetic-own-data")

    human_h = entropy(h)
    epsilon = fit_smoothing_epsilon_entropy(h)
    epsilon_mass = fit_smoothing_epsilon(h)
    temperature, gap = (np.nan, np.nan)
    if teacher is not None:
        temperature, gap = fit_temperature(teacher, float(human_h.mean()), tol=entropy_tol, floor=teacher_floor)
    own_temperature, own_gap = (np.nan, np.nan)
    if own_teacher is not None:
        own_temperature, own_gap = fit_temperature(
            own_teacher, float(human_h.mean()), tol=entropy_tol, floor=teacher_floor
        )
    # two independent permutations: within official-label groups (original row), within
    # human-mode groups (human row)
    shuffled_y, source_y = shuffle_within_groups(h, y, np.random.SeedSequence([int(seed), 0]))
    shuffled_m, source_m = shuffle_within_groups(h, m, np.random.SeedSequence([int(seed), 1]))

    shapes: dict[tuple[str, str], np.ndarray] = {}

    def shape_of(shape: str, mode: str) -> np.ndarray:
        key = (shape, mode if shape == "human-shuffled" else "")
        if key not in shapes:
            if shape == "hard":
                shapes[key] = one_hot(y, n_classes)
            elif shape == "smooth":
                shapes[key] = smooth_shape(y, n_classes, epsilon)
            elif shape == "smooth-mass":
                shapes[key] = smooth_shape(y, n_classes, epsilon_mass)
            elif shape == "synthetic":
                assert teacher is not None  # checked above: synthetic needs teacher_probs
                shapes[key] = temper(teacher, temperature, teacher_floor)
            elif shape == "synthetic-own-data":
                assert own_teacher is not None  # checked above
                shapes[key] = temper(own_teacher, own_temperature, teacher_floor)
            elif shape == "human-shuffled":
                shapes[key] = shuffled_y if mode == "original" else shuffled_m
            else:
                shapes[key] = h
        return shapes[key]

    base = one_hot(off, n_classes).astype(np.float32)
    targets: dict[str, np.ndarray] = {}
    for name in names:
        mode, shape = parse_condition(name)
        placed = place_mode(shape_of(shape, mode), y if mode == "original" else m)
        full = base.copy()
        full[items] = placed.astype(np.float32)
        full.setflags(write=False)
        targets[name] = full

    table = pd.DataFrame({"official": off, "annotated": np.zeros(n_items, dtype=bool)})
    table.index.name = "item"
    table.loc[items, "annotated"] = True
    if votes is not None:
        col = np.full(n_items, np.nan)
        col[items] = votes
        table["votes"] = col
    col = np.full(n_items, np.nan)
    col[items] = human_h
    table["human_entropy"] = col
    table["human_mode"] = pd.array([pd.NA] * n_items, dtype="Int64")
    table.loc[items, "human_mode"] = m
    shifted = np.zeros(n_items, dtype=bool)
    shifted[items] = m != y
    table["mode_shifted"] = shifted
    table["shuffled_from"] = pd.array([pd.NA] * n_items, dtype="Int64")
    table.loc[items, "shuffled_from"] = items[source_m]
    table["shuffled_from_official_group"] = pd.array([pd.NA] * n_items, dtype="Int64")
    table.loc[items, "shuffled_from_official_group"] = items[source_y]
    for name in names:
        table[f"target_entropy[{name}]"] = entropy(targets[name]) + 0.0  # + 0.0 turns -0.0 into 0.0

    fitted = {
        "smoothing_epsilon": epsilon,
        "smoothing_epsilon_mass": epsilon_mass,
        "synthetic_temperature": float(temperature),
        "synthetic_entropy_gap": float(gap),
        "own_data_temperature": float(own_temperature),
        "own_data_entropy_gap": float(own_gap),
        "human_mean_entropy": float(human_h.mean()),
        "human_mean_off_mode_mass": float(off_mode_mass(h).mean()),
        "human_frac_mode_shifted": float((m != y).mean()),
        "n_items": float(n_items),
        "n_annotated": float(len(items)),
        "n_classes": float(n_classes),
        "seed": float(seed),
    }
    return LabelConditions(names, targets, off, items, h, m, table, fitted)


def conditions_for_items(
    official: np.ndarray,
    annotated_items: np.ndarray,
    human: np.ndarray,
    teacher_probs: np.ndarray | None = None,
    conditions: str | Sequence[str] = CONDITIONS,
    seed: int = 0,
    **kwargs: object,
) -> dict[str, np.ndarray]:
    """Like :func:`build_conditions`, but return only the annotated rows: name → (n, C) float32,
    in ``annotated_items`` order."""
    built = build_conditions(official, annotated_items, human, teacher_probs, conditions, seed, **kwargs)  # type: ignore[arg-type]
    return {name: built.annotated(name) for name in built.conditions}
