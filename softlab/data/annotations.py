"""Human annotations: one long-format table, count matrices, and aggregation.

The **long format** has one row per answer::

    item (int, index into the dataset split) | annotator (str; may be anonymous)
        | label (int class) | weight (optional, > 0)

A **count matrix** has one row per item and one column per class; entry ``[i, c]`` is the
(weighted) number of votes for class ``c`` on item ``i``. A **soft label** is a row of counts
normalised to sum to one (optionally with additive smoothing). The number of votes per item is
kept alongside, since it decides how noisy a soft label is.

Entropy is in nats (natural logarithm) with ``0 · log 0 = 0``.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from softlab.validation import check_labels, check_nonnegative

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
    arr = check_nonnegative(arr, name, what="vote count", error=AnnotationError)
    fractional = arr != np.round(arr)
    if integer and fractional.any():
        r, c = map(int, np.argwhere(fractional)[0])
        raise AnnotationError(f"{name}: row {r}, column {c}: {_show(arr[r, c])} is not an integer vote count")
    empty = arr.sum(axis=1) == 0
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise AnnotationError(f"{name}: row {r} has no votes; every item needs at least one vote")
    return arr


def votes_per_item(counts: np.ndarray) -> np.ndarray:
    """Total (weighted) votes per item."""
    return np.asarray(counts, dtype=np.float64).sum(axis=-1)


def soft_labels(counts: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Normalised counts: ``(n_ic + alpha) / (n_i + C·alpha)``; ``alpha`` is additive smoothing.

    ``counts`` are (weighted) vote counts along the last axis: finite and non-negative (a
    negative or NaN "count" would give a vector that is not a distribution); every item needs
    at least one vote unless ``alpha > 0``. Errors name the first offending row and column.
    """
    if (
        isinstance(alpha, (bool, np.bool_))
        or not isinstance(alpha, (int, float, np.integer, np.floating))
        or not math.isfinite(alpha)
        or alpha < 0
    ):
        raise AnnotationError(f"alpha: expected a finite non-negative smoothing constant, got {alpha!r}")
    c = check_nonnegative(counts, "soft_labels", what="vote count", error=AnnotationError)
    c = c + alpha
    total = c.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise AnnotationError("soft_labels: an item has no votes (and alpha = 0)")
    return c / total


def entropy(p: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """Shannon entropy in nats, ``-Σ p log p`` with ``0 · log 0 = 0``."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=axis)


def human_mode(counts: ArrayLike, official: ArrayLike | None = None) -> NDArray[np.int64]:
    """Argmax of each row; ties go to the official label when it is among the tied maxima,
    otherwise to the lowest class index. ``official`` has one label per row (or broadcasts)."""
    c = np.asarray(counts, dtype=np.float64)
    mode = c.argmax(axis=-1)
    if official is not None:
        off = check_labels(official, "official", c.shape[-1], ndim=None, error=AnnotationError)
        try:
            off = np.broadcast_to(off, mode.shape)
        except ValueError:
            raise AnnotationError(
                f"official: expected shape {mode.shape} (or broadcastable), got {off.shape}"
            ) from None
        top = c.max(axis=-1)
        off_is_top = np.take_along_axis(c, off[..., None], axis=-1)[..., 0] == top
        mode = np.where(off_is_top, off, mode)
    return mode.astype(np.int64)


def majority(
    counts: np.ndarray, tie_break: str = "lowest", official: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
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


def mode_shifted(counts: ArrayLike, official: ArrayLike) -> NDArray[np.bool_]:
    """True where the human mode (:func:`softlab.data.annotations.human_mode`, ties towards
    official) differs from the official label. ``counts`` (items × classes) are votes or
    distributions; ``official`` has one integer label per item."""
    if official is None:
        raise AnnotationError("official: mode shifts need the official labels, got None")
    c = np.asarray(counts, dtype=np.float64)
    off = check_labels(official, "official", c.shape[-1], ndim=None, error=AnnotationError)
    if off.shape != c.shape[:-1]:
        raise AnnotationError(f"official: expected integer labels shaped {c.shape[:-1]}, got {off.shape}")
    return human_mode(c, off) != off


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


# --------------------------------------------------------------------------- exact cell types

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_EXACT_INT = 2**53  # every integer of at most this magnitude is exactly a float64
DUPLICATE_POLICIES = ("reject", "keep-first", "keep-last")

#: Column types of the long format (and of the annotation app's export). ``read_annotations``
#: gives every column of these names exactly this type; other columns are read as text (CSV)
#: or as stored (Parquet). ``text`` is pandas' string dtype (``Series.astype(str)``).
COLUMN_TYPES: dict[str, str] = {
    "item": "int64",
    "annotator": "text",
    "label": "int64",
    "weight": "float64",
    "second_label": "Int64",
    "confidence": "Int64",
    "timestamp": "text",
    "response_ms": "float64",
    "is_attention_check": "bool",
    "attempt": "int64",
}
#: Columns where every row needs a value when the column is present (an empty cell is an error).
VALUE_REQUIRED = frozenset({"item", "annotator", "label", "weight", "is_attention_check", "attempt"})

#: CSV injection: a text cell starting with one of these is written with one extra leading ``'``
#: (spreadsheets then show it as text instead of evaluating it); see :func:`escape_csv_text`.
CSV_ESCAPED_STARTS = frozenset("=+-@\t\r'")

_INT_TEXT = re.compile(r"^[+-]?[0-9]{1,30}$")
_LONG_INT_TEXT = re.compile(r"^[+-]?[0-9]{31,}$")
#: A number cell of a CSV as Python writes floats: ``2``, ``-0.5``, ``1e-300``, ``inf``, ``nan``
#: (ASCII only; ``float()`` alone would also read ``1_000`` and full-width digits).
_FLOAT_TEXT = re.compile(r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$", re.I | re.A)


class _CellError(Exception):
    """Why one cell does not have its column's type (turned into an AnnotationError naming the row)."""


def _is_missing(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, (float, np.floating)) and bool(np.isnan(v))


def _is_datetime(v: object) -> bool:
    return isinstance(v, (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64))


def _int_value(v: object) -> int:
    """One cell as an exact Python int (no float round trip), or :class:`_CellError`."""
    if isinstance(v, (bool, np.bool_)):
        raise _CellError(f"{_show(v)} is a boolean; expected an integer")
    if isinstance(v, (int, np.integer)):
        n = int(v)
    elif isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f) or f != math.floor(f):
            raise _CellError(f"{_show(v)} is not an integer")
        if abs(f) > FLOAT_EXACT_INT:
            raise _CellError(
                f"{_show(v)} is a float above 2**53, where floats cannot hold every integer "
                "exactly; store the column as integers"
            )
        n = int(f)
    elif isinstance(v, str):
        t = v.strip()
        if _INT_TEXT.match(t):
            n = int(t)
        elif _LONG_INT_TEXT.match(t):
            raise _CellError(f"{v!r} is too large for a 64-bit integer (above 2**63 - 1)")
        else:  # '1e3', '3.0', '0_3', '1_000', full-width digits: int()/Decimal() would read them
            shown = t if t == v and _FLOAT_TEXT.match(t) else repr(v)  # a number shown as such
            raise _CellError(f"{shown} is not an integer (expected ASCII digits only, e.g. 3)")
    elif _is_datetime(v):
        raise _CellError(f"{v!r} is a date/time; expected an integer")
    else:
        raise _CellError(f"{v!r} ({type(v).__name__}) is not an integer")
    if n > INT64_MAX:
        raise _CellError(f"{n} is too large for a 64-bit integer (above 2**63 - 1)")
    if n < INT64_MIN:
        raise _CellError(f"{n} is too small for a 64-bit integer (below -2**63)")
    return n


def _float_value(v: object) -> float:
    if isinstance(v, (bool, np.bool_)):
        raise _CellError(f"{_show(v)} is a boolean; expected a number")
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        if not _FLOAT_TEXT.match(v.strip()):
            raise _CellError(f"{v!r} is not a number (expected ASCII digits, e.g. 0.5 or 1e-3)")
        return float(v.strip())
    if _is_datetime(v):
        raise _CellError(f"{v!r} is a date/time; expected a number")
    raise _CellError(f"{v!r} ({type(v).__name__}) is not a number")


def _bool_value(v: object) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and v.strip() in ("True", "False", "true", "false"):
        return v.strip().lower() == "true"
    raise _CellError(f"{_show(v)} is not True or False")


def _text_value(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return str(int(v))
    raise _CellError(
        f"{_show(v)} ({type(v).__name__}) is not text; ids are text (read files with "
        "read_annotations, which keeps every id exactly as written)"
    )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _cell_error(where: str, row: int, col: str, what: str) -> AnnotationError:
    return AnnotationError(f"{where}: row {row}, column '{col}': {what}")


def _convert(
    values: pd.Series, col: str, where: str, to_value: Callable[[Any], object], required: bool, text: bool = False
) -> list[object]:
    """Convert cell by cell; NA, and empty text (unless ``text`` and not ``required``: then it
    is the empty string), are missing: an error where ``required``."""
    out: list[object] = []
    for r, v in enumerate(values.to_numpy(dtype=object)):
        if _is_missing(v) or (isinstance(v, str) and not v.strip() and (required or not text)):
            if required:
                raise _cell_error(where, r, col, "missing value (empty cell or NA)")
            out.append(None)
            continue
        try:
            out.append(to_value(v))
        except _CellError as exc:
            raise _cell_error(where, r, col, str(exc)) from None
    return out


def _reject_kind(values: pd.Series, col: str, where: str, expected: str) -> None:
    """Booleans and dates are not numbers here, whatever pandas would make of them."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        r = _first(values.notna().to_numpy()) if values.notna().any() else 0
        raise _cell_error(where, r, col, f"{_show(values.iloc[r])} is a boolean; expected {expected}")
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        raise _cell_error(where, 0, col, f"{values.iloc[0]!r} is a date/time ({dtype}); expected {expected}")


def _integer_values(values: pd.Series, col: str, where: str, nullable: bool) -> np.ndarray | list[object]:
    _reject_kind(values, col, where, "an integer")
    dtype = values.dtype
    if pd.api.types.is_integer_dtype(dtype) and not values.isna().any():
        arr = values.to_numpy()
        if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and (arr > np.uint64(INT64_MAX)).any():
            r = _first(arr > np.uint64(INT64_MAX))
            raise _cell_error(where, r, col, f"{int(arr[r])} is too large for a 64-bit integer (above 2**63 - 1)")
        return arr.astype(np.int64)
    if pd.api.types.is_float_dtype(dtype) and not nullable:
        na = np.isnan(values.to_numpy(dtype=np.float64))
        if na.any():
            raise _cell_error(where, _first(na), col, "missing value (empty cell or NA)")
    return _convert(values, col, where, _int_value, required=not nullable)


def integer_column(values: pd.Series, col: str, where: str = "annotations") -> np.ndarray:
    """A column as exact 64-bit integers (int64; a missing value is an error).

    Accepts integer dtypes, floats holding whole numbers of magnitude ≤ 2**53, and text of
    ASCII digits (``"12"``, ``"-3"``; never ``"12.0"``, ``"1e3"``, ``"1_000"`` or full-width
    digits, which are errors); integers are never passed through float64, so ids
    above 2**53 survive. Booleans, dates and values outside ``[-2**63, 2**63)`` are errors
    naming the row and column.
    """
    return np.asarray(_integer_values(values, col, where, nullable=False), dtype=np.int64)


def nullable_integer_column(
    values: pd.Series, col: str, where: str = "annotations"
) -> pd.api.extensions.ExtensionArray:
    """Like :func:`integer_column`, but missing values become ``<NA>`` (pandas ``Int64``)."""
    ints = _integer_values(values, col, where, nullable=True)
    return pd.array(list(ints) if isinstance(ints, list) else ints, dtype="Int64")  # type: ignore[call-overload]


def float_column(values: pd.Series, col: str, where: str = "annotations", required: bool = True) -> np.ndarray:
    """A column as float64 (booleans and dates are errors; missing values are errors where ``required``)."""
    _reject_kind(values, col, where, "a number")
    if pd.api.types.is_numeric_dtype(values.dtype) and not values.isna().any():
        return values.to_numpy(dtype=np.float64)
    return np.array(
        [np.nan if v is None else v for v in _convert(values, col, where, _float_value, required)], dtype=np.float64
    )


def text_series(values: object) -> pd.Series:
    """Text values as the string column the app exports and ``read_annotations`` returns."""
    return pd.Series(list(values), dtype=object).astype(str)  # type: ignore[arg-type,call-overload]


def text_column(
    values: pd.Series, col: str, where: str = "annotations", required: bool = True, unescape: bool = False
) -> pd.Series:
    """A column as text: strings exactly as given (integers become their decimal text);
    floats, booleans and dates are errors (a float id has already lost e.g. leading zeros).
    ``unescape`` undoes :func:`escape_csv_text`. Empty or whitespace-only text is missing."""
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_float_dtype(values.dtype):
        ok = values.notna().to_numpy()
        r = _first(ok) if ok.any() else 0
        if required and not ok.all():
            raise _cell_error(where, _first(~ok), col, "missing value (empty cell or NA)")
        raise _cell_error(
            where,
            r,
            col,
            f"{_show(values.iloc[r])} ({values.dtype}) is not text; ids are text "
            "(read files with read_annotations, which keeps every id exactly as written)",
        )
    _reject_kind(values, col, where, "text")
    already_text = values.dtype == text_series([]).dtype and not values.isna().any()
    if not unescape and (
        already_text or (values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string")
    ):
        distinct = values.unique()  # ids repeat: check each distinct one once (arrow: no per-cell objects)
        if not required or all(v.strip() for v in distinct):
            # already exactly the text: no per-cell copy of a big table
            return values.reset_index(drop=True).astype(text_series([]).dtype)
    converted = _convert(values, col, where, _text_value, required, text=True)
    if unescape:
        converted = [unescape_csv_text(v) if isinstance(v, str) else v for v in converted]
    if any(v is None for v in converted):
        return pd.Series(pd.array(converted, dtype=text_series([]).dtype))  # type: ignore[arg-type]
    return text_series(converted)


def bool_column(values: pd.Series, col: str, where: str = "annotations") -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype) and not values.isna().any():
        return values.to_numpy(dtype=bool)
    return np.array(_convert(values, col, where, _bool_value, required=True), dtype=bool)


def escape_csv_text(text: str) -> str:
    """Spreadsheet-safe CSV text (CSV injection): text starting with ``= + - @``, TAB, CR or
    ``'`` gets one extra leading ``'``, which spreadsheets read as "this cell is text".
    :func:`unescape_csv_text` undoes it exactly."""
    return "'" + text if text[:1] in CSV_ESCAPED_STARTS else text


def unescape_csv_text(text: str) -> str:
    """Undo :func:`escape_csv_text`: drop one leading ``'`` when an escaped character follows it."""
    return text[1:] if text[:1] == "'" and text[1:2] in CSV_ESCAPED_STARTS else text


# --------------------------------------------------------------------------- long table


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _read_csv_cells(path: Path) -> pd.DataFrame:
    """Every cell of a UTF-8 CSV file as text (no type or NA guessing)."""
    data = path.read_bytes()
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise AnnotationError(
            f"{path}: the file is empty; expected a header line with columns "
            f"{', '.join(REQUIRED_COLUMNS)} (+ optional weight) and one row per answer"
        )
    if b"\x00" in data:
        raise AnnotationError(f"{path}: binary data (NUL bytes); expected a UTF-8 CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"{path}: byte {exc.start} is not UTF-8; expected a UTF-8 CSV text file (with or without BOM)"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    columns: list[list[str]] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip() and header is not None):
                continue  # blank line
            if header is None:
                header = row
                names = [h.strip() for h in header]
                if any(not h for h in names) or len(set(names)) != len(names):
                    raise AnnotationError(
                        f"{path}: line {reader.line_num}: the header {row} has an empty or repeated column name"
                    )
                header = names
                columns = [[] for _ in header]
                continue
            if len(row) != len(header):
                raise AnnotationError(
                    f"{path}: line {reader.line_num}: {len(row)} fields, expected {len(header)} (one per header column)"
                )
            for cells, value in zip(columns, row):
                cells.append(value)
    except csv.Error as exc:
        raise AnnotationError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    assert header is not None
    return pd.DataFrame({h: pd.Series(c, dtype=object) for h, c in zip(header, columns)}, columns=header)


def typed_table(raw: pd.DataFrame, where: str = "annotations", from_csv: bool = False) -> pd.DataFrame:
    """Give each column of :data:`COLUMN_TYPES` its type (exactly; errors name row and column).

    Other columns stay as they are, or as text when ``from_csv`` (which also undoes
    :func:`escape_csv_text` in text columns).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise AnnotationError(
            f"{where}: missing column(s) {missing}; expected columns {list(REQUIRED_COLUMNS)} (+ optional 'weight')"
        )
    out: dict[str, object] = {}
    for col in raw.columns:
        s = raw[col]
        kind = COLUMN_TYPES.get(str(col))
        required = col in VALUE_REQUIRED
        if kind == "int64":
            out[col] = integer_column(s, col, where)
        elif kind == "Int64":
            out[col] = nullable_integer_column(s, col, where)
        elif kind == "float64":
            out[col] = float_column(s, col, where, required=required)
        elif kind == "bool":
            out[col] = bool_column(s, col, where)
        elif kind == "text" or from_csv:
            out[col] = text_column(s, col, where, required=required, unescape=from_csv)
        else:
            out[col] = s
    return pd.DataFrame(
        {c: (v.reset_index(drop=True) if isinstance(v, pd.Series) else v) for c, v in out.items()},
        columns=list(raw.columns),
    )


#: CSV files larger than this are read with pyarrow's typed, multi-threaded reader (a 912 MB
#: table peaked at 6.9 GB with the cell-by-cell reader); any cell that reader cannot type
#: exactly as :func:`typed_table` would (an empty required cell, ``0_3``, an escaped text, ...)
#: sends the file back to the exact reader, whose errors name the row and column.
FAST_CSV_BYTES = 16 * 2**20


def _read_csv_arrow(path: Path) -> pd.DataFrame | None:
    """The typed table of a CSV file read with pyarrow, or None when only the exact reader can
    say what it holds (then nothing has been decided: the caller reads it the exact way).
    Text stays in arrow buffers (the exact reader's text dtype), never one Python string per cell."""
    import mmap

    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm.find(b"\x00") != -1:
                return None
            first = mm.readline().decode("utf-8-sig")
        header = next(csv.reader([first]))
        if not header or any(h != h.strip() or not h for h in header) or len(set(header)) != len(header):
            return None
        if any(c not in header for c in REQUIRED_COLUMNS):
            return None
        arrow_types = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
        table = pcsv.read_csv(  # typed by pyarrow's strict parsers: '1e3' is no int64, '1_000' no float
            path,
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={h: arrow_types.get(COLUMN_TYPES.get(h, "text"), pa.string()) for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                true_values=["True", "true"],
                false_values=["False", "false"],
                check_utf8=True,
            ),
        )
    except Exception:  # anything unusual (an empty required cell, 0_3, ...): the exact reader decides
        return None
    if table.column_names != header:
        return None
    out: dict[str, object] = {}
    for col in header:
        cells = table.column(col)
        kind = COLUMN_TYPES.get(col)
        if kind in ("int64", "float64", "bool"):
            out[col] = cells.to_numpy()
        elif kind == "Int64":
            out[col] = pd.array(cells.to_numpy(), dtype="Int64")
        else:  # text: exactly as written, unless it needs unescaping or is a missing required value
            if pc.any(pc.starts_with(cells, "'")).as_py():
                return None
            if col in VALUE_REQUIRED and pc.any(pc.match_substring_regex(cells, r"^\s*$")).as_py():
                return None
            text_dtype = text_series([]).dtype  # the exact reader's text dtype (arrow-backed under pandas 3)
            out[col] = cells.to_pandas(types_mapper={pa.string(): text_dtype}.get).reset_index(drop=True)
        table = table.drop_columns([col])  # free each column once converted
        del cells
    return pd.DataFrame(out, columns=header)


def read_annotations(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a long-format annotation table from CSV or Parquet, exactly as written.

    Types are explicit, never guessed: ``item``, ``label``, ``attempt`` int64 (parsed as
    integers, never through float64); ``annotator`` and ``timestamp`` text exactly as written
    (``001``, ``NA``, ``null``, ``TRUE`` stay those strings); ``weight``, ``response_ms``
    float64; ``second_label``, ``confidence`` nullable Int64; ``is_attention_check`` bool;
    other CSV columns text. Only an empty cell is a missing value, and it is an error in
    ``item, annotator, label, weight, attempt, is_attention_check``. CSV is UTF-8 with or
    without BOM; text cells escaped against CSV injection (:func:`escape_csv_text`) are
    unescaped. Every failure (missing, empty, binary or corrupt file, a bad cell) raises
    :class:`AnnotationError` naming the file (and row and column). Not yet validated against
    the class set: see :func:`validate_annotations`.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: file not found")
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; expected a .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise AnnotationError(f"{path}: expected a .csv or .parquet file")
    if suffix == ".csv" and path.stat().st_size > FAST_CSV_BYTES:
        fast = _read_csv_arrow(path)
        if fast is not None:
            fast.attrs["source"] = str(path)
            return fast
    try:
        if suffix == ".csv":
            raw = _read_csv_cells(path)
        else:
            raw = pd.read_parquet(path)
    except AnnotationError:
        raise
    except Exception as exc:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise AnnotationError(f"{path}: cannot be read as {kind} ({_one_line(exc)})") from exc
    df = typed_table(raw, where=str(path), from_csv=suffix == ".csv")
    df.attrs["source"] = str(path)
    return df


def write_annotations(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table to ``.csv`` or ``.parquet`` atomically so that :func:`read_annotations`
    reads back exactly ``df`` (for the :data:`COLUMN_TYPES` columns and text columns). In CSV,
    text cells are escaped against CSV injection (:func:`escape_csv_text`)."""
    from softlab.io import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise AnnotationError(f"{path}: expected a .csv or .parquet file name")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            safe = df.copy()
            for col in safe.columns:
                if pd.api.types.is_string_dtype(safe[col].dtype) or safe[col].dtype == object:
                    safe[col] = safe[col].map(lambda v: escape_csv_text(v) if isinstance(v, str) else v)
            # CRLF rows (RFC 4180): the csv writer then quotes any cell holding a CR or LF, so
            # such text reads back exactly (with "\n" rows a bare CR would end the row)
            safe.to_csv(tmp, index=False, lineterminator="\r\n")
        else:
            df.to_parquet(tmp, index=False)
    return path


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
    - ``item`` a non-negative 64-bit integer, among ``items`` when given (unknown items are
      rejected); integers are checked exactly (never through float64), booleans and dates are
      not integers;
    - ``annotator`` text (integers become their decimal text; floats are refused, since a
      float id has already lost e.g. its leading zeros);
    - duplicate (annotator, item) pairs: ``duplicates="reject"`` (default) raises,
      ``"keep-first"`` / ``"keep-last"`` keep one answer.

    Errors name the source, the (0-based data) row and the column.
    """
    where = source or df.attrs.get("source", "annotations")
    if duplicates not in DUPLICATE_POLICIES:
        raise AnnotationError(f"duplicates: expected one of {list(DUPLICATE_POLICIES)}, got {duplicates!r}")
    _check_n_classes(n_classes)
    if len(df) == 0:
        raise AnnotationError(f"{where}: empty annotation table; expected at least one row")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise AnnotationError(
            f"{where}: missing column(s) {missing}; expected columns {list(REQUIRED_COLUMNS)} (+ optional 'weight')"
        )
    out = df.copy().reset_index(drop=True)
    for col in (*REQUIRED_COLUMNS, *(["weight"] if "weight" in df.columns else [])):
        na = out[col].isna().to_numpy()
        if na.any():
            raise _cell_error(where, _first(na), col, "missing value (empty cell or NA)")
    out["item"] = integer_column(out["item"], "item", where)
    out["annotator"] = text_column(out["annotator"], "annotator", where)
    # 'a' and 'a ' would count as two annotators, and stripping them could merge two people
    distinct = out["annotator"].unique()
    if any(a != a.strip() for a in distinct):
        padded = (out["annotator"] != out["annotator"].str.strip()).to_numpy(dtype=bool)
        r = _first(padded)
        raise _cell_error(
            where,
            r,
            "annotator",
            f"{out['annotator'].iloc[r]!r} has leading or trailing spaces; expected the id without them "
            "(the app never writes them: they come from an edit by hand)",
        )
    out["label"] = integer_column(out["label"], "label", where)
    lab = out["label"].to_numpy()
    bad = (lab < 0) | (lab >= n_classes)
    if bad.any():
        r = _first(bad)
        raise _cell_error(where, r, "label", f"{lab[r]} is outside the class set 0..{n_classes - 1}")
    item_ids = out["item"].to_numpy()
    if items is not None:
        known = _item_ids(items)
        bad = ~np.isin(item_ids, known)
        if bad.any():
            r = _first(bad)
            raise _cell_error(where, r, "item", f"unknown item {item_ids[r]}")
    elif (item_ids < 0).any():
        r = _first(item_ids < 0)
        raise _cell_error(where, r, "item", f"negative item id {item_ids[r]}; expected an index >= 0")
    if "weight" in out.columns:
        out["weight"] = _weights(out["weight"], where)
    dup = _duplicated_pairs(out["annotator"], out["item"].to_numpy())
    if dup.any():
        if duplicates == "reject":
            rows = np.flatnonzero(dup)[:2]
            r = int(rows[0])
            raise AnnotationError(
                f"{where}: rows {', '.join(map(str, rows))}: annotator {out['annotator'].iloc[r]!r} answered item "
                f"{out['item'].iloc[r]} more than once (duplicates='reject'; use 'keep-first' or 'keep-last')"
            )
        out = out.drop_duplicates(subset=["annotator", "item"], keep="first" if duplicates == "keep-first" else "last")
    return out.reset_index(drop=True)


def _duplicated_pairs(annotators: pd.Series, items: np.ndarray) -> np.ndarray:
    """Rows whose (annotator, item) pair occurs more than once; one int64 key per row when the
    ids fit (a 200 MB table: a fraction of the memory of ``DataFrame.duplicated``)."""
    codes, _ = pd.factorize(annotators)
    if len(items) and codes.max() < 2**31 and items.min() >= 0 and items.max() < 2**32:
        keys = (codes.astype(np.int64) << 32) | items.astype(np.int64)
        return pd.Series(keys).duplicated(keep=False).to_numpy()
    frame = pd.DataFrame({"annotator": annotators, "item": items})
    return frame.duplicated(keep=False).to_numpy()


def _check_n_classes(n_classes: object) -> int:
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise AnnotationError(f"n_classes: expected a positive integer, got {n_classes!r}")
    return int(n_classes)


def _item_ids(items: Sequence[int] | np.ndarray) -> np.ndarray:
    return integer_column(pd.Series(list(np.asarray(items, dtype=object).ravel()), dtype=object), "item", "items")


def _weights(values: pd.Series, where: str) -> np.ndarray:
    """Weights as float64: positive finite numbers (errors name the row)."""
    w = float_column(values, "weight", where, required=True)
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        r = _first(bad)
        raise _cell_error(where, r, "weight", f"{_show(values.iloc[r])}; expected a positive finite number")
    return w


def to_counts(
    df: pd.DataFrame, n_classes: int, items: Sequence[int] | np.ndarray | None = None, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Long table → (item ids, count matrix). Uses ``weight`` when present.

    ``items`` fixes the row order (items without answers are rejected); by default the sorted
    distinct items of the table. Entry ``[i, c]`` is the summed weight of the answers ``c``
    on item ``i``. Labels must be integers in ``[0, n_classes)`` and weights positive finite
    numbers (checked here too, so a table that skipped :func:`validate_annotations` cannot
    count a label -1 as the last class or make a negative "count"); errors name the row.
    """
    where = source or df.attrs.get("source", "to_counts")
    n_classes = _check_n_classes(n_classes)
    for col in ("item", "label"):
        if col not in df.columns:
            raise AnnotationError(f"{where}: missing column '{col}'; expected columns {list(REQUIRED_COLUMNS)}")
    item_col = integer_column(df["item"].reset_index(drop=True), "item", where)
    labels = integer_column(df["label"].reset_index(drop=True), "label", where)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        r = _first(bad)
        raise _cell_error(where, r, "label", f"{labels[r]} is outside the class set 0..{n_classes - 1}")
    w = _weights(df["weight"].reset_index(drop=True), where) if "weight" in df.columns else np.ones(len(df))
    ids = _item_ids(items) if items is not None else np.unique(item_col)
    if len(np.unique(ids)) != len(ids):
        raise AnnotationError("items: an item id repeats; expected distinct ids")
    rows = pd.Index(ids).get_indexer(item_col)
    if (rows < 0).any():
        r = _first(rows < 0)
        raise _cell_error(where, r, "item", f"item {item_col[r]} is not in the requested items")
    counts = np.zeros((len(ids), n_classes), dtype=np.float64)
    with np.errstate(over="ignore"):  # an overflow to inf is reported below, naming the item
        np.add.at(counts, (rows, labels), w)
    totals = counts.sum(axis=1)
    overflow = ~np.isfinite(totals)
    if overflow.any():  # weights of 1e308 each sum to inf, and inf/inf soft labels are NaN
        i = _first(overflow)
        raise AnnotationError(
            f"{where}: the weights of item {int(ids[i])} sum beyond the largest float (inf); "
            "expected weights whose sum per item is finite (e.g. at most 1e300 each)"
        )
    empty = totals == 0
    if empty.any():
        raise AnnotationError(f"{where}: item {int(ids[_first(empty)])} has no answers")
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
