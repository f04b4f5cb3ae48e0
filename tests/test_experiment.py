"""The protocol: folds, pools, the paired grid, evaluation records, verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab.experiment import ArmConfig, configs_from_params, grid_members, prepare_arm, run_arm, stratified_folds, stratified_subsample
from softlab.labels import CONDITIONS
from softlab.params import load_params
from softlab.report import cartography_relations, metrics_table, run_predictions, verdict

labels_strategy = st.lists(st.integers(0, 4), min_size=10, max_size=200).map(np.array)


@settings(max_examples=50, deadline=None)
@given(labels_strategy, st.integers(2, 6), st.integers(0, 10))
def test_folds_are_balanced_within_each_class(labels, k, seed):
    folds = stratified_folds(labels, k, seed)
    assert set(np.unique(folds)) <= set(range(k))
    sizes = np.bincount(folds, minlength=k)
    assert sizes.max() - sizes.min() <= 1
    for c in np.unique(labels):
        per = np.bincount(folds[labels == c], minlength=k)
        assert per.max() - per.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, k, seed))


@settings(max_examples=50, deadline=None)
@given(labels_strategy, st.integers(1, 50), st.integers(0, 10))
def test_subsample_is_proportional(labels, size, seed):
    pos = stratified_subsample(labels, size, seed)
    assert len(pos) == min(size, len(labels)) and len(np.unique(pos)) == len(pos)
    if size < len(labels):
        for c in np.unique(labels):
            expected = size * (labels == c).mean()
            assert abs((labels[pos] == c).sum() - expected) <= 1.0 + 1e-9


@pytest.fixture(scope="module")
def smoke():
    arms, train, seeds = configs_from_params(load_params("smoke"))
    return arms, train, seeds


@pytest.fixture(scope="module")
def mnist_grid(smoke):
    arms, train, seeds = smoke
    return run_arm(prepare_arm(arms["mnist"]), train, seeds)


def test_mnist_pool_always_holds_the_100_human_items(smoke):
    arm = prepare_arm(smoke[0]["mnist"])
    assert len(arm.annotated) == 100
    from softlab.data import load_human

    assert np.array_equal(arm.item_ids[arm.annotated], load_human("mnist-mturk").items)
    # unlabelled items keep the official one-hot target in every condition
    unlabelled = np.setdiff1d(np.arange(arm.n_items), arm.annotated)
    for cond in CONDITIONS:
        t = arm.labels.target(cond)[unlabelled]
        assert np.array_equal(t.argmax(1), arm.official[unlabelled]) and np.allclose(t.max(1), 1)


def test_grid_is_paired(smoke):
    arms, _, seeds = smoke
    arm = prepare_arm(arms["fashion-mnist"])
    runs, members = grid_members(arm, seeds)
    assert len(members) == len(CONDITIONS) * len(seeds) * arm.config.folds
    for (seed, fold), part in runs.groupby(["seed", "fold"]):
        idx = [members[i].train_idx for i in part.index]
        assert all(np.array_equal(idx[0], other) for other in idx[1:])
        assert {members[i].seed for i in part.index} == {seed}
        assert not np.isin(arm.heldout_positions(fold), idx[0]).any()


def test_heldout_records_cover_each_labelled_item_once_per_seed_and_condition(mnist_grid):
    records = [r for r in run_predictions(mnist_grid) if r.split == "heldout"]
    for (cond, seed) in {(r.condition, r.seed) for r in records}:
        ids = np.concatenate([r.item_ids for r in records if r.condition == cond and r.seed == seed])
        assert np.array_equal(np.sort(ids), np.sort(mnist_grid.arm.item_ids[mnist_grid.arm.annotated]))
    assert all(r.human is not None and np.isfinite(r.human).all() for r in records)


def test_metrics_and_cartography_tables(mnist_grid):
    table = metrics_table({"mnist": mnist_grid})
    assert set(table.columns) >= {"dataset", "condition", "mode", "shape", "seed", "fold", "split", "stratum", "metric", "value"}
    assert set(table["split"]) == {"heldout", "disjoint"}
    rel = cartography_relations(mnist_grid)
    assert len(rel) == 3 * len(mnist_grid.runs) and rel["value"].notna().any()


def test_bad_arm_configuration_is_named():
    with pytest.raises(ValueError, match="dataset"):
        ArmConfig("cifar10")
    with pytest.raises(ValueError, match="folds"):
        ArmConfig("mnist", folds=1)
    with pytest.raises(ValueError, match="arms"):
        configs_from_params({**load_params("smoke"), "arms": ["kmnist"]})


@pytest.mark.parametrize(
    "low, high, null, better, n, expected",
    [
        (-0.3, -0.1, 0.0, "lower", 5, "confirmed"),
        (0.1, 0.3, 0.0, "lower", 5, "refuted"),
        (-0.1, 0.1, 0.0, "lower", 5, "inconclusive"),
        (1.1, 1.4, 1.0, "higher", 10, "confirmed"),
        (-0.3, -0.1, 0.0, "lower", 3, "inconclusive (n=3 < 5)"),
        (float("nan"), 0.1, 0.0, "lower", 5, "inconclusive"),
    ],
)
def test_verdict(low, high, null, better, n, expected):
    assert verdict(low, high, null, better, n=n) == expected


def test_findings_summary_quotes_every_test():
    import pandas as pd

    from softlab.report import CLAIMS, findings_summary

    claims = pd.DataFrame([
        {"claim": 1, "statement": CLAIMS[1], "dataset": "mnist", "test": "ECE", "estimate": -0.01234,
         "ci_low": -0.02, "ci_high": -0.001, "relative": -0.1, "seeds": 5, "verdict": "confirmed"},
        {"claim": 2, "statement": CLAIMS[2], "dataset": "mnist", "test": "variance", "estimate": 1.5,
         "ci_low": 0.5, "ci_high": 3.0, "relative": float("nan"), "seeds": 5, "verdict": "inconclusive"},
    ])
    text = findings_summary(claims)
    assert CLAIMS[1] in text and "ECE: -0.012 [-0.020, -0.001] (-10% relative) — *confirmed*" in text
    assert "variance: +1.500 [+0.500, +3.000] — *inconclusive*" in text
