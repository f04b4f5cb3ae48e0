"""Human annotations: one long-format table, count matrices, and aggregation.

The **long format** has one row per answer::

    item (int, index into the dataset split) | annotator (str; may be anonymous) | label (int class) | weight (optional, > 0)

A **count matrix** has one row per item and one column per class; entry ``[i, c]`` is the
(weighted) number of votes for class ``c`` on item ``i``. A **soft label** is a row of counts
normalised to sum to one (optionally with additive smoothing). The number of votes per item is
kept alongside, since it decides how noisy a soft label is.

Entropy is in nats (natural logarithm) with ``0 · log 0 = 0``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("item", "annotator", "label")


def _show(value: object) -> str:
    """A value as a reader would write it (numpy scalars as plain Python)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


class AnnotationError(ValueError):
    """Raised for annotation input that does not follow the long format or count rules."""


# --------------------------------------------------------------------------- counts

def validate_counts(counts: np.ndarray, name: str = "counts", integer: bool = True) -> np.ndarray:
    """Check a count matrix (items × classes): finite, non-negative, ≥1 vote per row, and
    integer-valued unless ``integer=False`` (mapping rules such as MTurk's *neither* spread votes).

    Returns it as float64. Errors name the first offending row and column.
    """
    arr = np.asarray(counts)
    if arr.ndim != 2:
        raise AnnotationError(f"{name}: expected a 2-D array (items × classes), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise AnnotationError(f"{name}: empty count matrix (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number):
        raise AnnotationError(f"{name}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    checks = (
        (~np.isfinite(arr), "is NaN or infinite"),
        (arr < 0, "is negative"),
        (np.isfinite(arr) & (arr != np.round(arr)) & integer, "is not an integer count"),
    )
    for bad, what in checks:
        if bad.any():
            r, c = map(int, np.argwhere(bad)[0])
            raise AnnotationError(f"{name}: row {r}, column {c}: value {_show(arr[r, c])} {what}; expected a non-negative integer count")
    empty = arr.sum(axis=1) == 0
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise AnnotationError(f"{name}: row {r} has no votes; every item needs at least one vote")
    return arr


def votes_per_item(counts: np.ndarray) -> np.ndarray:
    """Total (weighted) votes per item."""
    return np.asarray(counts, dtype=np.float64).sum(axis=-1)


def soft_labels(counts: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Normalised counts: ``(n_ic + alpha) / (n_i + C·alpha)``; ``alpha`` is additive smoothing."""
    if alpha < 0:
        raise AnnotationError(f"alpha: expected a non-negative smoothing constant, got {alpha}")
    c = np.asarray(counts, dtype=np.float64) + alpha
    total = c.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise AnnotationError("soft_labels: an item has no votes (and alpha = 0)")
    return c / total


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, ``-Σ p log p`` with ``0 · log 0 = 0``."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=axis)


def human_mode(counts: np.ndarray, official: np.ndarray | None = None) -> np.ndarray:
    """Argmax of each row; ties go to the official label when it is among the tied maxima,
    otherwise to the lowest class index."""
    c = np.asarray(counts, dtype=np.float64)
    mode = c.argmax(axis=-1)
    if official is not None:
        off = np.asarray(official, dtype=np.int64)
        try:
            off = np.broadcast_to(off, mode.shape)
        except ValueError:
            raise AnnotationError(f"official: expected shape {mode.shape} (or broadcastable), got {off.shape}") from None
        if off.size and (off.min() < 0 or off.max() >= c.shape[-1]):
            raise AnnotationError(f"official: labels must be in [0, {c.shape[-1] - 1}]")
        top = c.max(axis=-1)
        off_is_top = np.take_along_axis(c, off[..., None], axis=-1)[..., 0] == top
        mode = np.where(off_is_top, off, mode)
    return mode.astype(np.int64)


def majority(counts: np.ndarray, tie_break: str = "lowest", official: np.ndarray | None = None,
             seed: int = 0) -> np.ndarray:
    """Majority label with a stated tie rule: ``lowest`` class index, ``official`` label
    (when tied; else lowest), or ``random`` (seeded)."""
    c = np.asarray(counts, dtype=np.float64)
    if tie_break == "lowest":
        return c.argmax(axis=-1).astype(np.int64)
    if tie_break == "official":
        if official is None:
            raise AnnotationError("tie_break='official' needs the official labels")
        return human_mode(c, official)
    if tie_break == "random":
        rng = np.random.default_rng(seed)
        noise = rng.random(c.shape)
        top = c == c.max(axis=-1, keepdims=True)
        return np.where(top, noise, -1.0).argmax(axis=-1).astype(np.int64)
    raise AnnotationError(f"tie_break: expected 'lowest', 'official' or 'random', got {tie_break!r}")


def mode_shifted(counts: np.ndarray, official: np.ndarray) -> np.ndarray:
    """True where the human mode (ties towards official) differs from the official label."""
    return human_mode(counts, official) != np.asarray(official, dtype=np.int64)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for a count matrix (items may have different numbers of raters;
    items with fewer than two votes are ignored). 1 = perfect agreement, 0 = chance."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=1)
    keep = n >= 2
    c, n = c[keep], n[keep]
    if len(n) == 0:
        raise AnnotationError("fleiss_kappa: needs items with at least two votes")
    p_i = (np.square(c).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_j = c.sum(axis=0) / n.sum()
    p_e = np.square(p_j).sum()
    if p_e == 1.0:
        return 1.0
    return float((p_bar - p_e) / (1 - p_e))


# --------------------------------------------------------------------------- long table

def read_annotations(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a long-format annotation table from CSV or Parquet (not yet validated)."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        raise AnnotationError(f"{path}: expected a .csv or .parquet file")
    df.attrs["source"] = str(path)
    return df


def validate_annotations(
    df: pd.DataFrame,
    n_classes: int,
    items: Sequence[int] | np.ndarray | None = None,
    duplicates: str = "reject",
    source: str | None = None,
) -> pd.DataFrame:
    """Validate a long-format table and return a clean copy with typed columns.

    - required columns ``item, annotator, label``; optional ``weight`` (> 0, finite);
    - no missing values in required columns; ``label`` an integer in ``[0, n_classes)``;
    - ``item`` an integer among ``items`` when given (unknown items are rejected);
    - duplicate (annotator, item) pairs: ``duplicates="reject"`` (default) raises,
      ``"keep-first"`` / ``"keep-last"`` keep one answer.

    Errors name the source, the (0-based data) row and the column.
    """
    where = source or df.attrs.get("source", "annotations")
    if len(df) == 0:
        raise AnnotationError(f"{where}: empty annotation table; expected at least one row")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise AnnotationError(f"{where}: missing column(s) {missing}; expected columns {list(REQUIRED_COLUMNS)} (+ optional 'weight')")
    out = df.copy()
    for col in (*REQUIRED_COLUMNS, *(["weight"] if "weight" in df.columns else [])):
        na = out[col].isna().to_numpy()
        if na.any():
            raise AnnotationError(f"{where}: row {int(np.flatnonzero(na)[0])}, column '{col}': missing value (NaN)")
    for col in ("item", "label"):
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise AnnotationError(f"{where}: row {r}, column '{col}': {_show(out[col].iloc[r])} is not an integer")
        out[col] = values.astype(np.int64)
    lab = out["label"].to_numpy()
    bad = (lab < 0) | (lab >= n_classes)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise AnnotationError(f"{where}: row {r}, column 'label': {lab[r]} is outside the class set 0..{n_classes - 1}")
    if items is not None:
        known = np.asarray(items, dtype=np.int64)
        bad = ~np.isin(out["item"].to_numpy(), known)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise AnnotationError(f"{where}: row {r}, column 'item': unknown item {out['item'].iloc[r]}")
    elif (out["item"].to_numpy() < 0).any():
        r = int(np.flatnonzero(out["item"].to_numpy() < 0)[0])
        raise AnnotationError(f"{where}: row {r}, column 'item': negative item id")
    out["annotator"] = out["annotator"].astype(str)
    if "weight" in out.columns:
        w = pd.to_numeric(out["weight"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(w) | (w <= 0)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise AnnotationError(f"{where}: row {r}, column 'weight': {_show(out['weight'].iloc[r])}; expected a positive finite number")
        out["weight"] = w
    dup = out.duplicated(subset=["annotator", "item"], keep=False).to_numpy()
    if dup.any():
        if duplicates == "reject":
            rows = np.flatnonzero(dup)[:2]
            r = int(rows[0])
            raise AnnotationError(
                f"{where}: rows {', '.join(map(str, rows))}: annotator {out['annotator'].iloc[r]!r} answered item "
                f"{out['item'].iloc[r]} more than once (duplicates='reject'; use 'keep-first' or 'keep-last')")
        if duplicates not in ("keep-first", "keep-last"):
            raise AnnotationError(f"duplicates: expected 'reject', 'keep-first' or 'keep-last', got {duplicates!r}")
        out = out.drop_duplicates(subset=["annotator", "item"], keep=duplicates.split("-")[1])
    return out.reset_index(drop=True)


def to_counts(df: pd.DataFrame, n_classes: int, items: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Long table → (item ids, count matrix). Uses ``weight`` when present.

    ``items`` fixes the row order (items without answers are rejected); by default the sorted
    distinct items of the table.
    """
    ids = np.asarray(items, dtype=np.int64) if items is not None else np.unique(df["item"].to_numpy(np.int64))
    pos = {int(i): k for k, i in enumerate(ids)}
    counts = np.zeros((len(ids), n_classes), dtype=np.float64)
    w = df["weight"].to_numpy(np.float64) if "weight" in df.columns else np.ones(len(df))
    rows = np.array([pos.get(int(i), -1) for i in df["item"].to_numpy()], dtype=np.int64)
    if (rows < 0).any():
        r = int(np.flatnonzero(rows < 0)[0])
        raise AnnotationError(f"row {r}, column 'item': item {df['item'].iloc[r]} is not in the requested items")
    np.add.at(counts, (rows, df["label"].to_numpy(np.int64)), w)
    empty = counts.sum(axis=1) == 0
    if empty.any():
        raise AnnotationError(f"item {int(ids[np.flatnonzero(empty)[0]])} has no answers")
    return ids, counts


def from_counts(counts: np.ndarray, items: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
    """Count matrix → long table with anonymous annotators (``anon-<k>`` within each item).

    Integer counts expand to one row per vote, so ``to_counts(from_counts(c)) == c``.
    """
    c = validate_counts(counts).astype(np.int64)
    ids = np.arange(len(c)) if items is None else np.asarray(items, dtype=np.int64)
    item_idx, label = np.nonzero(c)
    reps = c[item_idx, label]
    item_col = np.repeat(ids[item_idx], reps)
    label_col = np.repeat(label, reps)
    df = pd.DataFrame({"item": item_col, "label": label_col})
    df["annotator"] = "anon-" + df.groupby("item").cumcount().astype(str)
    return df[["item", "annotator", "label"]].sort_values(["item", "annotator"], kind="stable").reset_index(drop=True)


def summarise(counts: np.ndarray, official: np.ndarray | None = None) -> pd.DataFrame:
    """Per-item table: votes, entropy (nats), human mode, mode-shift flag (if official given)."""
    c = validate_counts(counts, integer=False)
    out = pd.DataFrame({"votes": votes_per_item(c), "entropy": entropy(soft_labels(c))})
    out["human_mode"] = human_mode(c, official)
    if official is not None:
        out["official"] = np.asarray(official, dtype=np.int64)
        out["mode_shifted"] = out["human_mode"] != out["official"]
    return out
