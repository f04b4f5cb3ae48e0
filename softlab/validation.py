"""Input checks shared by every layer: probability rows, label vectors, shapes, images.

One vocabulary, one tolerance, one error style. Every check returns the validated array (in the
dtype the caller computes with) or raises an error whose message starts with the name of the
offending argument and says what was found and what was expected, naming the first bad row (and
column)::

    probs: row 3 sums to 1.2; expected probabilities summing to 1 (within 0.001)
    targets: row 0, column 1: -0.5 is not a probability (expected a finite number in [0, 1])
    labels: entry 4 is 12, outside the class set 0..9

The error class is :class:`ValueError` unless the caller passes its own (``error=StudyError``,
``error=AnnotationError``, both subclasses of ``ValueError``), so every layer keeps its own
exception type while writing the same sentence.

Definitions
-----------
* A **probability row** is a vector of finite, non-negative entries summing to 1 within
  :data:`PROB_SUM_TOL` (an absolute tolerance on the row sum). Entries are then at most
  ``1 + PROB_SUM_TOL``; callers that need ``[0, 1]`` exactly clip.
* A **label vector** holds class indices: integers (an integer dtype, or floats that are all
  finite whole numbers; never booleans), in ``0..n_classes−1`` when ``n_classes`` is given.

This module imports nothing but numpy, so any layer may use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROB_SUM_TOL",
    "check_images",
    "check_labels",
    "check_nonnegative",
    "check_plain_name",
    "check_probability_rows",
    "check_shape",
    "field_error",
    "is_probability_rows",
    "row_name",
]

PROB_SUM_TOL: float = 1e-3
"""Rows of probabilities must sum to 1 within this absolute tolerance (float32 outputs of a
softmax over a few classes are off by ~1e-7; float16 training dynamics by up to ~1e-3)."""

ErrorType = type[Exception]


def row_name(index: Sequence[int] | np.ndarray) -> str:
    """``"row 3"`` for a 2-D array's row, ``"row (0, 3)"`` for a row of a stack of them."""
    idx = tuple(int(i) for i in index)
    return f"row {idx[0]}" if len(idx) == 1 else f"row {idx}"


def _as_float(x: npt.ArrayLike, name: str, error: ErrorType) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise error(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_nonnegative(
    x: npt.ArrayLike,
    name: str,
    *,
    what: str = "value",
    rows: npt.ArrayLike | None = None,
    error: ErrorType = ValueError,
) -> np.ndarray:
    """``x`` as float64 after checking that every entry is finite and ``>= 0``.

    ``what`` names an entry in the message (``"probability"``, ``"count"``, ``"variability"``);
    ``rows`` (optional, one id per row of a 2-D ``x``) names rows by these ids instead of their
    positions (e.g. the item ids of a subset).
    """
    arr = _as_float(x, name, error)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        first = np.argwhere(bad)[0]
        value = arr[tuple(first)]
        if arr.ndim == 1:
            where = f"entry {_row_id(int(first[0]), rows)}"
        else:
            where = f"{row_name([_row_id(int(first[0]), rows), *first[1:-1]])}, column {int(first[-1])}"
        expected = "a finite number in [0, 1]" if what == "probability" else "a finite number >= 0"
        raise error(f"{name}: {where}: {float(value)!r} is not a {what} (expected {expected})")
    return arr


def _row_id(position: int, rows: npt.ArrayLike | None) -> int:
    return position if rows is None else int(np.asarray(rows)[position])


def is_probability_rows(x: npt.ArrayLike) -> bool:
    """True when every row (last axis) of numeric ``x`` is a probability row (module docstring)."""
    arr = np.asarray(x, dtype=np.float64)
    return bool(
        arr.ndim >= 1
        and np.all(np.isfinite(arr))
        and np.all(arr >= 0)
        and np.all(np.abs(arr.sum(axis=-1) - 1.0) <= PROB_SUM_TOL)
    )


def check_probability_rows(
    x: npt.ArrayLike,
    name: str,
    *,
    min_ndim: int = 2,
    rows: npt.ArrayLike | None = None,
    error: ErrorType = ValueError,
) -> np.ndarray:
    """``x`` as float64 ``(..., n, C)`` after checking that every row along the last axis is a
    probability row (finite, ``>= 0``, summing to 1 within :data:`PROB_SUM_TOL`).

    ``min_ndim``: the fewest axes accepted (2: ``(n, C)``; 3: e.g. ``(epochs, n, C)``). ``rows``:
    ids naming the rows of a 2-D ``x`` in messages (see :func:`check_nonnegative`). The array
    needs at least one row and one class.
    """
    arr = _as_float(x, name, error)
    if arr.ndim < min_ndim:
        axes = ", ".join(["..."] * (min_ndim > 2) + ["n_items", "n_classes"])
        raise error(f"{name}: expected shape ({axes}) with at least {min_ndim} axes, got shape {arr.shape}")
    if arr.size == 0:
        raise error(f"{name}: expected at least one row and one class, got shape {arr.shape}")
    check_nonnegative(arr, name, what="probability", rows=rows, error=error)
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > PROB_SUM_TOL
    if off.any():
        first = np.argwhere(off)[0]
        ids = [_row_id(int(first[0]), rows), *first[1:]] if arr.ndim == 2 else first
        raise error(
            f"{name}: {row_name(ids)} sums to {float(sums[tuple(first)]):.6g}; expected probabilities summing to 1 "
            f"(within {PROB_SUM_TOL:g})"
        )
    return arr


def check_labels(
    x: npt.ArrayLike,
    name: str,
    n_classes: int | None = None,
    *,
    ndim: int | None = 1,
    what: str = "class indices",
    error: ErrorType = ValueError,
) -> np.ndarray:
    """``x`` as int64 class indices (module docstring), in ``0..n_classes−1`` when given.

    ``ndim``: the number of axes required (``None``: any). ``what`` names the entries in messages
    (``"item indices"`` for other integer index vectors, which take the same dtype rule).
    """
    arr = np.asarray(x)
    if ndim is not None and arr.ndim != ndim:
        raise error(f"{name}: expected a {ndim}-D array of {what}, got shape {arr.shape}")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr)))
    )
    if arr.dtype == bool or not integral:
        raise error(f"{name}: expected integer {what}, got dtype {arr.dtype}")
    labels = arr.astype(np.int64)
    if n_classes is not None and labels.size:
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            where = first[0] if len(first) == 1 else first
            raise error(f"{name}: entry {where} is {int(labels[first])}, outside the class set 0..{n_classes - 1}")
    return labels


def check_shape(
    x: npt.ArrayLike, shape: Sequence[int | None], name: str, *, error: ErrorType = ValueError
) -> np.ndarray:
    """``np.asarray(x)`` after checking its shape against ``shape`` (``None`` matches any length)."""
    arr = np.asarray(x)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        expected = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise error(f"{name}: expected shape {expected}, got {arr.shape}")
    return arr


def check_images(
    x: npt.ArrayLike, name: str, *, size: tuple[int, int] = (28, 28), error: ErrorType = ValueError
) -> np.ndarray:
    """``x`` after checking that it is a non-empty uint8 stack of grey images ``(n, *size)``."""
    arr = np.asarray(x)
    if arr.dtype != np.uint8:
        raise error(f"{name}: expected uint8 images shaped (n, {size[0]}, {size[1]}), got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1:] != size or arr.shape[0] < 1:
        raise error(f"{name}: expected uint8 images shaped (N, {size[0]}, {size[1]}) with N >= 1, got {arr.shape}")
    return arr


def field_error(config: object, field: str, expected: str) -> ValueError:
    """The error for a configuration field holding a bad value:
    ``"TrainConfig.epochs: expected a positive integer, got 0"``."""
    return ValueError(f"{type(config).__name__}.{field}: expected {expected}, got {getattr(config, field)!r}")


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A name that becomes a file or folder name (a votes arm, a parameter set's ``params_name``,
...): 1-64 ASCII letters, digits, ``_``, ``-`` or ``.``, starting with a letter or digit; so
never ``..``, a ``/``, an absolute path, a hidden name or a control character."""


def check_plain_name(name: object, what: str, *, error: ErrorType = ValueError) -> str:
    """``name`` after checking that it is a :data:`PLAIN_NAME` (one path component that stays
    inside the folder it is joined to); ``what`` names it in the message."""
    if not isinstance(name, str) or PLAIN_NAME.fullmatch(name) is None or ".." in name:
        raise error(
            f"{what}: got {name!r}; expected a plain name (1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit; no '/', '..' or absolute path)"
        )
    return name
