"""Seed statistics, bootstrap intervals, churn and strata."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from softlab import stats as S
from softlab.metrics import entropy

# ------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_true_mean_in_simulation():
    """Over 200 simulated samples (n=40, true mean 1.5) the 95% interval covers the true mean
    close to 95% of the time (percentile bootstrap slightly under-covers at small n)."""
    rng = np.random.default_rng(123)
    true_mean = 1.5
    covered = 0
    n_sim = 200
    for i in range(n_sim):
        sample = rng.normal(true_mean, 2.0, size=40)
        iv = S.bootstrap_ci(sample, n_boot=400, seed=i)
        covered += iv.low <= true_mean <= iv.high
        assert iv.low <= iv.estimate <= iv.high
    assert 0.88 <= covered / n_sim <= 0.99


def test_bootstrap_is_reproducible_with_a_seed():
    values = np.random.default_rng(0).exponential(size=25)
    a = S.bootstrap_ci(values, n_boot=500, seed=7)
    b = S.bootstrap_ci(values, n_boot=500, seed=7)
    c = S.bootstrap_ci(values, n_boot=500, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == pytest.approx(values.mean())
    assert a.n == 25 and a.confidence == 0.95
    x = S.cluster_bootstrap_mean(values, n_boot=500, seed=7)
    assert x == S.cluster_bootstrap_mean(values, n_boot=500, seed=7)


def test_bootstrap_on_large_sample_matches_normal_theory():
    """Large samples are resampled in chunks; the width must match ±1.96 standard errors."""
    values = np.random.default_rng(1).normal(size=5000)
    iv = S.bootstrap_ci(values, n_boot=600, seed=0)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_median_statistic_and_constant_sample():
    iv = S.bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), statistic=np.median, n_boot=300, seed=0)
    assert iv.estimate == 3.0
    const = S.bootstrap_ci(np.full(6, 2.5), n_boot=100)
    assert const.low == const.high == const.estimate == 2.5


def test_cluster_bootstrap_resamples_whole_clusters():
    # two clusters with constant values: every resample mean is 0, 10 or 5 (by cluster sizes)
    values = np.array([0.0, 0.0, 10.0, 10.0])
    clusters = np.array([0, 0, 1, 1])
    iv = S.cluster_bootstrap_mean(values, clusters, n_boot=400, seed=0)
    assert iv.n == 2 and iv.estimate == 5.0
    assert iv.low == 0.0 and iv.high == 10.0


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="values"):
        S.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        S.bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="n_boot"):
        S.bootstrap_ci(np.array([1.0]), n_boot=0)
    with pytest.raises(ValueError, match="confidence"):
        S.bootstrap_ci(np.array([1.0]), confidence=1.5)
    with pytest.raises(ValueError, match="clusters"):
        S.cluster_bootstrap_mean(np.array([1.0, 2.0]), np.array([0]))


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


# ------------------------------------------------------------------- tidy-table statistics


def make_table(rng: np.random.Generator, seeds: int = 6, folds: int = 3) -> pd.DataFrame:
    rows = []
    for cond, shift, scale in (("original/hard", 0.0, 1.0), ("human/human", 0.1, 0.5)):
        mode, shape = cond.split("/")
        for s in range(seeds):
            seed_effect = rng.normal(0, 0.05)
            for f in range(folds):
                for metric in ("accuracy", "ece"):
                    rows.append(
                        dict(
                            dataset="d",
                            condition=cond,
                            mode=mode,
                            shape=shape,
                            seed=s,
                            fold=f,
                            split="heldout",
                            stratum="all",
                            metric=metric,
                            value=0.5 + shift + scale * seed_effect + rng.normal(0, 0.01),
                        )
                    )
    return pd.DataFrame(rows)


def test_seed_summary_averages_folds_then_seeds():
    df = pd.DataFrame(
        dict(
            dataset="d",
            condition="c",
            mode="m",
            shape="s",
            split="x",
            stratum="all",
            metric="acc",
            seed=[0, 0, 1, 1, 2, 2],
            fold=[0, 1, 0, 1, 0, 1],
            value=[1.0, 3.0, 2.0, 2.0, 5.0, 7.0],
        )
    )
    out = S.seed_summary(df)
    assert len(out) == 1
    row = out.iloc[0]
    per_seed = np.array([2.0, 2.0, 6.0])
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(per_seed.mean())
    assert row["sd"] == pytest.approx(per_seed.std(ddof=1))
    assert row["variance"] == pytest.approx(per_seed.var(ddof=1))
    flat = S.seed_summary(df, average_folds=False).iloc[0]
    assert flat["variance"] == pytest.approx(df["value"].var(ddof=1))
    with pytest.raises(ValueError, match="missing column"):
        S.seed_summary(df.drop(columns="seed"))


def test_seed_summary_drops_nan():
    df = pd.DataFrame(dict(metric="m", seed=[0, 1, 2], fold=0, value=[1.0, np.nan, 3.0]))
    row = S.seed_summary(df).iloc[0]
    assert row["n_seeds"] == 2 and row["mean"] == 2.0


def test_paired_differences_are_paired_and_seeded():
    df = make_table(np.random.default_rng(0))
    out = S.paired_differences(df, "original/hard", n_boot=500, seed=1)
    assert set(out["metric"]) == {"accuracy", "ece"}
    assert (out["condition"] == "human/human").all() and (out["baseline"] == "original/hard").all()
    acc = out[out["metric"] == "accuracy"].iloc[0]
    base = df[(df.condition == "original/hard") & (df.metric == "accuracy")].set_index(["seed", "fold"])["value"]
    cond = df[(df.condition == "human/human") & (df.metric == "accuracy")].set_index(["seed", "fold"])["value"]
    assert acc["difference"] == pytest.approx((cond - base).mean())
    assert acc["n_pairs"] == 18 and acc["n_clusters"] == 18
    assert acc["ci_low"] <= acc["difference"] <= acc["ci_high"]
    assert acc["ci_low"] < 0.1 < acc["ci_high"]  # the simulated true shift is 0.1
    again = S.paired_differences(df, "original/hard", n_boot=500, seed=1)
    pd.testing.assert_frame_equal(out, again)
    clustered = S.paired_differences(df, "original/hard", cluster="seed", n_boot=500, seed=1)
    assert (clustered["n_clusters"] == 6).all()
    np.testing.assert_allclose(clustered["difference"], out["difference"])


def test_paired_differences_drop_unpaired_and_nan_units():
    df = make_table(np.random.default_rng(1), seeds=3, folds=2)
    df = df[df.metric == "accuracy"].copy()
    df.loc[(df.condition == "human/human") & (df.seed == 0) & (df.fold == 0), "value"] = np.nan
    df = df[~((df.condition == "original/hard") & (df.seed == 2) & (df.fold == 1))]
    out = S.paired_differences(df, "original/hard", n_boot=100)
    assert out.iloc[0]["n_pairs"] == 4


def test_paired_differences_bad_input():
    df = make_table(np.random.default_rng(2), seeds=2, folds=1)
    with pytest.raises(ValueError, match="baseline"):
        S.paired_differences(df, "nope/none")
    with pytest.raises(ValueError, match="conditions"):
        S.paired_differences(df, "original/hard", conditions=["x/y"])
    with pytest.raises(ValueError, match="several rows"):
        S.paired_differences(df, "original/hard", by=["dataset"])
    with pytest.raises(ValueError, match="cluster"):
        S.paired_differences(df, "original/hard", cluster="dataset")


def test_variance_ratio_exact_when_paired_scaling():
    """If condition B = A·0.5 + const seed by seed, every paired resample has ratio exactly 0.25."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=8)
    df = pd.DataFrame(
        dict(
            metric="acc",
            condition=["A"] * 8 + ["B"] * 8,
            seed=list(range(8)) * 2,
            fold=0,
            value=np.concatenate([a, 0.5 * a + 3.0]),
        )
    )
    out = S.variance_ratio(df, numerator="B", denominator="A", n_boot=400, seed=0)
    row = out.iloc[0]
    assert row["ratio"] == pytest.approx(0.25)
    assert row["var_numerator"] == pytest.approx(np.var(0.5 * a, ddof=1))
    assert row["ci_low"] == pytest.approx(0.25) and row["ci_high"] == pytest.approx(0.25)
    assert row["n_seeds"] == 8
    assert 0 <= row["n_degenerate"] < 400


def test_variance_ratio_interval_and_reproducibility():
    df = make_table(np.random.default_rng(5), seeds=10, folds=2)
    a = S.variance_ratio(df, "human/human", "original/hard", n_boot=500, seed=3)
    b = S.variance_ratio(df, "human/human", "original/hard", n_boot=500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    for _, row in a.iterrows():
        assert row["ci_low"] <= row["ratio"] <= row["ci_high"]
        assert row["ratio"] < 1.0  # simulated with half the seed effect
    single = df[df.seed == 0]
    assert np.isnan(S.variance_ratio(single, "human/human", "original/hard", n_boot=10).iloc[0]["ratio"])
    with pytest.raises(ValueError, match="numerator"):
        S.variance_ratio(df, "x/y", "original/hard")


def test_bootstrap_summary_per_group():
    df = make_table(np.random.default_rng(6), seeds=4, folds=2)
    out = S.bootstrap_summary(df, n_boot=200)
    assert len(out) == 4
    assert {"n", "estimate", "ci_low", "ci_high"} <= set(out.columns)
    first = out.iloc[0]
    sel = df[(df.condition == first.condition) & (df.metric == first.metric)]
    assert first["estimate"] == pytest.approx(sel["value"].mean())
    assert first["n"] == 8
    by_seed = S.bootstrap_summary(df, cluster="seed", n_boot=200)
    assert (by_seed["n"] == 4).all()


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
