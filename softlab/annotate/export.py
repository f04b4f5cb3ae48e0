"""Export a study's answers as the long-format annotation table that :mod:`softlab.data` reads.

Columns (one row per stored answer, sorted by item, annotator, attempt):

- ``item`` (int64): index into the dataset split named in ``study.json``;
- ``annotator`` (str), ``label`` (int64 class index), ``weight`` (float64, always 1.0);
- ``second_label`` (nullable Int64), ``confidence`` (nullable Int64, on the study's scale);
- ``timestamp`` (ISO 8601 UTC, when the server stored the answer), ``response_ms`` (float64,
  milliseconds from the image being shown to the answer, measured client-side);
- ``is_attention_check`` (bool), ``attempt`` (int64; > 1 only with re-annotation);
- ``dataset``, ``split`` (str): the image split the items index (``study.json``'s), so that a
  votes arm refuses an export paired with other images (:func:`softlab.data.read_votes`).

Attention-check answers are left out of the main table unless ``include_attention`` and are
summarised per annotator by :func:`attention_report`.

Files are written with :func:`softlab.data.annotations.write_annotations`, so
:func:`softlab.data.read_annotations` reads an export back to exactly the exported table
(annotator ids such as ``001``, ``NA`` or ``TRUE`` stay text). In CSV, a text cell that starts
with ``= + - @``, TAB, CR or ``'`` is written with one extra leading ``'`` (CSV injection: a
spreadsheet then shows it as text instead of evaluating it); ``read_annotations`` removes
exactly that quote. An existing file is never replaced unless ``overwrite=True``
(``softlab annotate export --force``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from softlab.annotate.db import AnnotationDB
from softlab.annotate.study import StudyError, open_study
from softlab.data.annotations import text_series, write_annotations

EXPORT_COLUMNS = (
    "item",
    "annotator",
    "label",
    "weight",
    "second_label",
    "confidence",
    "timestamp",
    "response_ms",
    "is_attention_check",
    "attempt",
    "dataset",
    "split",
)
REPORT_COLUMNS = ("annotator", "n_answers", "n_attention", "n_attention_correct", "attention_accuracy")


def all_answers(study_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every stored answer (main and attention-check) with the export columns."""
    study = open_study(study_dir)
    with AnnotationDB(study.db_path, study.study_id, study.settings.allow_reannotation) as db:
        rows = db.answers()
    df = pd.DataFrame(
        {
            "item": np.array([r.item for r in rows], dtype=np.int64),
            "annotator": text_series(r.annotator for r in rows),
            "label": np.array([r.label for r in rows], dtype=np.int64),
            "weight": np.ones(len(rows), dtype=np.float64),
            "second_label": pd.array([r.second_label for r in rows], dtype="Int64"),
            "confidence": pd.array([r.confidence for r in rows], dtype="Int64"),
            "timestamp": text_series(r.timestamp for r in rows),
            "response_ms": np.array([r.response_ms for r in rows], dtype=np.float64),
            "is_attention_check": np.array([r.is_attention_check for r in rows], dtype=bool),
            "attempt": np.array([r.attempt for r in rows], dtype=np.int64),
            "dataset": text_series(study.dataset for _ in rows),
            "split": text_series(study.split for _ in rows),
        }
    )
    return df[list(EXPORT_COLUMNS)]


def annotation_table(study_dir: str | os.PathLike[str], include_attention: bool = False) -> pd.DataFrame:
    """The long-format table (see module docstring); attention checks excluded by default."""
    df = all_answers(study_dir)
    if not include_attention:
        df = df[~df["is_attention_check"]]
    return df.reset_index(drop=True)


def attention_report(study_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Per annotator: main answers, attention checks answered, correct ones and their fraction.

    An attention answer is correct when its ``label`` equals the item's official label (first
    attempt only, when re-annotation is on). ``attention_accuracy`` is NaN with no checks answered.
    """
    study = open_study(study_dir)
    df = all_answers(study_dir)
    truth = dict(zip(study.attention_items, study.attention_labels))
    out = []
    for annotator, g in df.groupby("annotator", sort=True):
        att = g[g["is_attention_check"] & (g["attempt"] == 1)]
        correct = int(sum(int(lab) == truth.get(int(i), -1) for i, lab in zip(att["item"], att["label"])))
        n_att = len(att)
        out.append(
            {
                "annotator": str(annotator),
                "n_answers": int((~g["is_attention_check"]).sum()),
                "n_attention": n_att,
                "n_attention_correct": correct,
                "attention_accuracy": correct / n_att if n_att else float("nan"),
            }
        )
    return pd.DataFrame(out, columns=list(REPORT_COLUMNS))


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise StudyError(f"--out: expected a .csv or .parquet file name, got {out}")


def _write_table(df: pd.DataFrame, out: Path) -> Path:
    _check_out(out)
    return write_annotations(df, out)


def attention_report_path(out: str | os.PathLike[str]) -> Path:
    """Where the attention report goes beside an export: ``answers.csv`` → ``answers.attention.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.attention{out.suffix}")


def export_annotations(
    study_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    include_attention: bool = False,
    overwrite: bool = False,
) -> tuple[Path, Path | None]:
    """Write the long-format table to ``out`` (.csv or .parquet, atomically); when the study has
    attention checks also write :func:`attention_report` to :func:`attention_report_path`.
    Returns both paths (the second is None without attention checks).

    Refuses (``StudyError``, nothing written) when ``out`` or the report file already exists,
    unless ``overwrite``.
    """
    out = Path(out)
    _check_out(out)
    study = open_study(study_dir)
    report_path = attention_report_path(out) if study.attention_items else None
    if not overwrite:
        existing = [str(p) for p in (out, report_path) if p is not None and (p.exists() or p.is_symlink())]
        if existing:
            raise StudyError(
                f"--out: {' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                "choose another file name or pass --force to replace"
            )
    for p in (out, report_path):
        if p is not None and p.is_dir():
            raise StudyError(f"--out: {p} is a folder; expected a file name")
    table = annotation_table(study_dir, include_attention=include_attention)
    _write_table(table, out)
    if report_path is not None:
        _write_table(attention_report(study_dir), report_path)
    return out, report_path
