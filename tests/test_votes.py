"""Votes tables as a human reference: items checked against the split, counts, and agreement
(Krippendorff's alpha and Fleiss' kappa) against hand-computed and published values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab.data import AnnotationError, agreement, load_images, load_votes, read_votes
from softlab.data.votes import krippendorff_alpha


def _table(rows: list[tuple[int, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


# ------------------------------------------------------------------------------ agreement


def test_krippendorff_alpha_equals_the_hand_computed_value():
    # unit 0: a,a   unit 1: a,b   unit 2: b,b,b   unit 3: c (one vote: unpairable, ignored)
    # coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 3 · 2 · (1/2) = 3; n_a = 3, n_b = 4, n = 7
    # D_o = 2/7, D_e = 2 · 3 · 4 / (7 · 6) = 4/7, alpha = 1 - (2/7)/(4/7) = 1/2
    t = _table([(0, "x", 0), (0, "y", 0), (1, "x", 0), (1, "z", 1), (2, "x", 1), (2, "y", 1), (2, "z", 1), (3, "x", 2)])
    s = agreement(t, n_classes=3)
    assert s.krippendorff_alpha == pytest.approx(0.5, abs=1e-12)
    assert s.n_items == 4 and s.n_annotators == 3 and s.n_answers == 8 and s.pairable_items == 3
    assert s.votes_per_item.to_dict() == {1: 1, 2: 2, 3: 1} and not s.equal_votes
    # unit 0: 0,1,2 (m = 3: six ordered pairs, all unequal, weight 1/2 -> 3); unit 1: 0,0 (o_00 = 2)
    # n = 5, n_0 = 3, n_1 = n_2 = 1: D_o = 3/5, D_e = (25 - 11) / 20 = 0.7, alpha = 1 - 6/7 = 1/7
    assert krippendorff_alpha(np.array([[1, 1, 1], [2, 0, 0]])) == pytest.approx(1 / 7, abs=1e-12)


def test_fleiss_kappa_equals_the_published_example_and_the_hand_computed_unequal_case():
    # Fleiss' kappa example (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters, 5 categories: 0.210
    counts = np.array(
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
    s = agreement(counts)
    assert s.fleiss_kappa == pytest.approx(0.20993, abs=5e-5) and s.equal_votes and s.n_annotators is None
    assert s.votes_per_item.to_dict() == {14: 10}
    # unequal numbers: item 0 = a,a (P_0 = 1), item 1 = a,b,b (P_1 = (1 + 4 - 3)/6 = 1/3); P̄ = 2/3;
    # pooled p_a = 3/5, p_b = 2/5, P_e = 13/25; kappa = (2/3 - 13/25) / (12/25) = 11/36
    # alpha by hand: o_aa = 2, o_ab = o_ba = 1, o_bb = 1; n = 5, D_o = 2/5, D_e = 12/20; alpha = 1/3
    t = _table([(0, "x", 0), (0, "y", 0), (1, "x", 0), (1, "y", 1), (1, "z", 1)])
    s = agreement(t, n_classes=2)
    assert s.fleiss_kappa == pytest.approx(11 / 36, abs=1e-12)
    assert s.krippendorff_alpha == pytest.approx(1 / 3, abs=1e-12)


def test_agreement_is_undefined_not_perfect_when_every_vote_is_one_class():
    s = agreement(_table([(0, "x", 1), (0, "y", 1), (1, "x", 1), (1, "y", 1)]), n_classes=3)
    assert np.isnan(s.krippendorff_alpha) and np.isnan(s.fleiss_kappa)
    s = agreement(_table([(0, "x", 1), (1, "x", 2)]), n_classes=3)  # nobody saw an item twice
    assert s.pairable_items == 0 and np.isnan(s.krippendorff_alpha) and np.isnan(s.fleiss_kappa)
    with pytest.raises(AnnotationError, match="whole"):
        agreement(np.array([[0.5, 1.5]]))


def test_agreement_counts_answers_not_weights():
    t = _table([(0, "x", 0), (0, "y", 0), (1, "x", 0), (1, "y", 1), (1, "z", 1)])
    weighted = t.assign(weight=[3.0, 0.5, 1.0, 2.0, 0.25])
    a, b = agreement(t, 2), agreement(weighted, 2)
    assert (a.krippendorff_alpha, a.fleiss_kappa, a.n_answers) == (b.krippendorff_alpha, b.fleiss_kappa, b.n_answers)
    row = b.as_frame().iloc[0]
    assert row["votes_min"] == 2 and row["votes_max"] == 3 and row["votes_mean"] == 2.5 and row["annotators"] == 3


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=6), min_size=2, max_size=12), st.integers(0, 10**6))
def test_alpha_does_not_depend_on_who_gave_which_vote(units, seed):
    # nominal alpha depends only on the per-item value counts: the reliability matrix
    # (annotators × items) and the count matrix give the same value
    import krippendorff

    counts = np.array([np.bincount(u, minlength=4) for u in units])
    rng = np.random.default_rng(seed)
    n_annot = max(map(len, units)) + 2
    rel = np.full((n_annot, len(units)), np.nan)
    for j, u in enumerate(units):
        rel[rng.choice(n_annot, size=len(u), replace=False), j] = u
    mine = krippendorff_alpha(counts)
    if np.count_nonzero(counts.sum(0)) < 2:
        assert np.isnan(mine)
    else:
        ref = krippendorff.alpha(reliability_data=rel, level_of_measurement="nominal", value_domain=[0, 1, 2, 3])
        assert mine == pytest.approx(ref, abs=1e-9)


# ------------------------------------------------------------------------------ votes tables


def test_load_votes_gives_items_counts_and_official_labels(tmp_path):
    path = tmp_path / "votes.csv"
    t = _table([(42, "a", 3), (42, "b", 5), (7, "a", 1), (7, "b", 1), (7, "c", 2), (9999, "a", 0)])
    t.assign(weight=[1.0, 1.0, 1.0, 1.0, 2.0, 1.0]).to_csv(path, index=False)
    h = load_votes(path, "mnist", "test")
    test = load_images("mnist", "test")
    assert h.source == str(path) and (h.dataset, h.split) == ("mnist", "test")
    assert h.items.tolist() == [7, 42, 9999] and h.items.dtype == np.int64
    expected = np.zeros((3, 10))
    expected[0, 1], expected[0, 2], expected[1, 3], expected[1, 5], expected[2, 0] = 2, 2, 1, 1, 1
    assert np.array_equal(h.counts, expected)
    np.testing.assert_allclose(h.soft()[0, [1, 2]], [0.5, 0.5])
    assert h.official.tolist() == test.labels[[7, 42, 9999]].tolist() and h.classes == test.classes


def test_unknown_items_are_all_named_with_the_file_and_split(tmp_path):
    path = tmp_path / "votes.csv"
    _table([(5, "a", 1), (10000, "a", 1), (-1, "b", 2), (10005, "b", 1), (10000, "b", 1)]).to_csv(path, index=False)
    with pytest.raises(AnnotationError) as info:
        load_votes(path, "mnist", "test")
    assert str(info.value) == (
        f"{path}: 3 unknown item id(s) outside mnist/test (valid ids 0..9999): -1, 10000, 10005; first at row 1"
    )
    many = tmp_path / "many.parquet"
    _table([(60000 + k, "a", 1) for k in range(12)]).to_parquet(many)
    with pytest.raises(
        AnnotationError,
        match=r"many.parquet: 12 unknown .*mnist/train \(valid ids 0..59999\): "
        r"60000, .*60009, … \(12 in all\)",
    ):
        read_votes(many, "mnist", "train")


@pytest.mark.parametrize(
    "rows, word",
    [
        ([(1, "a", 10)], r"row 0, column 'label': 10 .*0..9"),
        ([(1, "a", 1), (1, "a", 2)], r"rows 0, 1: .*item 1 more than once"),
        ([(1.5, "a", 1)], r"row 0, column 'item': 1.5 .*integer"),
    ],
)
def test_bad_votes_name_the_file_row_and_column(tmp_path, rows, word):
    path = tmp_path / "bad.csv"
    _table(rows).to_csv(path, index=False)
    with pytest.raises(AnnotationError, match=f"bad.csv: {word}"):
        load_votes(path, "mnist", "test")


def test_the_apps_export_reads_as_votes_of_its_split(tmp_path):
    """A study made with the app's library, answered by SIMULATED annotators drawing from a known
    soft label, exported as the app exports: the votes give back exactly the simulated tallies."""
    from softlab.annotate.db import AnnotationDB, Answer
    from softlab.annotate.export import export_annotations
    from softlab.annotate.study import StudySettings, create_study

    test = load_images("mnist", "test")
    study = create_study(
        tmp_path / "study",
        images=test.images,
        labels=test.labels,
        classes=test.classes,
        dataset="mnist",
        split="test",
        size=12,
        seed=3,
        settings=StudySettings(attention_checks=2),
    )
    rng = np.random.default_rng(0)
    soft = np.full(10, 0.02)
    soft[[1, 7]] = 0.42  # the simulated annotators' known label distribution
    tally = {i: np.zeros(10) for i in study.items}
    with AnnotationDB(study.db_path, study.study_id, False) as db:
        for a in range(5):
            for item in (*study.items, *study.attention_items):
                label = int(rng.choice(10, p=soft))
                db.add(Answer(f"simulated-{a}", int(item), label, None, 3, 500.0, item in study.attention_items))
                if item in study.items:
                    tally[item][label] += 1
    out, _ = export_annotations(study.study_dir, tmp_path / "votes.csv", include_attention=True)
    h = load_votes(out, "mnist", "test")  # attention-check rows are left out
    assert h.items.tolist() == sorted(study.items)
    assert np.array_equal(h.counts, np.stack([tally[i] for i in sorted(study.items)]))
    assert len(load_votes(out, "mnist", "test", include_attention=True).items) == 14
    s = agreement(read_votes(out, "mnist", "test"), n_classes=10)
    assert s.n_annotators == 5 and s.votes_per_item.to_dict() == {5: 12} and s.equal_votes
