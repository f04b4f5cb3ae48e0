"""Fuzzing votes tables (CSV and Parquet): every table either round-trips exactly or is refused
with one AnnotationError line naming the file (and row/line), writing nothing (issue 25)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _fuzz import fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

import softlab.data.annotations as ann
from softlab.data.annotations import AnnotationError, read_annotations, validate_annotations

HOSTILE_CELLS = [
    "-1", "10", "3.0", "3", " 3", "NaN", "nan", "", " ", "NA", "null", "None", "0001", "1e3", "0_3", "1_000",
    "\uff13", "٣", "+3", "-0", "3 ", "Zoë", "李", "'=1", "=1+2", "\t3", "9223372036854775808", "2**3", "0x3",
    "inf", "TRUE", "3;4", '"3"',
]  # fmt: skip
HEADERS = ["item,annotator,label", "item,annotator,label,weight", "annotator,item", "item;annotator;label", ""]


def _expected_int(cell: str, low: int, high: int) -> int | None:
    """What the reader must make of a cell: the integer for plain ASCII digits in range, else None."""
    t = cell.strip()
    if t and all(c in "0123456789" for c in t.lstrip("+-")) and t.lstrip("+-") and t.count("-") + t.count("+") <= 1:
        v = int(t)
        return v if low <= v <= high else None
    return None


@fuzz(60)
@given(
    header=st.sampled_from(HEADERS),
    rows=st.lists(
        st.tuples(st.sampled_from(HOSTILE_CELLS), st.sampled_from(["a", "b", "001", "NA", "a "]),
                  st.sampled_from(HOSTILE_CELLS)),
        min_size=0,
        max_size=6,
    ),
    bom=st.booleans(),
    crlf=st.booleans(),
)  # fmt: skip
def test_hostile_votes_csv_is_read_exactly_or_refused_in_one_line(tmp_path_factory, header, rows, bom, crlf):
    folder = tmp_path_factory.mktemp("votes")
    path = folder / "votes.csv"
    nl = "\r\n" if crlf else "\n"
    lines = [header, *[",".join(_quote(c) for c in r) for r in rows]] if header else []
    path.write_bytes(("\ufeff" if bom else "").encode() + nl.join(lines).encode("utf-8") + nl.encode())
    before = sorted(p.name for p in folder.iterdir())
    try:
        table = validate_annotations(read_annotations(path), 10)
    except AnnotationError as exc:
        assert one_line(str(exc)) and str(path) in str(exc)
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
        return
    # accepted: every value is exactly what the file says
    assert header in ("item,annotator,label", "item,annotator,label,weight")
    assert len(table) == len(rows)
    for (item, annotator, label), got in zip(rows, table.itertuples()):
        assert got.item == _expected_int(item, 0, 2**63 - 1)
        assert got.label == _expected_int(label, 0, 9)
        assert got.annotator == annotator and annotator == annotator.strip()


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell


@fuzz(40)
@given(
    items=st.lists(st.one_of(st.integers(-3, 12), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
                   min_size=1, max_size=6),
    labels=st.lists(st.one_of(st.integers(-2, 12), st.floats(allow_nan=True), st.sampled_from(["3", "x"]), st.none()),
                    min_size=1, max_size=6),
    dtype=st.sampled_from(["object", "native"]),
)  # fmt: skip
def test_hostile_votes_parquet_is_read_exactly_or_refused_in_one_line(tmp_path_factory, items, labels, dtype):
    n = min(len(items), len(labels))
    folder = tmp_path_factory.mktemp("votes")
    path = folder / "votes.parquet"
    cols = {"item": items[:n], "annotator": [f"a{i}" for i in range(n)], "label": labels[:n]}
    try:
        frame = pd.DataFrame(cols) if dtype == "native" else pd.DataFrame(cols, dtype=object)
        frame.to_parquet(path)
    except Exception:  # pyarrow cannot store the mix: not a table a user can hand us
        return
    before = sorted(p.name for p in folder.iterdir())
    try:
        table = validate_annotations(read_annotations(path), 10)
    except AnnotationError as exc:
        assert one_line(str(exc)) and str(path) in str(exc)
        assert sorted(p.name for p in folder.iterdir()) == before
        return
    for item, label, got in zip(items, labels, table.itertuples()):
        for value, read in ((item, got.item), (label, got.label)):
            assert not isinstance(value, bool) and value is not None
            if isinstance(value, str):  # text of ASCII digits is that integer (as in a CSV), nothing else
                assert _expected_int(value, -(2**63), 2**63 - 1) == read
            else:
                assert math.isfinite(float(value)) and float(value) == read
        assert 0 <= got.label <= 9


@fuzz(25)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    weights=st.booleans(),
    odd=st.sampled_from(["", "0_3", "", "\uff11", " 4", "", "'=x"]),
)
def test_the_fast_csv_reader_gives_the_exact_readers_table_or_defers_to_it(
    tmp_path_factory, monkeypatch, n, seed, weights, odd
):
    rng = np.random.default_rng(seed)
    rows = [
        f"{rng.integers(0, 50)},{rng.choice(['a', '001', 'NA', 'Zoë', 'x y'])}{i},{rng.integers(0, 10)}"
        + (f",{rng.random():.17g}" if weights else "")
        for i in range(n)
    ]
    if odd:
        rows[0] = (
            rows[0].split(",", 1)[0]
            + f",{odd},"
            + rows[0].split(",")[2]
            + ("," + rows[0].split(",")[3] if weights else "")
        )
    path = tmp_path_factory.mktemp("fast") / "votes.csv"
    path.write_text("item,annotator,label" + (",weight" if weights else "") + "\n" + "\n".join(rows) + "\n")
    exact = read_annotations(path)
    monkeypatch.setattr(ann, "FAST_CSV_BYTES", -1)  # every file through the fast reader
    fast = read_annotations(path)
    pd.testing.assert_frame_equal(fast, exact)


@pytest.mark.parametrize("text", ["", "\n\n", "item,annotator,label\n", "\ufeff", "a\x00b"])
def test_empty_header_only_and_binary_votes_files_are_one_line(tmp_path, text):
    path = tmp_path / "votes.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError) as err:
        validate_annotations(read_annotations(path), 10)
    assert one_line(str(err.value)) and str(path) in str(err.value)
