"""A votes table as the human reference of a known image split, and its agreement summary.

A **votes table** is the long format of :mod:`softlab.data.annotations` (one row per answer:
``item, annotator, label[, weight]``), as ``softlab annotate export`` writes it; ``item`` is the
position of the image in the split (``item = i`` means ``load_images(dataset, split).images[i]``).
Extra export columns are kept but not used, except ``is_attention_check``: attention-check rows
are left out unless ``include_attention=True``.

:func:`load_votes` turns a table into :class:`~softlab.data.human.HumanLabels` (like the public
sources of :func:`~softlab.data.load_human`): the sorted item positions, the (weighted) count
matrix ``items × classes`` and the official labels of those items. Item ids outside the split
are rejected with an error that names the file, the split and the unknown ids.

:func:`agreement` summarises who voted how often and how much they agree:

- **votes per item**: the distribution of the number of answers per item (unweighted);
- **Krippendorff's alpha** (nominal), ``α = 1 − D_o / D_e`` with the observed disagreement
  ``D_o = (1/n) Σ_{c≠k} o_ck`` from the coincidence matrix ``o_ck = Σ_u (pairs (c, k) in unit u) /
  (m_u − 1)`` and the expected ``D_e = (1/(n(n−1))) Σ_{c≠k} n_c n_k`` (``n`` pairable values,
  ``n_c`` of value ``c``). It is defined for any number of votes per item; items with a single
  vote are unpairable and do not count. Computed by the ``krippendorff`` package.
- **Fleiss' kappa** ``κ = (P̄ − P_e) / (1 − P_e)`` with per-item agreement
  ``P_i = (Σ_c n_ic² − n_i) / (n_i (n_i − 1))``, ``P̄`` their mean and ``P_e = Σ_c p_c²`` from the
  pooled class proportions ``p_c = Σ_i n_ic / Σ_i n_i`` (:func:`softlab.data.fleiss_kappa`).
  Fleiss (1971) assumes the same number of votes per item; with unequal numbers each item's
  ``P_i`` uses its own ``n_i`` and ``p_c`` pools all votes (the usual extension, identical to
  Fleiss' formula when the numbers are equal); items with fewer than two votes are left out.
  ``equal_votes`` says which case holds; alpha is the figure to prefer when they are unequal.

Both agreement figures count answers, not weights: each answer is one vote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from softlab.data.annotations import (
    AnnotationError,
    fleiss_kappa,
    read_annotations,
    to_counts,
    validate_annotations,
)
from softlab.data.human import HumanLabels
from softlab.data.images import load_images
from softlab.data.imageset import ImageSet

__all__ = ["AgreementSummary", "agreement", "krippendorff_alpha", "load_votes", "read_votes"]


def _split_images(dataset: str, split: str) -> ImageSet:
    return load_images(dataset, split)


def _show_ids(ids: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def _check_images_match(df: pd.DataFrame, where: str, dataset: str, split: str) -> None:
    """An export names the split its items index (``dataset``, ``split`` columns); pairing it
    with other images (a Fashion-MNIST study read as MNIST votes) is refused."""
    for col, want in (("dataset", dataset), ("split", split)):
        if col not in df.columns or len(df) == 0:
            continue
        values = df[col].astype(str)
        bad = (values != want).to_numpy(dtype=bool)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise AnnotationError(
                f"{where}: row {r}, column {col!r}: the answers are about {col} {values.iloc[r]!r}, but they are "
                f"being paired with the images of {dataset}/{split}; set the arm's images to {values.iloc[r]!r}"
                if col == "dataset"
                else f"{where}: row {r}, column 'split': the answers index split {values.iloc[r]!r}, not {split!r}"
            )


def read_votes(
    path: str | os.PathLike[str],
    dataset: str,
    split: str,
    *,
    duplicates: str = "reject",
    include_attention: bool = False,
    n_items: int | None = None,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """Read and validate a votes table for ``dataset``/``split``; returns the clean long table.

    ``n_items`` (split size) and ``n_classes`` default to those of ``load_images(dataset, split)``.
    Raises :class:`~softlab.data.AnnotationError` naming the file for unknown items (ids outside
    ``0 … n_items − 1``, all listed), bad labels, missing columns and duplicate answers
    (``duplicates``: ``"reject"``, ``"keep-first"`` or ``"keep-last"``, e.g. for exports of
    studies with re-annotation).
    """
    path = Path(path)
    if n_items is None or n_classes is None:
        images = _split_images(dataset, split)
        n_items = len(images) if n_items is None else n_items
        n_classes = len(images.classes) if n_classes is None else n_classes
    df = read_annotations(path)
    where = str(path)
    _check_images_match(df, where, dataset, split)
    if "is_attention_check" in df.columns and not include_attention:
        att = df["is_attention_check"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        df = df.loc[~att].reset_index(drop=True)
        df.attrs["source"] = where
        if len(df) == 0:
            raise AnnotationError(
                f"{where}: only attention-check answers; no votes to use (include_attention=True keeps them)"
            )
    if "item" in df.columns:
        ids = pd.to_numeric(df["item"], errors="coerce").to_numpy(dtype=np.float64)
        outside = np.isfinite(ids) & (ids == np.round(ids)) & ((ids < 0) | (ids >= n_items))
        if outside.any():
            unknown = np.unique(ids[outside].astype(np.int64))
            raise AnnotationError(
                f"{where}: {len(unknown)} unknown item id(s) outside {dataset}/{split} (valid ids 0..{n_items - 1}): "
                f"{_show_ids(unknown)}; first at row {int(np.flatnonzero(outside)[0])}"
            )
    return validate_annotations(df, n_classes, duplicates=duplicates, source=where)


def load_votes(
    path: str | os.PathLike[str],
    dataset: str,
    split: str,
    *,
    duplicates: str = "reject",
    include_attention: bool = False,
) -> HumanLabels:
    """A votes table as the human reference of ``dataset``/``split``.

    Returns :class:`HumanLabels` with ``source`` = the file, ``items`` = the sorted positions
    of the voted items in the split (int64), ``counts`` = their (weighted) vote counts
    (items × classes, float64; ``.soft()`` normalises them), ``classes`` and ``official`` = the
    split's class names and the official labels of those items. See :func:`read_votes` for the
    checks.
    """
    images = _split_images(dataset, split)
    table = read_votes(
        path,
        dataset,
        split,
        duplicates=duplicates,
        include_attention=include_attention,
        n_items=len(images),
        n_classes=len(images.classes),
    )
    items, counts = to_counts(table, len(images.classes), source=str(path))
    return HumanLabels(str(path), dataset, split, items, counts, tuple(images.classes), images.labels[items].copy())


def krippendorff_alpha(counts: np.ndarray) -> float:
    """Krippendorff's alpha (nominal) of an integer count matrix (items × classes); NaN when it is
    undefined (fewer than one item with two votes, or a single class among the pairable votes)."""
    import krippendorff

    c = np.asarray(counts, dtype=np.float64)
    pairable = c[c.sum(axis=1) >= 2]
    if len(pairable) == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return float("nan")
    return float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


@dataclass(frozen=True)
class AgreementSummary:
    """How many votes each item got and how much the annotators agree (see the module docstring).

    ``votes_per_item``: Series, index = number of answers, value = number of items with it.
    ``krippendorff_alpha``, ``fleiss_kappa``: NaN where undefined. ``pairable_items``: items with
    at least two answers (the only ones either figure uses). ``equal_votes``: every item has
    the same number of answers (then ``fleiss_kappa`` is exactly Fleiss' 1971 kappa).
    """

    n_items: int
    n_annotators: int | None
    n_answers: int
    votes_per_item: pd.Series
    pairable_items: int
    equal_votes: bool
    krippendorff_alpha: float
    fleiss_kappa: float

    def as_frame(self) -> pd.DataFrame:
        """One row for a table in the book."""
        v = np.repeat(self.votes_per_item.index.to_numpy(), self.votes_per_item.to_numpy())
        return pd.DataFrame(
            [
                {
                    "items": self.n_items,
                    "annotators": self.n_annotators,
                    "answers": self.n_answers,
                    "votes_min": int(v.min()),
                    "votes_median": float(np.median(v)),
                    "votes_mean": float(v.mean()),
                    "votes_max": int(v.max()),
                    "items_with_2plus_votes": self.pairable_items,
                    "equal_votes": self.equal_votes,
                    "krippendorff_alpha": self.krippendorff_alpha,
                    "fleiss_kappa": self.fleiss_kappa,
                }
            ]
        )


def agreement(votes: pd.DataFrame | np.ndarray | HumanLabels, n_classes: int | None = None) -> AgreementSummary:
    """Agreement summary of a validated long table (preferred: it knows the annotators), or of a
    count matrix / :class:`HumanLabels` with integer counts (annotators then unknown: ``None``).

    Every answer counts as one vote (weights are ignored). Non-integer counts (e.g. MNIST-MTurk's
    spread *neither* votes) are rejected: agreement needs whole votes.
    """
    n_annotators: int | None = None
    if isinstance(votes, pd.DataFrame):
        for col in ("item", "label"):
            if col not in votes.columns:
                raise AnnotationError(f"agreement: the table has no column {col!r}; validate it first (read_votes)")
        k = int(n_classes) if n_classes is not None else int(votes["label"].max()) + 1
        unweighted = votes.drop(columns=["weight"], errors="ignore")
        _, counts = to_counts(unweighted, k)
        if "annotator" in votes.columns:
            n_annotators = int(votes["annotator"].nunique())
    else:
        counts = np.asarray(votes.counts if isinstance(votes, HumanLabels) else votes, dtype=np.float64)
        if counts.ndim != 2 or (counts != np.round(counts)).any() or (counts < 0).any():
            raise AnnotationError("agreement: expected a matrix of whole, non-negative vote counts (items × classes)")
    per_item = counts.sum(axis=1).astype(np.int64)
    dist = pd.Series(per_item).value_counts().sort_index()
    dist.index.name, dist.name = "votes", "items"
    pairable = int((per_item >= 2).sum())
    alpha = krippendorff_alpha(counts)
    # both figures are 0/0 when the pairable votes use a single class; say so with NaN for both
    kappa = fleiss_kappa(counts) if np.isfinite(alpha) else float("nan")
    return AgreementSummary(
        n_items=len(counts),
        n_annotators=n_annotators,
        n_answers=int(per_item.sum()),
        votes_per_item=dist,
        pairable_items=pairable,
        equal_votes=bool(len(dist) == 1),
        krippendorff_alpha=alpha,
        fleiss_kappa=float(kappa),
    )
