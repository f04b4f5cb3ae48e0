"""The shared input checks: probability rows (one tolerance), label vectors, shapes, images,
one error sentence, the caller's error class."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from softlab.validation import (
    PROB_SUM_TOL,
    check_images,
    check_labels,
    check_nonnegative,
    check_probability_rows,
    check_shape,
    field_error,
    is_probability_rows,
    row_name,
)


class CallerError(ValueError):
    pass


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 12), st.integers(0, 2**32 - 1), st.sampled_from([np.float16, np.float32]))
def test_softmax_like_rows_pass_and_come_back_as_float64(n, c, seed, dtype):
    p = np.random.default_rng(seed).dirichlet(np.full(c, 0.5), size=n).astype(dtype)
    out = check_probability_rows(p, "p")
    assert out.dtype == np.float64 and out.shape == (n, c)
    np.testing.assert_array_equal(out, p.astype(np.float64))
    assert is_probability_rows(p)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=st.floats(-2, 2)))
def test_check_and_predicate_agree(x):
    ok = is_probability_rows(x)
    try:
        check_probability_rows(x, "x")
    except ValueError:
        assert not ok
    else:
        assert ok


def test_one_tolerance_on_the_row_sum():
    at_edge = np.array([[0.5, 0.5 + 0.9 * PROB_SUM_TOL]])
    check_probability_rows(at_edge, "p")
    over = np.array([[0.5, 0.5], [0.5, 0.5 + 1.1 * PROB_SUM_TOL]])
    with pytest.raises(
        ValueError, match=r"^p: row 1 sums to 1\.0011; expected probabilities summing to 1 \(within 0\.001\)$"
    ):
        check_probability_rows(over, "p")


def test_messages_name_the_first_bad_row_and_column():
    with pytest.raises(
        ValueError,
        match=r"^targets: row 2, column 1: -0\.25 is not a probability \(expected a finite number in \[0, 1\]\)$",
    ):
        check_probability_rows(np.array([[1.0, 0.0], [0.0, 1.0], [1.25, -0.25]]), "targets")
    with pytest.raises(ValueError, match=r"row 1, column 0: nan is not a probability"):
        check_probability_rows(np.array([[1.0, 0.0], [np.nan, 1.0]]), "p")
    # rows named by ids (e.g. the item ids of a training subset) instead of positions
    with pytest.raises(ValueError, match=r"^t: row 907 sums to 2"):
        check_probability_rows(np.array([[1.0, 0.0], [1.0, 1.0]]), "t", rows=[12, 907])
    # a stack of row sets: the row is named by its full index
    stack = np.full((2, 3, 2), 0.5)
    stack[1, 2] = [0.9, 0.9]
    with pytest.raises(ValueError, match=r"^dyn: row \(1, 2\) sums to 1\.8"):
        check_probability_rows(stack, "dyn", min_ndim=3)


def test_shape_dtype_and_emptiness():
    with pytest.raises(
        ValueError, match=r"p: expected shape \(n_items, n_classes\) with at least 2 axes, got shape \(3,\)"
    ):
        check_probability_rows(np.ones(3) / 3, "p")
    with pytest.raises(ValueError, match=r"dyn: expected shape \(\.\.\., n_items, n_classes\) with at least 3 axes"):
        check_probability_rows(np.ones((2, 2)) / 2, "dyn", min_ndim=3)
    with pytest.raises(ValueError, match="expected at least one row and one class"):
        check_probability_rows(np.zeros((0, 3)), "p")
    with pytest.raises(ValueError, match="p: expected numbers, got dtype bool"):
        check_probability_rows(np.eye(2, dtype=bool), "p")


def test_the_callers_error_class_is_raised():
    with pytest.raises(CallerError, match="probs: row 0 sums to 2"):
        check_probability_rows(np.ones((1, 2)), "probs", error=CallerError)
    with pytest.raises(CallerError, match=r"v: entry 1: -1\.0 is not a variability"):
        check_nonnegative(np.array([0.0, -1.0]), "v", what="variability", error=CallerError)
    with pytest.raises(CallerError):
        check_labels(np.array([0.5]), "y", error=CallerError)
    with pytest.raises(CallerError):
        check_shape(np.zeros(3), (4,), "x", error=CallerError)
    with pytest.raises(CallerError):
        check_images(np.zeros((1, 28, 28)), "img", error=CallerError)


def test_labels():
    np.testing.assert_array_equal(check_labels(np.array([0.0, 2.0]), "y", 3), [0, 2])  # whole floats are labels
    assert check_labels([1, 2], "y").dtype == np.int64
    with pytest.raises(ValueError, match="y: expected integer class indices, got dtype bool"):
        check_labels(np.array([True, False]), "y")
    with pytest.raises(ValueError, match="y: expected integer class indices, got dtype float64"):
        check_labels(np.array([0.0, np.nan]), "y")
    with pytest.raises(ValueError, match=r"^y: entry 1 is 3, outside the class set 0\.\.2$"):
        check_labels([0, 3, 5], "y", 3)
    with pytest.raises(ValueError, match=r"y: entry \(1, 0\) is -1"):
        check_labels([[0], [-1]], "y", 3, ndim=None)
    with pytest.raises(ValueError, match="ids: expected a 1-D array of item indices"):
        check_labels([[0]], "ids", what="item indices")


def test_shapes_images_and_config_fields():
    assert check_shape(np.zeros((4, 3)), (None, 3), "x").shape == (4, 3)
    with pytest.raises(ValueError, match=r"^x: expected shape \(n, 2\), got \(4, 3\)$"):
        check_shape(np.zeros((4, 3)), (None, 2), "x")
    with pytest.raises(ValueError, match=r"^x: expected shape \(5,\), got \(4,\)$"):
        check_shape(np.zeros(4), (5,), "x")
    check_images(np.zeros((2, 28, 28), np.uint8), "images")
    with pytest.raises(ValueError, match="images: expected uint8 images shaped"):
        check_images(np.zeros((2, 28, 28), np.float32), "images")
    with pytest.raises(ValueError, match=r"\(N, 28, 28\) with N >= 1, got \(0, 28, 28\)"):
        check_images(np.zeros((0, 28, 28), np.uint8), "images")

    class Config:
        epochs = 0

    err = field_error(Config(), "epochs", "a positive int")
    assert isinstance(err, ValueError) and str(err) == "Config.epochs: expected a positive int, got 0"
    assert row_name([3]) == "row 3" and row_name(np.array([1, 2])) == "row (1, 2)"
