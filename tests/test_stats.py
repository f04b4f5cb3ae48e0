"""Churn across runs (with its bootstrap interval over items) and the item strata."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from softlab import stats as S
from softlab.metrics import entropy

# ------------------------------------------------------------------- churn


def test_churn_hand_computed():
    pred = np.array(
        [
            [0, 1, 2, 3],
            [0, 1, 2, 0],
            [0, 2, 1, 0],
        ]
    )
    # pairs (0,1): item 3 differs -> 1/4; (0,2): items 1,2,3 -> 3/4; (1,2): items 1,2 -> 2/4
    assert S.churn(pred) == pytest.approx((0.25 + 0.75 + 0.5) / 3)
    np.testing.assert_allclose(S.item_disagreement(pred), [0, 2 / 3, 2 / 3, 2 / 3])


def test_churn_matches_pair_loop_and_accepts_probs():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=(5, 30))
    pred = probs.argmax(-1)
    pairs = list(itertools.combinations(range(5), 2))
    expected = np.mean([np.mean(pred[a] != pred[b]) for a, b in pairs])
    assert S.churn(probs) == pytest.approx(expected)
    assert S.churn(pred) == pytest.approx(expected)
    iv = S.churn_interval(probs, n_boot=300, seed=0)
    assert iv.estimate == pytest.approx(expected)
    assert iv.low <= expected <= iv.high
    assert S.churn(np.stack([pred[0], pred[0]])) == 0.0


def test_churn_needs_two_runs():
    with pytest.raises(ValueError, match="at least 2 runs"):
        S.churn(np.zeros((1, 5), dtype=int))
    with pytest.raises(ValueError, match="probs_or_predictions"):
        S.churn(np.zeros(5))


def test_churn_interval_is_reproducible_with_a_seed():
    probs = np.random.default_rng(4).dirichlet(np.ones(3), size=(4, 50))
    a = S.churn_interval(probs, n_boot=200, seed=7)
    assert a == S.churn_interval(probs, n_boot=200, seed=7)
    assert a != S.churn_interval(probs, n_boot=200, seed=8)
    with pytest.raises(ValueError, match="n_boot"):
        S.churn_interval(probs, n_boot=0)


# ------------------------------------------------------------------- strata


def test_tertiles_equal_sizes_for_distinct_values():
    e = np.arange(9, dtype=float)
    strata = S.difficulty_strata(e)
    assert list(strata) == ["easy"] * 3 + ["medium"] * 3 + ["hard"] * 3


def test_tertile_ties_share_a_stratum():
    e = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.7, 0.7, 0.9])
    t1, _ = S.tertile_thresholds(e)
    assert t1 == 0.0
    strata = S.difficulty_strata(e)
    assert set(strata[:5]) == {"easy"}  # all H=0 items are easy, more than a third
    assert strata[-1] == "hard"
    assert set(strata[6:8]) in ({"medium"}, {"hard"})  # ties never split
    # given thresholds win
    np.testing.assert_array_equal(
        S.difficulty_strata(np.array([0.1, 0.5, 0.9]), (0.2, 0.6)), ["easy", "medium", "hard"]
    )
    with pytest.raises(ValueError, match="thresholds"):
        S.difficulty_strata(e, (0.5, 0.1))
    with pytest.raises(ValueError, match="human_entropy"):
        S.tertile_thresholds(np.array([]))


def test_mode_shifted_and_stratum_masks():
    human = np.array(
        [[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]]
    )
    official = np.array([0, 1, 0, 0, 2, 1])
    shifted = S.mode_shifted(human, official)
    np.testing.assert_array_equal(shifted, [False, False, True, False, False, False])  # tie -> official
    masks = S.stratum_masks(human, official)
    assert list(masks) == list(S.STRATA)
    assert masks["all"].all()
    diff = masks["easy"].astype(int) + masks["medium"] + masks["hard"]
    assert (diff == 1).all()  # difficulty strata partition the items
    np.testing.assert_array_equal(S.difficulty_strata(entropy(human)) == "hard", masks["hard"])
    with pytest.raises(ValueError, match="human"):
        S.stratum_masks(human[0], official[:1])
    assert "mode-shifted" not in S.stratum_masks(human, None)
    with pytest.raises(ValueError, match="official"):
        S.mode_shifted(human, None)
    with pytest.raises(ValueError, match="official"):
        S.mode_shifted(human, official[:3])
