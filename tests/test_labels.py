"""Label conditions (mode × shape): hand-computed cases, invariants (hypothesis), bad input, real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import brentq
from scipy.special import softmax
from scipy.stats import entropy as scipy_entropy

from softlab import labels as L
from softlab.labels import (
    ALL_CONDITIONS,
    CONDITIONS,
    build_conditions,
    conditions_for_items,
    parse_condition,
    place_mode,
)

F32_TOL = 1e-5  # float32 targets vs float64 references (sums, means of entropy / mass)
SETTINGS = settings(max_examples=50, deadline=None)


def onehot(labels, c):
    return np.eye(c, dtype=np.float32)[np.asarray(labels)]


# --------------------------------------------------------------------------- names


def test_condition_names():
    assert len(CONDITIONS) == 10 and len(set(CONDITIONS)) == 10
    assert CONDITIONS[0] == "original/hard" and CONDITIONS[-1] == "human/human"
    assert {parse_condition(n) for n in CONDITIONS} == {(m, s) for m in L.MODES for s in L.SHAPES}
    assert parse_condition("human/human-shuffled") == ("human", "human-shuffled")
    assert parse_condition("human/smooth-mass") == ("human", "smooth-mass")
    assert set(ALL_CONDITIONS) - set(CONDITIONS) == {
        "original/smooth-mass",
        "human/smooth-mass",
        "original/synthetic-own-data",
        "human/synthetic-own-data",
    }
    for bad in ("human", "human/soft", "Human/human", "original/hard/x", ""):
        with pytest.raises(ValueError, match=r"condition: unknown condition"):
            parse_condition(bad)


# --------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_single_item():
    # C = 3, y = 1, h = (0.5, 0.3, 0.2): human mode m = 0 (mode-shifted).
    h = np.array([[0.5, 0.3, 0.2]])
    teacher = np.array([[0.1, 0.2, 0.7]])
    lc = build_conditions(
        np.array([1]), np.array([0]), h, teacher, conditions=ALL_CONDITIONS, own_teacher_probs=teacher
    )
    t = {n: lc.target(n)[0].astype(np.float64) for n in ALL_CONDITIONS}
    np.testing.assert_allclose(t["original/hard"], [0, 1, 0])
    np.testing.assert_allclose(t["human/hard"], [1, 0, 0])
    # mass-matched: mean off-mode mass 0.5 -> eps = 3/2 * 0.5 = 0.75; smooth = 0.25 * onehot + 0.25
    assert lc.fitted["smoothing_epsilon_mass"] == pytest.approx(0.75)
    np.testing.assert_allclose(t["original/smooth-mass"], [0.25, 0.5, 0.25], atol=1e-7)
    np.testing.assert_allclose(t["human/smooth-mass"], [0.5, 0.25, 0.25], atol=1e-7)
    # entropy-matched: independent reference with scipy (brentq on eps)
    target_h = scipy_entropy([0.5, 0.3, 0.2])
    ref_eps = brentq(lambda e: scipy_entropy([1 - e + e / 3, e / 3, e / 3]) - target_h, 1e-9, 1 - 1e-9, xtol=1e-14)
    assert lc.fitted["smoothing_epsilon"] == pytest.approx(ref_eps, rel=1e-9)
    top, rest = 1 - ref_eps + ref_eps / 3, ref_eps / 3
    np.testing.assert_allclose(t["original/smooth"], [rest, top, rest], atol=1e-7)
    np.testing.assert_allclose(t["human/smooth"], [top, rest, rest], atol=1e-7)
    np.testing.assert_allclose(t["human/human"], [0.5, 0.3, 0.2], atol=1e-7)
    np.testing.assert_allclose(t["original/human"], [0.3, 0.5, 0.2], atol=1e-7)  # mode swapped back to y
    # single item: shuffling can only give the item its own distribution
    np.testing.assert_allclose(t["human/human-shuffled"], t["human/human"])
    np.testing.assert_allclose(t["original/human-shuffled"], t["original/human"])
    # synthetic: independent reference temperature with scipy (brentq on T, softmax of log p / T)
    ref_t = brentq(lambda T: scipy_entropy(softmax(np.log(teacher[0]) / T)) - target_h, 1e-3, 1e3, xtol=1e-14)
    assert lc.fitted["synthetic_temperature"] == pytest.approx(ref_t, rel=1e-6)
    ref = softmax(np.log(teacher[0]) / ref_t)  # argmax 2
    np.testing.assert_allclose(t["human/synthetic"], ref[[2, 1, 0]], atol=1e-6)  # swap 2 <-> m = 0
    np.testing.assert_allclose(t["original/synthetic"], ref[[0, 2, 1]], atol=1e-6)  # swap 2 <-> y = 1
    assert scipy_entropy(t["original/synthetic"]) == pytest.approx(target_h, abs=F32_TOL)


def test_tie_rules():
    # item 0: y = 1, h tied between 0 and 1 -> m = 1 (towards official), nothing moves.
    # item 1: y = 2, h tied between 0 and 1 -> m = 0 (lowest index); original places on 2 by
    #         swapping the shape's own argmax (ties towards 2, else lowest index = 0) with 2.
    h = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    lc = build_conditions(np.array([1, 2]), np.array([0, 1]), h, conditions=["original/human", "human/human"])
    assert lc.human_mode.tolist() == [1, 0]
    np.testing.assert_allclose(lc.target("human/human"), h.astype(np.float32))
    np.testing.assert_allclose(lc.target("original/human")[0], [0.4, 0.4, 0.2], atol=1e-7)
    np.testing.assert_allclose(lc.target("original/human")[1], [0.2, 0.4, 0.4], atol=1e-7)
    s = lc.summary()
    assert s.loc["human/human", "frac_top_tied"] == 1.0
    assert s.loc["human/human", "frac_mode_shifted"] == 0.5
    assert s.loc["original/human", "frac_argmax_official"] == 1.0


def test_place_mode_ties_towards_required_label():
    shape = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
    out = place_mode(shape, np.array([1, 2, 0]))
    np.testing.assert_array_equal(out, [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(shape[0], [0.4, 0.4, 0.2])  # input untouched


def test_unannotated_items_stay_one_hot_and_table():
    official = np.array([2, 0, 1, 1, 0])
    counts = np.array([[3, 1, 0], [0, 0, 4]])  # items 3 (y=1, m=0) and 1 (y=0, m=2)
    teacher = np.full((5, 3), 1 / 3)
    lc = build_conditions(official, np.array([3, 1]), counts, teacher)
    for name in CONDITIONS:
        np.testing.assert_array_equal(lc.target(name)[[0, 2, 4]], onehot([2, 1, 0], 3))
        assert lc.target(name).dtype == np.float32 and lc.target(name).shape == (5, 3)
        with pytest.raises(ValueError):  # read-only
            lc.target(name)[0, 0] = 0.5
    tab = lc.items
    assert tab["annotated"].tolist() == [False, True, False, True, False]
    assert tab["votes"].iloc[[1, 3]].tolist() == [4.0, 4.0] and tab["votes"].iloc[[0, 2, 4]].isna().all()
    assert tab["human_mode"].iloc[[1, 3]].tolist() == [2, 0] and tab["human_mode"].iloc[0] is pd.NA
    assert tab["mode_shifted"].tolist() == [False, True, False, True, False]
    assert tab["human_entropy"].iloc[3] == pytest.approx(scipy_entropy([0.75, 0.25]))
    assert tab["human_entropy"].iloc[1] == 0.0
    np.testing.assert_allclose(tab["target_entropy[human/human]"], [0, 0, 0, scipy_entropy([0.75, 0.25]), 0], atol=1e-6)
    # annotated rows in annotated_items order
    np.testing.assert_array_equal(lc.annotated("human/hard"), onehot([0, 2], 3))
    only = conditions_for_items(official, np.array([3, 1]), counts, teacher, conditions=["human/hard"])
    assert list(only) == ["human/hard"]
    np.testing.assert_array_equal(only["human/hard"], onehot([0, 2], 3))
    # uniform teacher: every temperature gives log C > the human mean entropy, out of reach:
    # T is clamped to the lower bound and the gap reported
    assert lc.fitted["synthetic_temperature"] == pytest.approx(np.exp(L.LOG_T_BOUNDS[0]))
    human_entropy = scipy_entropy([0.75, 0.25]) / 2
    assert lc.fitted["synthetic_entropy_gap"] == pytest.approx(np.log(3) - human_entropy)


def test_teacher_rows_all_items_or_annotated_only_agree():
    rng = np.random.default_rng(1)
    official = rng.integers(0, 4, 20)
    items = np.array([5, 2, 17, 9, 11])
    counts = rng.integers(0, 5, (5, 4)) + np.eye(4, dtype=int)[official[items]]
    teacher = rng.dirichlet(np.ones(4), 20)
    a = build_conditions(official, items, counts, teacher, conditions="human/synthetic")
    b = build_conditions(official, items, counts, teacher[items], conditions="human/synthetic")
    np.testing.assert_array_equal(a.target("human/synthetic"), b.target("human/synthetic"))


def test_human_kind():
    official = np.array([0, 1])
    single = np.array([[1, 0], [1, 0]])  # one vote each: every row sums to 1
    assert "votes" not in build_conditions(official, [0, 1], single, conditions="human/hard").items
    tab = build_conditions(official, [0, 1], single, conditions="human/hard", human_kind="counts").items
    assert tab["votes"].tolist() == [1.0, 1.0]
    frac = np.array([[1.5, 0.5], [0.25, 2.0]])  # weighted counts (e.g. spread 'neither' votes)
    lc = build_conditions(official, [0, 1], frac, conditions="human/human", human_kind="counts")
    np.testing.assert_allclose(lc.target("human/human"), [[0.75, 0.25], [1 / 9, 8 / 9]], atol=1e-7)
    with pytest.raises(ValueError, match=r"human: row 0 sums to 2 and the values are not integer"):
        build_conditions(official, [0, 1], frac, conditions="human/human")


# --------------------------------------------------------------------------- invariants


@st.composite
def problems(draw):
    c = draw(st.integers(2, 5))
    n_items = draw(st.integers(1, 14))
    official = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n_items, max_size=n_items)))
    mask = draw(st.lists(st.booleans(), min_size=n_items, max_size=n_items).filter(any))
    items = np.array(draw(st.permutations(np.flatnonzero(mask).tolist())), dtype=np.int64)
    counts = draw(arrays(np.int64, (len(items), c), elements=st.integers(0, 4)))
    counts[np.arange(len(items)), draw(st.integers(0, c - 1))] += 1  # at least one vote per item
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    teacher_kind = draw(st.sampled_from(["dirichlet", "sparse"]))
    if teacher_kind == "dirichlet":
        teacher = rng.dirichlet(np.full(c, 0.5), n_items)
    else:  # exact zeros and ties
        raw = rng.integers(0, 3, (n_items, c)).astype(np.float64)
        raw[:, 0] += 1
        teacher = raw / raw.sum(axis=1, keepdims=True)
    return official, items, counts, teacher.astype(np.float32), draw(st.integers(0, 2**16))


def fitted_within_bounds(lc):
    t = lc.fitted["synthetic_temperature"]
    return np.exp(L.LOG_T_BOUNDS[0]) < t < np.exp(L.LOG_T_BOUNDS[1])


@SETTINGS
@given(problems())
def test_targets_are_distributions_with_required_argmax(problem):
    official, items, counts, teacher, seed = problem
    lc = build_conditions(official, items, counts, teacher, seed=seed)
    c = counts.shape[1]
    y = official[items]
    m = lc.human_mode
    unannotated = np.setdiff1d(np.arange(len(official)), items)
    for name in CONDITIONS:
        mode, _ = parse_condition(name)
        p = lc.target(name)
        assert p.dtype == np.float32 and p.shape == (len(official), c)
        assert (p >= 0).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=F32_TOL)
        np.testing.assert_array_equal(p[unannotated], onehot(official[unannotated], c))
        required = y if mode == "original" else m
        pa = lc.annotated(name)
        # argmax is the required label, ties broken towards it: its entry is the row maximum
        assert (pa[np.arange(len(items)), required] == pa.max(axis=1)).all(), name
        assert (L.shape_argmax(pa, required) == required).all()


@SETTINGS
@given(problems())
def test_fixed_points_and_two_entry_placement(problem):
    official, items, counts, teacher, seed = problem
    lc = build_conditions(
        official, items, counts, teacher, seed=seed, conditions=ALL_CONDITIONS, own_teacher_probs=teacher
    )
    c = counts.shape[1]
    h = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
    y = official[items]
    ref_mode = np.array([y_i if row[y_i] == row.max() else int(np.argmax(row)) for row, y_i in zip(counts, y)])
    np.testing.assert_array_equal(lc.human_mode, ref_mode)
    np.testing.assert_array_equal(lc.target("original/hard"), onehot(official, c))
    np.testing.assert_array_equal(lc.annotated("human/hard"), onehot(ref_mode, c))
    np.testing.assert_allclose(lc.annotated("human/human"), h, atol=1e-7)
    # placing a shape changes at most two entries of the unplaced shape and keeps each row's
    # multiset of entries (human/human and human/human-shuffled are unplaced shapes themselves)
    pos = {int(i): k for k, i in enumerate(items)}
    src_m = lc.items["shuffled_from"].to_numpy()[items].astype(np.int64)
    src_y = lc.items["shuffled_from_official_group"].to_numpy()[items].astype(np.int64)
    raw = {
        "human": {m: lc.annotated("human/human") for m in L.MODES},
        "human-shuffled": {"human": lc.annotated("human/human-shuffled"), "original": h[[pos[s] for s in src_y]]},
        "synthetic": {
            m: L.temper(teacher[items], lc.fitted["synthetic_temperature"]).astype(np.float32) for m in L.MODES
        },
        "smooth": {m: L.smooth_shape(y, c, lc.fitted["smoothing_epsilon"]).astype(np.float32) for m in L.MODES},
        "smooth-mass": {
            m: L.smooth_shape(y, c, lc.fitted["smoothing_epsilon_mass"]).astype(np.float32) for m in L.MODES
        },
        "hard": {m: onehot(y, c) for m in L.MODES},
    }
    for shape, by_mode in raw.items():
        for mode, unplaced in by_mode.items():
            placed = lc.annotated(f"{mode}/{shape}")
            assert ((placed != unplaced).sum(axis=1) <= 2).all(), (mode, shape)
            np.testing.assert_array_equal(np.sort(placed, axis=1), np.sort(unplaced, axis=1))
    # human/human-shuffled is the shuffled human shape itself (its argmax already is the mode)
    np.testing.assert_allclose(lc.annotated("human/human-shuffled"), h[[pos[s] for s in src_m]], atol=1e-7)


@SETTINGS
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(2, 5)),
        elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0]),
    ),
    st.data(),
)
def test_place_mode_properties(shape, data):
    label = np.array(data.draw(st.lists(st.integers(0, shape.shape[1] - 1), min_size=len(shape), max_size=len(shape))))
    out = place_mode(shape, label)
    assert ((out != shape).sum(axis=1) <= 2).all()
    np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(shape, axis=1))
    rows = np.arange(len(shape))
    assert (out[rows, label] == shape.max(axis=1)).all()
    already = shape[rows, label] == shape.max(axis=1)
    np.testing.assert_array_equal(out[already], shape[already])


@SETTINGS
@given(problems())
def test_softness_matching(problem):
    official, items, counts, teacher, seed = problem
    own = teacher[:, ::-1].copy()  # another teacher's probabilities
    lc = build_conditions(official, items, counts, teacher, seed=seed, conditions=ALL_CONDITIONS, own_teacher_probs=own)
    h = counts / counts.sum(axis=1, keepdims=True)
    human_mass = (1 - h.max(axis=1)).mean()
    human_entropy = scipy_entropy(h, axis=1).mean()
    assert lc.fitted["human_mean_entropy"] == pytest.approx(human_entropy, abs=1e-12)
    assert 0.0 <= lc.fitted["smoothing_epsilon"] <= 1.0
    assert 0.0 <= lc.fitted["smoothing_epsilon_mass"] <= 1.0
    for mode in L.MODES:
        smooth_mass = lc.annotated(f"{mode}/smooth-mass").astype(np.float64)
        assert (1 - smooth_mass.max(axis=1)).mean() == pytest.approx(human_mass, abs=F32_TOL)
        smooth = lc.annotated(f"{mode}/smooth").astype(np.float64)
        assert scipy_entropy(smooth, axis=1).mean() == pytest.approx(human_entropy, abs=F32_TOL)
        synth = lc.annotated(f"{mode}/synthetic").astype(np.float64)
        achieved = scipy_entropy(synth, axis=1).mean()
        if fitted_within_bounds(lc):
            assert abs(lc.fitted["synthetic_entropy_gap"]) <= 1e-9
            assert achieved == pytest.approx(human_entropy, abs=F32_TOL)
        else:  # out of reach: clamped, and the reported gap is the real one
            assert achieved - human_entropy == pytest.approx(lc.fitted["synthetic_entropy_gap"], abs=F32_TOL)
        own_t = lc.fitted["own_data_temperature"]
        if np.exp(L.LOG_T_BOUNDS[0]) < own_t < np.exp(L.LOG_T_BOUNDS[1]):
            own_synth = lc.annotated(f"{mode}/synthetic-own-data").astype(np.float64)
            assert scipy_entropy(own_synth, axis=1).mean() == pytest.approx(human_entropy, abs=F32_TOL)
        # shuffled and own human shapes carry exactly the human amount of softness
        for shape in ("human", "human-shuffled"):
            q = lc.annotated(f"{mode}/{shape}").astype(np.float64)
            assert scipy_entropy(q, axis=1).mean() == pytest.approx(human_entropy, abs=F32_TOL)
    s = lc.summary()
    assert s.loc["human/human", "mean_entropy"] == pytest.approx(human_entropy, abs=F32_TOL)
    assert s.loc["human/smooth-mass", "mean_off_mode_mass"] == pytest.approx(human_mass, abs=F32_TOL)
    assert s.loc["human/smooth", "mean_entropy"] == pytest.approx(human_entropy, abs=F32_TOL)
    assert s.loc["human/hard", "frac_mode_shifted"] == pytest.approx(lc.fitted["human_frac_mode_shifted"])


@SETTINGS
@given(problems())
def test_shuffle_within_human_mode_groups_and_official_label_groups_and_determinism(problem):
    official, items, counts, teacher, seed = problem
    lc = build_conditions(official, items, counts, teacher, seed=seed)
    h = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
    shuffled = lc.annotated("human/human-shuffled")
    for g in np.unique(lc.human_mode):
        in_g = lc.human_mode == g
        a = sorted(map(tuple, shuffled[in_g].tolist()))
        b = sorted(map(tuple, h[in_g].tolist()))
        assert a == b
    src = lc.items["shuffled_from"].to_numpy()[items].astype(np.int64)
    mode_of = dict(zip(items.tolist(), lc.human_mode.tolist()))
    assert [mode_of[s] for s in src] == lc.human_mode.tolist()
    # the original row draws from items with the same OFFICIAL label: the group cannot leak
    # the human mode of a mode-shifted item
    src_y = lc.items["shuffled_from_official_group"].to_numpy()[items].astype(np.int64)
    np.testing.assert_array_equal(official[src_y], official[items])
    pos = {int(i): k for k, i in enumerate(items)}
    unplaced = h[[pos[s] for s in src_y]]
    np.testing.assert_array_equal(np.sort(lc.annotated("original/human-shuffled"), axis=1), np.sort(unplaced, axis=1))
    again = build_conditions(official, items, counts, teacher, seed=seed)
    for name in CONDITIONS:
        np.testing.assert_array_equal(lc.target(name), again.target(name))
    pd.testing.assert_frame_equal(lc.items, again.items)
    assert lc.fitted == again.fitted


def test_shuffle_is_seeded_and_moves_rows():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, (60, 3)) + np.array([20, 0, 0])  # all human modes 0: one group
    official = np.zeros(60, dtype=np.int64)
    a = build_conditions(official, np.arange(60), counts, conditions="human/human-shuffled", seed=1)
    b = build_conditions(official, np.arange(60), counts, conditions="human/human-shuffled", seed=2)
    fa, fb = a.items["shuffled_from"].to_numpy(), b.items["shuffled_from"].to_numpy()
    assert sorted(fa) == list(range(60)) and (fa != np.arange(60)).any() and (fa != fb).any()


# --------------------------------------------------------------------------- bad input

OFF = np.array([0, 1, 2, 1])
ITEMS = np.array([0, 2])
H = np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
T = np.full((4, 3), 1 / 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(human=H[:1]), r"human: has 1 rows but annotated_items lists 2"),
        (dict(human=H[:, :1]), r"human: expected at least 2 classes"),
        (dict(human=H[0]), r"human: expected a 2-D array"),
        (
            dict(human=np.array([[0.6, 0.3, 0.0], [0.1, 0.2, 0.7]]), human_kind="distribution"),
            r"human: row 0 sums to 0.9; expected probabilities summing to 1 \(within 0.001\)",
        ),
        (
            dict(human=np.array([[0.6, 0.3, 0.0], [0.1, 0.2, 0.7]])),
            r"human: row 0 sums to 0.9 and the values are not integer",
        ),
        (
            dict(human=np.array([[0.6, -0.1, 0.5], [0.1, 0.2, 0.7]])),
            r"human: row 0, column 1: -0.1 is not a vote count or probability \(expected a finite number >= 0\)",
        ),
        (dict(human=np.array([[0, 0, 0], [1, 2, 3]]), human_kind="counts"), r"human: row 0 has no votes"),
        (dict(human_kind="soft"), r"human_kind: expected"),
        (dict(official=np.array([0, 1, 3, 1])), r"official: entry 2 is 3, outside the class set 0..2"),
        (dict(official=np.array([0, -1, 2, 1])), r"official: entry 1 is -1, outside the class set"),
        (dict(official=np.array([[0, 1, 2, 1]])), r"official: expected a 1-D array"),
        (dict(official=np.array([0.5, 1, 2, 1])), r"official: expected integer class indices"),
        (dict(annotated_items=np.array([0, 4])), r"annotated_items: entry 1 is 4, outside 0..3"),
        (dict(annotated_items=np.array([2, 2])), r"annotated_items: item 2 is listed more than once"),
        (dict(annotated_items=np.array([], dtype=int), human=np.zeros((0, 3))), r"annotated_items: no annotated items"),
        (dict(teacher_probs=None), r"teacher_probs: required for the 'synthetic' shape"),
        (dict(teacher_probs=np.full((3, 3), 1 / 3)), r"teacher_probs: expected shape \(4, 3\) .* or \(2, 3\)"),
        (dict(teacher_probs=np.full((4, 2), 0.5)), r"teacher_probs: expected shape"),
        (
            dict(teacher_probs=np.array([[0.5, 0.5, 0.5]] * 4)),
            r"teacher_probs \(rows of annotated_items\): row 0 sums to 1.5",
        ),
        (dict(teacher_probs=np.array([[np.nan, 0.5, 0.5]] * 2)), r"teacher_probs: row 0, column 0: nan"),
        (dict(conditions=["human/hard", "human/soft"]), r"condition: unknown condition 'human/soft'"),
        (dict(conditions=[]), r"conditions: empty"),
        (dict(conditions=["human/hard", "human/hard"]), r"conditions: 'human/hard' is listed more than once"),
        (dict(seed=-1), r"seed: expected a non-negative integer"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(official=OFF, annotated_items=ITEMS, human=H, teacher_probs=T)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_conditions(**args)


def test_synthetic_not_needed_without_teacher():
    lc = build_conditions(OFF, ITEMS, H, conditions=["original/smooth", "human/human"])
    assert lc.conditions == ("original/smooth", "human/human")
    assert np.isnan(lc.fitted["synthetic_temperature"])
    with pytest.raises(ValueError, match=r"condition: 'original/hard' was not built"):
        lc.target("original/hard")


# --------------------------------------------------------------------------- real data


def test_fashion_mnist_h_all_conditions():
    from softlab.data import load_human

    fmh = load_human("fashion-mnist-h")
    official = np.zeros(10000, dtype=np.int64)
    official[fmh.items] = fmh.official
    # teacher stand-in: seeded Dirichlet noise mixed with the official one-hot (no ties)
    rng = np.random.default_rng(0)
    teacher = (0.5 * rng.dirichlet(np.full(10, 0.3), 10000) + 0.5 * np.eye(10)[official]).astype(np.float32)
    lc = build_conditions(
        official, fmh.items, fmh.counts, teacher, seed=0, conditions=ALL_CONDITIONS, own_teacher_probs=teacher
    )
    s = lc.summary()
    human_entropy = scipy_entropy(fmh.counts, axis=1).mean()
    human_mass = (1 - (fmh.counts / fmh.counts.sum(1, keepdims=True)).max(1)).mean()
    assert 0.0 < lc.fitted["smoothing_epsilon"] < 1.0
    assert 0.0 < lc.fitted["synthetic_temperature"] < 10.0
    assert lc.fitted["human_frac_mode_shifted"] == pytest.approx(0.1754, abs=1e-4)
    for mode in L.MODES:
        for shape in ("synthetic", "human-shuffled", "human"):
            assert s.loc[f"{mode}/{shape}", "mean_entropy"] == pytest.approx(human_entropy, abs=F32_TOL)
        assert s.loc[f"{mode}/smooth-mass", "mean_off_mode_mass"] == pytest.approx(human_mass, abs=F32_TOL)
        assert s.loc[f"{mode}/smooth", "mean_entropy"] == pytest.approx(human_entropy, abs=F32_TOL)
        # mass matching over-smooths: far more entropy than the human labels
        assert s.loc[f"{mode}/smooth-mass", "mean_entropy"] > human_entropy + 0.3
        shifted = s.loc[[f"{mode}/{shape}" for shape in L.SHAPES], "frac_mode_shifted"]
        np.testing.assert_allclose(shifted, 0.1754 if mode == "human" else 0.0, atol=1e-4)
    assert s.loc["human/human", "mean_tv_to_human"] == pytest.approx(0.0, abs=1e-6)
    assert lc.items["votes"].between(53, 79).all()
    assert lc.items["mode_shifted"].mean() == pytest.approx(0.1754, abs=1e-4)


def test_own_data_shape_tempers_its_own_teacher_with_an_independently_fitted_temperature():
    """``synthetic-own-data`` uses ``own_teacher_probs`` (never ``teacher_probs``), tempered with the T
    whose mean entropy equals the mean human entropy (checked with scipy's brentq), then placed."""
    rng = np.random.default_rng(3)
    n, c = 40, 4
    official = rng.integers(0, c, n)
    items = np.arange(0, n, 2)
    counts = rng.integers(0, 5, (len(items), c))
    counts[:, 0] += 1
    big, own = rng.dirichlet(np.full(c, 0.4), n), rng.dirichlet(np.full(c, 0.7), n)
    lc = build_conditions(
        official, items, counts, big, conditions=("human/synthetic", "human/synthetic-own-data"), own_teacher_probs=own
    )
    h = counts / counts.sum(axis=1, keepdims=True)
    target = scipy_entropy(h, axis=1).mean()
    log_own = np.log(own[items])
    log_t = brentq(lambda lt: scipy_entropy(softmax(log_own / np.exp(lt), axis=1), axis=1).mean() - target, -12, 12)
    assert lc.fitted["own_data_temperature"] == pytest.approx(np.exp(log_t), rel=1e-6)
    expected = place_mode(softmax(log_own / np.exp(log_t), axis=1), lc.human_mode)
    np.testing.assert_allclose(lc.annotated("human/synthetic-own-data"), expected, atol=1e-6)
    assert not np.allclose(lc.annotated("human/synthetic-own-data"), lc.annotated("human/synthetic"))
    assert lc.summary().loc["human/synthetic-own-data", "parameter"] == lc.fitted["own_data_temperature"]
    with pytest.raises(ValueError, match=r"own_teacher_probs: required for the 'synthetic-own-data' shape"):
        build_conditions(official, items, counts, big, conditions="human/synthetic-own-data")


def test_shape_table_is_the_one_source_of_the_shape_names_and_their_inputs():
    assert L.SHAPES == ("hard", "smooth", "synthetic", "human-shuffled", "human")
    assert L.EXTRA_SHAPES == ("smooth-mass", "synthetic-own-data")
    official, items = np.array([0, 1, 2, 1]), np.array([0, 1, 3])
    counts = np.array([[3, 1, 0], [0, 2, 2], [1, 1, 2]])
    probs = np.full((4, 3), 1 / 3)
    for spec in L.SHAPE_SPECS:
        cond = f"human/{spec.name}"
        if spec.needs:  # the named input is required, and enough
            with pytest.raises(ValueError, match=spec.needs):
                build_conditions(official, items, counts, conditions=cond)
        lc = build_conditions(official, items, counts, conditions=cond, **({spec.needs: probs} if spec.needs else {}))
        assert lc.target(cond).shape == (4, 3)
