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
        ([[1, np.nan]], r"counts: row 0, column 1: nan is not a vote count \(expected a finite number >= 0\)"),
        ([[1, 2], [-1, 3]], r"counts: row 1, column 0: -1.0 is not a vote count"),
        ([[1, 0.5]], r"counts: row 0, column 1: 0.5 is not an integer vote count"),
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
    c = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert ann.fleiss_kappa(c) == pytest.approx(0.2099, abs=1e-4)
    assert ann.fleiss_kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)


count_matrices = (
    st.integers(1, 6)
    .flatmap(lambda c: arrays(np.int64, st.tuples(st.integers(1, 12), st.just(c)), elements=st.integers(0, 9)))
    .filter(lambda a: (a.sum(axis=1) > 0).all())
)


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
    _, back = ann.to_counts(clean, counts.shape[1])
    assert np.array_equal(back, counts) and np.array_equal(ann.votes_per_item(back), counts.sum(1))
    official = np.asarray(
        data.draw(st.lists(st.integers(0, counts.shape[1] - 1), min_size=len(counts), max_size=len(counts)))
    )
    mode = ann.human_mode(counts, official)
    assert (counts[np.arange(len(counts)), mode] == counts.max(1)).all()  # mode is a maximum
    official_is_max = counts[np.arange(len(counts)), official] == counts.max(1)
    assert not ann.mode_shifted(counts, official)[official_is_max].any()  # ties go to official


def test_summarise_table():
    s = ann.summarise(np.array([[3, 1], [0, 4]]), official=np.array([1, 1]))
    assert s["votes"].tolist() == [4, 4] and s["mode_shifted"].tolist() == [True, False]
    assert s["entropy"].iloc[1] == 0


# --------------------------------------------------------------------------- read back exactly (issue 13)

TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",))  # no NUL: binary
NA_LIKE_IDS = [
    "001",
    "1",
    "01",
    "NA",
    "N/A",
    "null",
    "NULL",
    "None",
    "nan",
    "NaN",
    "TRUE",
    "True",
    "false",
    "0",
    "1.0",
    "1e3",
    "-",
    "#N/A",
    "Zoë",
    "李雷",
    "  padded  ",
]
annotator_ids = st.one_of(
    st.sampled_from(NA_LIKE_IDS),
    st.from_regex(r"0{1,3}[0-9]{1,4}", fullmatch=True),  # leading zeros
    st.text(TEXT_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip() != ""),
)


def export_like_tables(min_rows: int = 0) -> st.SearchStrategy[pd.DataFrame]:
    """Tables with the annotation app's export columns and dtypes."""
    row = st.tuples(
        st.integers(0, 2**63 - 1),
        annotator_ids,
        st.integers(0, 9),
        st.floats(min_value=1e-300, max_value=1e300, allow_nan=False),
        st.none() | st.integers(0, 9),
        st.none() | st.integers(1, 5),
        st.text(TEXT_CHARS, max_size=5),
        st.floats(0, 1e9, allow_nan=False),
        st.booleans(),
        st.integers(1, 3),
    )

    def build(rows: list[tuple]) -> pd.DataFrame:
        cols = list(zip(*rows)) if rows else [[] for _ in range(10)]
        return pd.DataFrame(
            {
                "item": np.array(cols[0], dtype=np.int64),
                "annotator": ann.text_series(cols[1]),
                "label": np.array(cols[2], dtype=np.int64),
                "weight": np.array(cols[3], dtype=np.float64),
                "second_label": pd.array(list(cols[4]), dtype="Int64"),
                "confidence": pd.array(list(cols[5]), dtype="Int64"),
                "timestamp": ann.text_series(cols[6]),
                "response_ms": np.array(cols[7], dtype=np.float64),
                "is_attention_check": np.array(cols[8], dtype=bool),
                "attempt": np.array(cols[9], dtype=np.int64),
            }
        )

    return st.lists(row, min_size=min_rows, max_size=8).map(build)


@settings(max_examples=80, deadline=None)
@given(export_like_tables(), st.sampled_from([".csv", ".parquet"]))
def test_exported_tables_read_back_exactly(tmp_path_factory, df, suffix):
    path = tmp_path_factory.mktemp("rt") / f"answers{suffix}"
    ann.write_annotations(df, path)
    back = ann.read_annotations(path)
    pd.testing.assert_frame_equal(back, df)  # values and dtypes


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_csv_escape_is_exactly_undone_and_never_starts_a_formula(text):
    escaped = ann.escape_csv_text(text)
    assert ann.unescape_csv_text(escaped) == text
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_csv_annotator_ids_keep_leading_zeros_and_na_like_text(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("item,annotator,label\n0,001,1\n0,1,2\n0,NA,1\n0,null,3\n0,None,1\n0,nan,0\n0,TRUE,1\n", "utf-8")
    df = ann.validate_annotations(ann.read_annotations(path), n_classes=10)  # duplicates='reject': none
    assert df["annotator"].tolist() == ["001", "1", "NA", "null", "None", "nan", "TRUE"]
    _, counts = ann.to_counts(df, 10)
    assert counts.sum() == 7  # no vote dropped as a "duplicate" or a missing value


def test_csv_with_or_without_utf8_bom_reads_the_same(tmp_path):
    text = "item,annotator,label\n3,Zoë,1\n"
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(text.encode("utf-8"))
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    pd.testing.assert_frame_equal(ann.read_annotations(plain), ann.read_annotations(bom))
    assert list(ann.read_annotations(bom).columns) == ["item", "annotator", "label"]


def test_empty_cell_where_a_value_is_required_is_missing(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("item,annotator,label\n0,a,1\n1,,2\n", "utf-8")
    with pytest.raises(AnnotationError, match=r"votes.csv: row 1, column 'annotator': missing value"):
        ann.read_annotations(path)
    path.write_text("item,annotator,label,second_label\n0,a,1,\n", "utf-8")
    assert ann.read_annotations(path)["second_label"].isna().all()  # optional: empty means none


def test_item_ids_above_2_53_survive(tmp_path):
    big = [2**53, 2**53 + 1, 2**63 - 1]
    df = pd.DataFrame({"item": np.array(big, dtype=np.int64), "annotator": ["a", "a", "a"], "label": [1, 2, 3]})
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"votes{suffix}"
        (df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path))
        clean = ann.validate_annotations(ann.read_annotations(path), n_classes=4)  # no false duplicate
        assert clean["item"].tolist() == big
        ids, counts = ann.to_counts(clean, 4)
        assert ids.tolist() == big and counts.sum() == 3
    as_text = ann.validate_annotations(df.astype({"item": object}).assign(item=[str(i) for i in big]), 4)
    assert as_text["item"].tolist() == big


def test_very_large_item_ids_are_not_called_negative(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("item,annotator,label\n18446744073709551615,a,1\n", "utf-8")
    with pytest.raises(AnnotationError, match=r"row 0, column 'item': 18446744073709551615 is too large") as err:
        ann.read_annotations(path)
    assert "negative" not in str(err.value)
    df = pd.DataFrame({"item": np.array([2**64 - 1], dtype=np.uint64), "annotator": ["a"], "label": [1]})
    with pytest.raises(AnnotationError, match="too large"):
        ann.validate_annotations(df, 3)
    with pytest.raises(AnnotationError, match="float above 2\\*\\*53"):
        ann.validate_annotations(df.assign(item=[2.0**60]), 3)


def test_bool_labels_and_datetime_items_are_rejected(tmp_path):
    bools = pd.DataFrame({"item": [0, 1], "annotator": ["a", "b"], "label": [True, False]})
    with pytest.raises(AnnotationError, match=r"row 0, column 'label': True is a boolean"):
        ann.validate_annotations(bools, 3)
    dates = pd.DataFrame({"item": pd.to_datetime(["2024-01-01"]), "annotator": ["a"], "label": [1]})
    with pytest.raises(AnnotationError, match=r"column 'item': .* is a date/time"):
        ann.validate_annotations(dates, 3)
    for df, match in ((bools, "boolean"), (dates, "date/time")):
        path = tmp_path / "t.parquet"
        df.to_parquet(path)
        with pytest.raises(AnnotationError, match=match):
            ann.read_annotations(path)
    with pytest.raises(AnnotationError, match="boolean"):
        ann.to_counts(bools, 3)
    obj = pd.DataFrame({"item": [0], "annotator": ["a"], "label": pd.Series([True], dtype=object)})
    with pytest.raises(AnnotationError, match="boolean"):
        ann.validate_annotations(obj, 3)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.csv", b"", "the file is empty"),
        ("blank.csv", b"\n\n  \n", "the file is empty"),
        ("binary.csv", bytes(range(256)) * 4, "binary data"),
        ("latin1.csv", "item,annotator,label\n0,Zo\xeb,1\n".encode("latin-1"), "not UTF-8"),
        ("ragged.csv", b"item,annotator,label\n0,a,1\n1,b\n", r"line 3: 2 fields, expected 3"),
        ("quote.csv", b'item,annotator,label\n0,"a"b,1\n', "not valid CSV"),
        ("header.csv", b"item,item,label\n0,a,1\n", "repeated column name"),
        ("corrupt.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1", "cannot be read as Parquet"),
        ("text.parquet", b"item,annotator,label\n0,a,1\n", "cannot be read as Parquet"),
        ("nolabel.csv", b"item,annotator\n0,a\n", r"missing column\(s\) \['label'\]"),
        ("word.csv", b"item,annotator,label\n0,a,one\n", r"row 0, column 'label': 'one' is not an integer"),
    ],
)
def test_unreadable_files_raise_annotation_error_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=match) as err:
        ann.read_annotations(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AnnotationError, match="is a folder"):
        ann.read_annotations(tmp_path)


def test_bogus_duplicates_policy_is_rejected_without_duplicates():
    with pytest.raises(
        AnnotationError, match=r"duplicates: expected one of \['reject', 'keep-first', 'keep-last'\], got 'bogus'"
    ):
        ann.validate_annotations(GOOD, n_classes=3, duplicates="bogus")


def test_float_annotator_ids_are_refused_not_guessed():
    df = pd.DataFrame({"item": [0], "annotator": [1.0], "label": [1]})
    with pytest.raises(AnnotationError, match=r"row 0, column 'annotator': 1.0 .* is not text"):
        ann.validate_annotations(df, 3)
    ints = ann.validate_annotations(pd.DataFrame({"item": [0], "annotator": [7], "label": [1]}), 3)
    assert ints["annotator"].tolist() == ["7"]


# --------------------------------------------------------------------------- to_counts / soft_labels trust nothing


@pytest.mark.parametrize(
    "label, match",
    [
        (-1, r"row 1, column 'label': -1 is outside the class set 0..9"),
        (10, r"row 1, column 'label': 10 is outside the class set 0..9"),
        (3.7, r"row 1, column 'label': 3.7 is not an integer"),
        (np.nan, r"row 1, column 'label': missing value"),
        (True, r"row 1, column 'label': True is a boolean"),
    ],
)
def test_to_counts_rejects_labels_outside_the_classes(label, match):
    df = pd.DataFrame({"item": [0, 0], "annotator": ["a", "b"], "label": pd.Series([1, label], dtype=object)})
    with pytest.raises(AnnotationError, match=match):
        ann.to_counts(df, 10)


@pytest.mark.parametrize("weight", [-1.0, 0.0, np.nan, np.inf, "heavy", True])
def test_to_counts_rejects_weights_that_are_not_positive_finite(weight):
    df = pd.DataFrame(
        {"item": [0, 0], "annotator": ["a", "b"], "label": [1, 2], "weight": pd.Series([1.0, weight], dtype=object)}
    )
    with pytest.raises(AnnotationError, match=r"row 1, column 'weight'"):
        ann.to_counts(df, 3)


def test_to_counts_matches_a_hand_count_with_weights():
    df = pd.DataFrame({"item": [5, 5, 9], "annotator": ["a", "b", "a"], "label": [2, 2, 0], "weight": [0.5, 2, 1]})
    ids, counts = ann.to_counts(df, 3, items=[9, 5])
    assert ids.tolist() == [9, 5] and counts.tolist() == [[1, 0, 0], [0, 0, 2.5]]


@pytest.mark.parametrize(
    "counts, match",
    [
        ([[0, 1, 2], [1, -1, 1]], r"soft_labels: row 1, column 1: -1.0 is not a vote count"),
        ([[0, np.nan, 2]], r"soft_labels: row 0, column 1: nan is not a vote count"),
        ([[0, np.inf, 2]], r"soft_labels: row 0, column 1: inf is not a vote count \(expected a finite number >= 0\)"),
        ([[True, False]], r"soft_labels: expected numbers, got dtype bool"),
    ],
)
def test_soft_labels_reject_negative_and_nan_counts(counts, match):
    with pytest.raises(AnnotationError, match=match):
        ann.soft_labels(np.asarray(counts))
    with pytest.raises(AnnotationError, match="alpha"):
        ann.soft_labels(np.ones((1, 2)), alpha=float("nan"))
