"""Annotation budgets: k-vote subsamples, annotated fractions and per-epoch sampled votes
(hypothesis invariants, an independent reference for the sampled distribution, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import hypergeom

from softlab.budgets import annotated_mask, sampled_vote_labels, subsample_votes, whole_counts

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def vote_counts(draw, max_items=30, max_classes=6, max_votes=40):
    n = draw(st.integers(1, max_items))
    c = draw(st.integers(2, max_classes))
    counts = draw(arrays(np.int64, (n, c), elements=st.integers(0, max_votes)))
    counts[counts.sum(axis=1) == 0, 0] = 1  # every item has at least one vote
    return counts


@SETTINGS
@given(vote_counts(), st.integers(1, 50), st.integers(0, 2**31))
def test_subsample_never_exceeds_the_items_own_counts_and_keeps_min_k_n(counts, k, seed):
    sub = subsample_votes(counts, k, seed)
    assert sub.shape == counts.shape and sub.dtype == np.int64
    assert (sub >= 0).all() and (sub <= counts).all()  # drawn from the item's own votes only
    np.testing.assert_array_equal(sub.sum(axis=1), np.minimum(k, counts.sum(axis=1)))
    few = counts.sum(axis=1) <= k  # an item with at most k votes keeps all of them
    np.testing.assert_array_equal(sub[few], counts[few])
    np.testing.assert_array_equal(sub, subsample_votes(counts, k, seed))  # deterministic per seed


@SETTINGS
@given(vote_counts(), st.integers(0, 2**31))
def test_all_votes_is_the_counts_themselves(counts, seed):
    np.testing.assert_array_equal(subsample_votes(counts, None, seed), counts)


def test_subsample_differs_between_seeds_and_is_fresh_per_seed():
    rng = np.random.default_rng(0)
    counts = rng.multinomial(60, [0.5, 0.3, 0.2, 0, 0], size=200)
    draws = [subsample_votes(counts, 3, s) for s in range(5)]
    for a in range(5):
        for b in range(a + 1, 5):
            assert (draws[a] != draws[b]).any(axis=1).mean() > 0.3
    assert not np.array_equal(subsample_votes(counts, 3, [0, 1]), subsample_votes(counts, 3, [1, 0]))


def test_subsample_is_hypergeometric_against_scipy():
    """The count of class 0 in a k-vote draw from (a, b) votes follows Hypergeom(a+b, a, k)."""
    counts = np.tile([[30, 20]], (4000, 1))
    k = 5
    got = subsample_votes(counts, k, 7)[:, 0]
    expected = hypergeom(50, 30, k).pmf(np.arange(k + 1))
    freq = np.bincount(got, minlength=k + 1) / len(got)
    np.testing.assert_allclose(freq, expected, atol=0.025)


@SETTINGS
@given(
    arrays(np.int64, st.integers(1, 300), elements=st.integers(0, 4)),
    st.floats(0.01, 1.0),
    st.integers(0, 2**31),
)
def test_annotated_fraction_is_stratified_and_seeded(labels, fraction, seed):
    mask = annotated_mask(labels, fraction, seed)
    n = len(labels)
    assert mask.sum() == (n if fraction == 1.0 else max(1, round(fraction * n)))
    for c in np.unique(labels):  # each class gets its share to within one item
        in_c = labels == c
        assert abs(mask[in_c].sum() - mask.sum() * in_c.sum() / n) <= 1 + 1e-9
    np.testing.assert_array_equal(mask, annotated_mask(labels, fraction, seed))


def test_annotated_fraction_differs_between_seeds():
    labels = np.repeat(np.arange(10), 100)
    assert not np.array_equal(annotated_mask(labels, 0.25, 0), annotated_mask(labels, 0.25, 1))
    assert annotated_mask(labels, 1.0, 3).all()


@SETTINGS
@given(vote_counts(max_items=15), st.integers(1, 8), st.integers(0, 2**31))
def test_sampled_labels_are_votes_of_the_item_itself(counts, epochs, seed):
    labels = sampled_vote_labels(counts, epochs, seed)
    assert labels.shape == (epochs, len(counts))
    rows = np.broadcast_to(np.arange(len(counts)), labels.shape)
    assert (counts[rows, labels] > 0).all()  # every drawn class is one this item has votes for
    np.testing.assert_array_equal(labels, sampled_vote_labels(counts, epochs, seed))


def test_sampled_labels_never_take_another_items_vote():
    # each item votes for its own class only: any mixing between items would show
    counts = np.eye(10, dtype=np.int64)[np.arange(50) % 10] * 7
    labels = sampled_vote_labels(counts, 20, 3)
    np.testing.assert_array_equal(labels, np.broadcast_to(np.arange(50) % 10, (20, 50)))


def test_sampled_labels_mean_approaches_the_subsampled_distribution():
    rng = np.random.default_rng(1)
    counts = rng.multinomial(60, [0.6, 0.25, 0.1, 0.05], size=20)
    sub = subsample_votes(counts, 5, 0)
    epochs = 4000
    labels = sampled_vote_labels(sub, epochs, 11)
    freq = np.stack([np.bincount(labels[:, i], minlength=4) for i in range(len(sub))]) / epochs
    target = sub / sub.sum(axis=1, keepdims=True)
    # binomial standard error at 4000 draws is at most 0.008; 0.035 is > 4 of them
    np.testing.assert_allclose(freq, target, atol=0.035)
    assert np.abs(freq - counts / counts.sum(1, keepdims=True)).max() > 0.05  # the subsample, not the full counts


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: subsample_votes(np.array([[1.5, 2.0]]), 1, 0), "row 0"),
        (lambda: subsample_votes(np.array([[1, 2], [0, 0]]), 1, 0), "row 1 has no votes"),
        (lambda: subsample_votes(np.array([1, 2]), 1, 0), "2-D"),
        (lambda: subsample_votes(np.array([[1, 2]]), 0, 0), "votes_per_item"),
        (lambda: subsample_votes(np.array([[1, 2]]), 1, -1), "seed"),
        (lambda: annotated_mask(np.array([0, 1]), 0.0, 0), "annotated_fraction"),
        (lambda: annotated_mask(np.array([0, 1]), 1.5, 0), "annotated_fraction"),
        (lambda: sampled_vote_labels(np.array([[1, 2]]), 0, 0), "epochs"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_whole_counts_accepts_float_whole_numbers():
    assert whole_counts(np.array([[2.0, 3.0]])).dtype == np.int64


# --------------------------------------------------------------------------- the trainer's per-epoch hook


def _tiny_task(n=200, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    protos = rng.random((c, 1, 28, 28)).astype(np.float32)
    x = (0.6 * protos[y] + 0.4 * rng.random((n, 1, 28, 28))).astype(np.float32)
    counts = rng.multinomial(30, [0.7, 0.1, 0.1, 0.1], size=n)
    counts = np.take_along_axis(counts, (np.arange(c)[None, :] + y[:, None]) % c, axis=1)  # mode at y
    return x, y, counts


def _cfg(epochs=3, c=4):
    from softlab.models import ModelConfig
    from softlab.train import TrainConfig

    return TrainConfig(ModelConfig(kind="mlp", hidden=16, n_classes=c), epochs=epochs, batch_size=64, lr=1e-3)


def test_each_epoch_trains_on_one_hot_votes_of_the_item_itself():
    import torch

    from softlab import train as T

    _, _, counts = _tiny_task()
    train_idx = np.arange(20, 180)
    labels = sampled_vote_labels(counts, 3, 5)
    soft = (counts / counts.sum(1, keepdims=True)).astype(np.float32)
    members = [
        T.Member(0, soft, train_idx, "sampled", epoch_labels=labels),
        T.Member(0, soft, train_idx, "soft"),
    ]
    g = T._setup_group(members, _cfg(), torch.device("cpu"))
    for epoch in range(3):
        t = T._epoch_targets(g, epoch).numpy()
        np.testing.assert_array_equal(t[0], np.eye(4, dtype=np.float32)[labels[epoch, train_idx]])
        assert (counts[train_idx, t[0].argmax(1)] > 0).all()  # a vote this very item received
        np.testing.assert_array_equal(t[1], soft[train_idx])  # the other member keeps its soft targets


def test_sampled_delivery_with_constant_votes_equals_hard_training_and_changes_with_the_draw():
    from softlab import train as T

    x, y, counts = _tiny_task()
    train_idx = np.arange(160)
    hard = np.eye(4, dtype=np.float32)[y]
    soft = (counts / counts.sum(1, keepdims=True)).astype(np.float32)
    cfg = _cfg()
    constant = np.broadcast_to(y, (3, len(y))).copy()
    res = T.train_members(
        x,
        [
            T.Member(0, hard, train_idx, "hard"),
            T.Member(0, soft, train_idx, "sampled-const", epoch_labels=constant),
            T.Member(0, soft, train_idx, "sampled", epoch_labels=sampled_vote_labels(counts, 3, 1)),
        ],
        cfg,
        {"x": x},
    )
    np.testing.assert_allclose(res[0].eval_probs["x"], res[1].eval_probs["x"], atol=1e-6)
    assert np.abs(res[0].eval_probs["x"] - res[2].eval_probs["x"]).max() > 1e-4


def test_epoch_labels_are_checked():
    from softlab import train as T

    x, y, _ = _tiny_task()
    soft = np.full((len(y), 4), 0.25, dtype=np.float32)
    with pytest.raises(ValueError, match="epoch_labels must be an integer"):
        T.Member(0, soft, np.arange(10), "m", epoch_labels=np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"classes in 0\.\.3"):
        T.Member(0, soft, np.arange(10), "m", epoch_labels=np.full((3, len(y)), 4))
    with pytest.raises(ValueError, match="has 2 epochs, training runs 3"):
        T.train_members(x, [T.Member(0, soft, np.arange(10), "m", epoch_labels=np.zeros((2, len(y)), int))], _cfg())


# --------------------------------------------------------------------------- the protocol: budgeted arms


def _toy_arm(**budget):
    """A small hand-made arm (no data files): 160 items, 4 classes, 25 votes each, 2 folds; a
    seed re-draws the split (the protocol's default), no teacher conditions."""
    from softlab.data import mode_shifted, soft_labels
    from softlab.experiment import Arm, ArmConfig, TeacherSource, draw_split

    conditions = ("original/hard", "human/hard", "human/smooth", "human/human", "human/sampled")
    cfg = ArmConfig("fashion-mnist", folds=2, conditions=conditions, **budget)
    x, official, counts = _tiny_task(n=160)
    official = official.astype(np.int64)
    annotated = np.arange(len(official))
    reference = soft_labels(counts.astype(np.float64))
    groups = np.where(mode_shifted(reference, official), 0, 1)
    split = draw_split(official, annotated, groups, cfg, cfg.pool_seed)
    return Arm(
        cfg,
        x,
        official,
        annotated,
        annotated,
        reference,
        "human",
        split.folds,
        split.calibration,
        groups,
        TeacherSource("fashion-mnist", np.arange(0), annotated, None),
        x[:30],
        official[:30],
        ("a", "b", "c", "d"),
        counts=counts.astype(np.float64),
    )


def test_budgeted_training_targets_come_from_the_seeds_own_k_vote_subsample():
    arm = _toy_arm(votes_per_item=3)
    counts = arm.counts.astype(np.int64)
    for seed in (0, 1):
        train = arm.train_positions(0, seed)
        votes = arm.budget_votes(seed)
        assert (votes <= counts).all() and (votes.sum(1) == 3).all()
        np.testing.assert_allclose(arm.targets("human/human", seed, 0)[train], votes[train] / 3, atol=1e-6)
        np.testing.assert_allclose(arm.targets("human/sampled", seed, 0), arm.targets("human/human", seed, 0))
    assert (arm.budget_votes(0) != arm.budget_votes(1)).any()
    np.testing.assert_allclose(arm.reference, counts / counts.sum(1, keepdims=True))  # the full reference stays


def test_fitted_smoothing_follows_the_subsample():
    full = _toy_arm().fold_conditions("human/smooth", 0, 0).fitted["smoothing_epsilon"]
    one_vote = _toy_arm(votes_per_item=1).fold_conditions("human/smooth", 0, 0).fitted["smoothing_epsilon"]
    assert one_vote == 0.0 < full  # one vote per item: every human target is one-hot, no softness to match


def test_annotated_fraction_leaves_the_rest_with_official_hard_targets():
    arm = _toy_arm(annotated_fraction=0.25)
    train = arm.train_positions(0, 0)
    kept = arm.budget_annotated(0)
    t = arm.targets("human/human", 0, 0)
    hard = np.eye(4, dtype=np.float32)[arm.official]
    out = train[~kept[train]]
    np.testing.assert_array_equal(t[out], hard[out])
    np.testing.assert_allclose(t[train[kept[train]]], arm.reference[train[kept[train]]], atol=1e-6)
    assert abs(kept.mean() - 0.25) < 0.01
    labels = arm.epoch_labels(0, 0, 5)
    np.testing.assert_array_equal(labels[:, out], np.broadcast_to(arm.official[out], (5, len(out))))


def test_sampled_epoch_labels_are_votes_of_the_items_own_subsample():
    arm = _toy_arm(votes_per_item=2)
    train = arm.train_positions(1, 1)
    labels = arm.epoch_labels(1, 1, 50)
    votes = arm.budget_votes(1)
    assert (votes[np.broadcast_to(train, (50, len(train))), labels[:, train]] > 0).all()


def test_budgets_enter_run_keys_and_the_default_keeps_earlier_keys():
    from softlab.experiment import ArmConfig, member_key

    base = ArmConfig("fashion-mnist")
    assert "votes_per_item" not in base.key_dict() and "annotated_fraction" not in base.key_dict()
    budgeted = (ArmConfig("fashion-mnist", votes_per_item=3), ArmConfig("fashion-mnist", annotated_fraction=0.5))
    keys = {
        repr(member_key(cfg, {}, cond, 0, 0)) for cfg in (base, *budgeted) for cond in ("human/human", "human/sampled")
    }
    assert len(keys) == 6


def test_budget_free_conditions_share_the_unbudgeted_run():
    """original/hard trains on official labels whatever the budget: a budget cell's original/hard
    run has the unbudgeted arm's targets and cache key (so it is loaded, not retrained), while
    every vote-derived condition keys by its budget."""
    from softlab.experiment import BUDGET_FREE_CONDITIONS, member_key

    assert BUDGET_FREE_CONDITIONS == ("original/hard",)
    base = _toy_arm()
    for budget in (
        {"votes_per_item": 1},
        {"annotated_fraction": 0.25},
        {"votes_per_item": 3, "annotated_fraction": 0.5},
    ):
        arm = _toy_arm(**budget)
        for seed, fold in ((0, 0), (1, 1)):
            np.testing.assert_array_equal(
                arm.targets("original/hard", seed, fold), base.targets("original/hard", seed, fold)
            )
            assert member_key(arm.config, {}, "original/hard", seed, fold) == member_key(
                base.config, {}, "original/hard", seed, fold
            )
            for cond in ("human/hard", "human/smooth", "human/human", "human/sampled"):
                assert member_key(arm.config, {}, cond, seed, fold) != member_key(base.config, {}, cond, seed, fold)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"votes_per_item": -1}, "votes_per_item"),
        ({"annotated_fraction": 0.0}, "annotated_fraction"),
        ({"dataset": "synthetic-mnist", "votes_per_item": 3}, "generator"),
        ({"dataset": "synthetic-mnist", "conditions": ("human/sampled",)}, "generator"),
    ],
)
def test_bad_budget_configuration_is_named(kwargs, message):
    from softlab.experiment import ArmConfig

    with pytest.raises(ValueError, match=message):
        ArmConfig(**{"dataset": "fashion-mnist", **kwargs})


def test_heldout_evaluation_uses_the_full_distribution_whatever_the_budget(tmp_path):
    from softlab.experiment import run_arm
    from softlab.report import arm_predictions, run_temperatures
    from softlab.store import RunStore

    arm = _toy_arm(votes_per_item=1, annotated_fraction=0.5)
    grid = run_arm(arm, _cfg(epochs=2), [0, 1], store=RunStore(tmp_path))
    preds = arm_predictions(grid, run_temperatures(grid))
    np.testing.assert_array_equal(preds.reference, arm.reference)  # never the 1-vote subsample
    assert set(preds.probs) >= {"human/sampled", "human/human"}
    # the difficulty strata are the full distribution's entropy tertiles, not the subsample's (all 0)
    assert preds.strata["hard"].sum() > 0 and preds.strata["easy"].sum() > 0


def test_sampled_members_train_alike_on_a_dask_worker():
    """``Member.epoch_labels`` travels to a Dask worker (every Member field does): the worker
    trains the sampled member bit for bit as this process does at the same thread count."""
    pytest.importorskip("distributed")
    from softlab import train as T
    from softlab.distributed import open_executor
    from softlab.runtime import torch_threads

    x, _, counts = _tiny_task()
    soft = (counts / counts.sum(1, keepdims=True)).astype(np.float32)
    members = [
        T.Member(0, soft, np.arange(160), "sampled", epoch_labels=sampled_vote_labels(counts, 3, 1)),
        T.Member(0, soft, np.arange(160), "soft"),
    ]
    cfg = _cfg()
    with torch_threads(1):
        reference = T.train_members(x, members, cfg, {"x": x}, progress=False)
    with open_executor("local:1") as ex:
        got = {i: r for positions, results in ex.train(x, members, cfg, {"x": x}) for i, r in zip(positions, results)}
    for i, ref in enumerate(reference):
        np.testing.assert_array_equal(got[i].eval_probs["x"], ref.eval_probs["x"])
    assert np.abs(got[0].eval_probs["x"] - got[1].eval_probs["x"]).max() > 1e-4
