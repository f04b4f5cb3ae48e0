"""Seeds that share a draw (a teacher used by several seeds): the cluster-aware variance of
``difference`` tests (softlab.inference.cluster_rows, ArmPredictions.seed_clusters)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats as sps

from softlab import inference as inf
from tests.test_inference import make_arm


def test_one_cluster_per_seed_changes_nothing_and_the_grand_mean_is_kept():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(6, 4))
    np.testing.assert_array_equal(inf.cluster_rows(p, np.arange(6)[::-1]), p)
    np.testing.assert_array_equal(inf.cluster_rows(p, None), p)
    unequal = np.array([0, 0, 0, 1, 2, 2])
    out = inf.cluster_rows(p, unequal)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out.mean(0), p.mean(0))
    np.testing.assert_allclose(out[0], 3 / 6 * p[:3].sum(0))
    with pytest.raises(ValueError, match="clusters: expected one cluster id per seed"):
        inf.cluster_rows(p, np.zeros(5, dtype=int))


def test_copies_of_a_seed_add_no_information():
    """Each of 5 seeds run twice with the same draw: clustered by draw, the variance and df are
    those of the 5 distinct seeds; treated as 10 seeds they would be understated."""
    rng = np.random.default_rng(1)
    c, b = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    once = inf.paired_difference(c, b)
    twice = inf.paired_difference(np.repeat(c, 2, 0), np.repeat(b, 2, 0), clusters=np.repeat(np.arange(5), 2))
    assert twice.estimate == pytest.approx(once.estimate)
    assert twice.se == pytest.approx(once.se) and twice.df == pytest.approx(once.df)
    assert twice.relative_se == pytest.approx(once.relative_se)
    naive = inf.paired_difference(np.repeat(c, 2, 0), np.repeat(b, 2, 0))
    assert naive.se < once.se


def test_clustered_intervals_cover_when_seeds_share_a_teacher():
    """x_sg = t_k(s) + a_s + b_g + e_sg with 10 seeds on 5 teachers (seed s uses teacher s mod 5):
    the clustered t interval covers the mean 0 at about the nominal rate, the seed-level one does not."""
    rng = np.random.default_rng(2)
    s, g, k, reps = 10, 12, 5, 3000
    teacher = np.arange(s) % k
    x = (
        1.0 * rng.normal(size=(reps, k, 1))[:, teacher]
        + 0.3 * rng.normal(size=(reps, s, 1))
        + 0.3 * rng.normal(size=(reps, 1, g))
        + 1.0 * rng.normal(size=(reps, s, g))
    )
    mean = x.mean(axis=(1, 2))
    cover = {}
    for name, clusters in (("clustered", teacher), ("seed-level", None)):
        est = np.array([inf.crossed_variance(inf.cluster_rows(t, clusters)) for t in x])
        cover[name] = float((np.abs(mean) <= sps.t.ppf(0.975, est[:, 1]) * np.sqrt(est[:, 0])).mean())
    assert cover["clustered"] >= 0.93
    assert cover["seed-level"] < 0.90


def test_seed_clusters_reach_the_verdict_table_and_are_validated():
    arm = make_arm("fashion-mnist", seeds=10)
    claims = inf.load_claims()
    plain = inf.verdict_table({"fashion-mnist": arm}, claims)
    shared = dataclasses.replace(arm, seed_clusters=np.arange(10) % 3)
    clustered = inf.verdict_table({"fashion-mnist": shared}, claims)
    test = "soft-calibration-hard-vs-synthetic"
    a, b = plain[plain["test"] == test].iloc[0], clustered[clustered["test"] == test].iloc[0]
    assert "3 seed clusters" in b["method"] and "clusters" not in a["method"]
    assert a["estimate"] == b["estimate"] and a["se"] != b["se"]
    with pytest.raises(ValueError, match="seed_clusters: expected one integer id per seed"):
        dataclasses.replace(arm, seed_clusters=np.zeros(9, dtype=int))


def test_only_tests_of_the_clustered_conditions_are_clustered():
    arm = dataclasses.replace(
        make_arm("fashion-mnist", seeds=6),
        seed_clusters=np.array([0, 1, 2, 0, 1, 2]),
        clustered_conditions=("human/synthetic", "human/synthetic+ts"),
    )
    np.testing.assert_array_equal(arm.clusters_for(("human/human", "human/synthetic")), [0, 1, 2, 0, 1, 2])
    assert arm.clusters_for(("human/human", "human/hard+ts")) is None
    assert dataclasses.replace(arm, clustered_conditions=()).clusters_for(("human/human",)) is not None
