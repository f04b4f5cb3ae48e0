"""Annotation tables: validation errors name row and column; aggregation invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import entropy as scipy_entropy

from softlab.data import annotations as ann
from softlab.data.annotations import AnnotationError


def table(rows, cols=("item", "annotator", "label")):
    return pd.DataFrame(rows, columns=list(cols))


GOOD = table([(0, "a", 1), (0, "b", 1), (1, "a", 2)])


def test_roundtrip_csv_and_parquet(tmp_path):
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"votes{suffix}"
        (GOOD.to_csv(path, index=False) if suffix == ".csv" else GOOD.to_parquet(path))
        df = ann.validate_annotations(ann.read_annotations(path), n_classes=3)
        items, counts = ann.to_counts(df, n_classes=3)
        assert items.tolist() == [0, 1] and counts.tolist() == [[0, 2, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    "df, match",
    [
        (GOOD.drop(columns="label"), r"missing column\(s\) \['label'\]"),
        (table([(0, "a", 1), (1, "b", 3)]), r"row 1, column 'label': 3 is outside the class set 0..2"),
        (table([(0, "a", 1), (1, None, 2)]), r"row 1, column 'annotator': missing value"),
        (table([(0, "a", 1), (np.nan, "b", 2)]), r"row 1, column 'item': missing value"),
        (table([(0, "a", 1.5)]), r"row 0, column 'label': 1.5 is not an integer"),
        (table([(0, "a", 1), (0, "a", 2)]), r"rows 0, 1: annotator 'a' answered item 0 more than once"),
        (table([(0, "a", 1, -1.0)], ("item", "annotator", "label", "weight")), r"row 0, column 'weight'"),
        (table([], ("item", "annotator", "label")), r"empty annotation table"),
    ],
)
def test_bad_tables_raise_clear_errors(df, match):
    df.attrs["source"] = "votes.csv"
    with pytest.raises(AnnotationError, match=match) as err:
        ann.validate_annotations(df, n_classes=3)
    assert "votes.csv" in str(err.value)


def test_unknown_items_rejected():
    with pytest.raises(AnnotationError, match=r"row 2, column 'item': unknown item 1"):
        ann.validate_annotations(GOOD, n_classes=3, items=[0, 5])


def test_duplicate_policies():
    dup = table([(0, "a", 1), (0, "a", 2)])
    assert ann.validate_annotations(dup, 3, duplicates="keep-last")["label"].tolist() == [2]
    assert ann.validate_annotations(dup, 3, duplicates="keep-first")["label"].tolist() == [1]


def test_missing_file_and_format(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        ann.read_annotations(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(AnnotationError, match=r"\.csv or \.parquet"):
        ann.read_annotations(tmp_path / "x.txt")


@pytest.mark.parametrize(
    "counts, match",
    [
        ([[1, np.nan]], r"row 0, column 1: value nan is NaN"),
        ([[1, 2], [-1, 3]], r"row 1, column 0: value -1.0 is negative"),
        ([[1, 0.5]], r"row 0, column 1: value 0.5 is not an integer"),
        ([[1, 1], [0, 0]], r"row 1 has no votes"),
        (np.zeros((0, 3)), r"empty"),
    ],
)
def test_bad_counts(counts, match):
    with pytest.raises(AnnotationError, match=match):
        ann.validate_counts(np.asarray(counts, dtype=float))


def test_weights_are_summed():
    df = table([(0, "a", 1, 0.5), (0, "b", 1, 2.0)], ("item", "annotator", "label", "weight"))
    _, counts = ann.to_counts(ann.validate_annotations(df, 2), 2)
    assert counts.tolist() == [[0.0, 2.5]]


def test_majority_tie_rules_and_mode():
    counts = np.array([[2, 2, 0], [0, 1, 3]])
    assert ann.majority(counts, "lowest").tolist() == [0, 2]
    assert ann.majority(counts, "official", official=np.array([1, 0])).tolist() == [1, 2]
    assert ann.human_mode(counts, np.array([1, 1])).tolist() == [1, 2]
    assert ann.mode_shifted(counts, np.array([1, 1])).tolist() == [False, True]
    r = ann.majority(counts, "random", seed=3)
    assert r[1] == 2 and r[0] in (0, 1) and np.array_equal(r, ann.majority(counts, "random", seed=3))


def test_fleiss_kappa_matches_statsmodels_worked_example():
    # Fleiss (1971) / Wikipedia worked example: 10 items, 14 raters, 5 categories -> kappa 0.210
    c = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                  [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert ann.fleiss_kappa(c) == pytest.approx(0.2099, abs=1e-4)
    assert ann.fleiss_kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)


count_matrices = st.integers(1, 6).flatmap(
    lambda c: arrays(np.int64, st.tuples(st.integers(1, 12), st.just(c)), elements=st.integers(0, 9))
).filter(lambda a: (a.sum(axis=1) > 0).all())


@settings(max_examples=60, deadline=None)
@given(count_matrices, st.floats(0, 3))
def test_soft_labels_are_distributions(counts, alpha):
    p = ann.soft_labels(counts, alpha)
    assert np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    if alpha == 0:
        assert np.array_equal(p.argmax(1), counts.argmax(1))


@settings(max_examples=60, deadline=None)
@given(count_matrices)
def test_entropy_matches_scipy_and_is_bounded(counts):
    p = ann.soft_labels(counts)
    h = ann.entropy(p)
    assert np.allclose(h, scipy_entropy(p, axis=1))
    assert (h >= -1e-12).all() and (h <= np.log(counts.shape[1]) + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(count_matrices, st.data())
def test_long_count_roundtrip_and_mode_invariants(counts, data):
    df = ann.from_counts(counts)
    clean = ann.validate_annotations(df, n_classes=counts.shape[1])
    items, back = ann.to_counts(clean, counts.shape[1])
    assert np.array_equal(back, counts) and np.array_equal(ann.votes_per_item(back), counts.sum(1))
    official = np.asarray(data.draw(st.lists(st.integers(0, counts.shape[1] - 1), min_size=len(counts), max_size=len(counts))))
    mode = ann.human_mode(counts, official)
    assert (counts[np.arange(len(counts)), mode] == counts.max(1)).all()  # mode is a maximum
    official_is_max = counts[np.arange(len(counts)), official] == counts.max(1)
    assert not ann.mode_shifted(counts, official)[official_is_max].any()  # ties go to official


def test_summarise_table():
    s = ann.summarise(np.array([[3, 1], [0, 4]]), official=np.array([1, 1]))
    assert s["votes"].tolist() == [4, 4] and s["mode_shifted"].tolist() == [True, False]
    assert s["entropy"].iloc[1] == 0
