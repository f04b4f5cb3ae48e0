"""Dataset cartography: statistics, regions, AUROC and the relation to human entropy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from softlab import cartography as CA
from softlab.metrics import entropy

# 3 epochs, 2 items, 2 classes
DYN = np.array(
    [
        [[0.9, 0.1], [0.3, 0.7]],
        [[0.6, 0.4], [0.6, 0.4]],
        [[0.3, 0.7], [0.9, 0.1]],
    ]
)


def test_hand_computed_hard_reference():
    st = CA.cartography_stats(DYN, np.array([0, 1]))
    # item 0: p_r = .9,.6,.3 ; item 1: p_r = .7,.4,.1
    np.testing.assert_allclose(st.confidence, [0.6, 0.4])
    pop_sd = np.sqrt(((0.3**2) + 0 + (0.3**2)) / 3)  # population SD (ddof=0)
    np.testing.assert_allclose(st.variability, [pop_sd, pop_sd])
    # argmax per epoch: item0: 0,0,1 ; item1: 1,0,0
    np.testing.assert_allclose(st.correctness, [2 / 3, 1 / 3])


def test_soft_reference_definitions():
    h = np.array([[0.5, 0.5], [0.25, 0.75]])
    st = CA.cartography_stats(DYN, h)
    score = (DYN * h[None]).sum(-1)  # (epochs, items): Σ_c h_c p_c
    np.testing.assert_allclose(st.confidence, score.mean(0))
    np.testing.assert_allclose(st.variability, score.std(0))
    # correctness = mean over epochs of h[argmax p]
    pred = DYN.argmax(-1)
    expected = np.array([[h[i, pred[e, i]] for i in range(2)] for e in range(3)]).mean(0)
    np.testing.assert_allclose(st.correctness, expected)
    # a one-hot soft label gives the hard statistics
    hard = CA.cartography_stats(DYN, np.array([0, 1]))
    onehot = CA.cartography_stats(DYN, np.eye(2)[[0, 1]])
    for a, b in zip(
        (hard.confidence, hard.variability, hard.correctness),
        (onehot.confidence, onehot.variability, onehot.correctness),
    ):
        np.testing.assert_allclose(a, b)


def test_vectorised_over_runs_equals_loop():
    rng = np.random.default_rng(0)
    dyn = rng.dirichlet(np.ones(4), size=(3, 6, 20))  # runs, epochs, items
    labels = rng.integers(0, 4, size=20)
    h = rng.dirichlet(np.ones(4), size=20)
    for ref in (labels, h):
        many = CA.cartography_stats(dyn, ref)
        assert many.confidence.shape == (3, 20)
        for r in range(3):
            one = CA.cartography_stats(dyn[r], ref)
            np.testing.assert_allclose(many.confidence[r], one.confidence)
            np.testing.assert_allclose(many.variability[r], one.variability)
            np.testing.assert_allclose(many.correctness[r], one.correctness)


def test_regions_follow_the_stated_rule():
    conf = np.array([0.9, 0.8, 0.2, 0.1, 0.5, 0.55])
    var = np.array([0.01, 0.02, 0.03, 0.04, 0.30, 0.25])
    regions = CA.assign_regions(conf, var)
    # 2/3 quantile of variability = 0.04 + (1/3)(0.25 - 0.04) = 0.11 -> the two items above it are ambiguous
    assert list(regions) == [
        "easy-to-learn",
        "easy-to-learn",
        "hard-to-learn",
        "hard-to-learn",
        "ambiguous",
        "ambiguous",
    ]
    strict = CA.assign_regions(conf, var, CA.RegionRule(ambiguous_quantile=1.0, confidence_threshold=0.85))
    assert list(strict) == ["easy-to-learn"] + ["hard-to-learn"] * 5
    assert set(CA.assign_regions(conf, np.zeros(6))) <= {"easy-to-learn", "hard-to-learn"}  # equal: none ambiguous
    per_run = CA.assign_regions(np.stack([conf, conf]), np.stack([var, var[::-1]]))
    assert per_run.shape == (2, 6)
    assert list(per_run[1][:2]) == ["ambiguous", "ambiguous"]
    with pytest.raises(ValueError, match="ambiguous_quantile"):
        CA.RegionRule(ambiguous_quantile=1.5)
    with pytest.raises(ValueError, match="confidence/variability"):
        CA.assign_regions(conf, var[:3])


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(3, 50)), 1)  # rounding makes ties
    positive = rng.random(50) < 0.3
    auc = CA.auroc(scores, positive)
    for r in range(3):
        assert auc[r] == pytest.approx(roc_auc_score(positive, scores[r]))
    assert CA.auroc(np.array([0.1, 0.2, 0.3]), np.array([False, False, True])) == 1.0
    assert np.isnan(CA.auroc(np.array([0.1, 0.2]), np.array([True, True])))


def test_human_uncertainty_relation_against_references():
    rng = np.random.default_rng(2)
    human = rng.dirichlet(np.full(3, 0.4), size=40)
    e = entropy(human)
    dyn = rng.dirichlet(np.ones(3), size=(2, 5, 40))
    st = CA.cartography_stats(dyn, human)
    rel = CA.human_uncertainty_relation(st, human)
    amb = e > np.quantile(e, 2 / 3)
    assert amb.sum() == rel["n_ambiguous"][0]
    for r in range(2):
        assert rel["spearman_variability_entropy"][r] == pytest.approx(spearmanr(st.variability[r], e).statistic)
        assert rel["spearman_confidence_entropy"][r] == pytest.approx(spearmanr(st.confidence[r], e).statistic)
        assert rel["auroc_variability_ambiguous"][r] == pytest.approx(roc_auc_score(amb, st.variability[r]))
    # a model whose variability is the human entropy ranks ambiguous items perfectly
    perfect = CA.CartographyStats(confidence=1 - e, variability=e, correctness=np.ones(40))
    rel2 = CA.human_uncertainty_relation(perfect, human, ambiguous_threshold=float(np.median(e)))
    assert float(rel2["auroc_variability_ambiguous"]) == 1.0
    assert float(rel2["spearman_variability_entropy"]) == pytest.approx(1.0)
    assert float(rel2["spearman_confidence_entropy"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="human"):
        CA.human_uncertainty_relation(st, human[:5])


def test_data_map_table():
    rng = np.random.default_rng(3)
    dyn = rng.dirichlet(np.ones(3), size=(2, 4, 10)).astype(np.float32)
    official = rng.integers(0, 3, size=10)
    human = rng.dirichlet(np.ones(3), size=10)
    ids = np.arange(100, 110)
    table = CA.data_map_table(dyn, official, human, item_ids=ids)
    assert len(table) == 2 * 3 * 10
    assert set(table["reference"]) == {"official", "human-mode", "soft"}
    assert set(table["region"]) <= set(CA.REGIONS)
    assert set(table["item"]) == set(ids)
    soft = table[(table.reference == "soft") & (table.run == 1)]
    np.testing.assert_allclose(soft["confidence"], CA.cartography_stats(dyn[1], human).confidence, rtol=1e-6)
    np.testing.assert_allclose(soft["human_entropy"], entropy(human))
    only_official = CA.data_map_table(dyn[0], official)
    assert set(only_official["reference"]) == {"official"} and only_official["human_entropy"].isna().all()
    assert len(only_official) == 10


@pytest.mark.parametrize(
    ("dyn", "ref", "match"),
    [
        (np.ones((2, 3)), np.zeros(2, dtype=int), "dynamics"),
        (np.full((2, 3, 2), 0.7), np.zeros(3, dtype=int), r"dynamics: row \(0, 0\) sums to 1.4"),
        (DYN, np.zeros(3, dtype=int), "reference"),
        (DYN, np.array([0, 5]), "reference"),
        (DYN, np.array([[0.5, 0.6], [0.5, 0.5]]), "reference: row 0 sums to 1.1"),
        (DYN, np.array(["a", "b"]), "dtype"),
    ],
)
def test_bad_input(dyn, ref, match):
    with pytest.raises(ValueError, match=match):
        CA.cartography_stats(dyn, ref)
