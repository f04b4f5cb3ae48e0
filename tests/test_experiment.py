"""The protocol: folds, calibration splits, teachers, fold-clean conditions, the synthetic arm's
mode shifts, the paired grid, pooled out-of-fold predictions and the tables built from them."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab.data import entropy, mode_shifted
from softlab.evaluation import TABLE_COLUMNS
from softlab.experiment import (
    DEFAULT_CONDITIONS,
    ArmConfig,
    configs_from_params,
    grid_members,
    member_key,
    prepare_arm,
    run_arm,
    stratified_folds,
    stratified_subsample,
)
from softlab.params import load_params

labels_strategy = st.lists(st.integers(0, 4), min_size=10, max_size=200).map(np.array)


@settings(max_examples=50, deadline=None)
@given(labels_strategy, st.integers(2, 6), st.integers(0, 10), st.data())
def test_folds_are_balanced_within_each_class_and_each_group(labels, k, seed, data):
    groups = np.array(data.draw(st.lists(st.integers(0, 2), min_size=len(labels), max_size=len(labels))))
    for g in (None, groups):
        folds = stratified_folds(labels, k, seed, groups=g)
        assert set(np.unique(folds)) <= set(range(k))
        sizes = np.bincount(folds, minlength=k)
        assert sizes.max() - sizes.min() <= 1
        n_groups = 1 if g is None else len(np.unique(g))
        for c in np.unique(labels):  # each (class, group) cell is balanced, so a class within ±groups
            per = np.bincount(folds[labels == c], minlength=k)
            assert per.max() - per.min() <= n_groups
        if g is not None:
            for value in np.unique(g):
                per = np.bincount(folds[g == value], minlength=k)
                assert per.max() - per.min() <= 1
                for c in np.unique(labels):
                    cell = np.bincount(folds[(g == value) & (labels == c)], minlength=k)
                    assert cell.max() - cell.min() <= 1
        assert np.array_equal(folds, stratified_folds(labels, k, seed, groups=g))


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
    return configs_from_params(load_params("smoke"))


@pytest.fixture(scope="module")
def fashion(smoke):
    return prepare_arm(smoke[0]["fashion-mnist"])


@pytest.fixture(scope="module")
def mnist_arm(smoke):
    return prepare_arm(smoke[0]["mnist"])


@pytest.fixture(scope="module")
def synthetic(smoke):
    return prepare_arm(smoke[0]["synthetic-mnist"])


def _with_heldout_labels_changed(arm, fold: int, seed: int, rng: np.random.Generator):
    """A copy of ``arm`` whose annotated items in seed ``seed``'s ``fold`` (held-out) and in that
    fold's calibration split carry arbitrary other reference distributions (the teachers
    already prepared are kept: they never see the pool's labels)."""
    ref = arm.reference.copy()
    watched = np.concatenate([arm.heldout_positions(fold, seed), arm.calibration_positions(fold, seed)])
    hidden = np.isin(arm.annotated, watched)
    ref[hidden] = rng.dirichlet(np.full(ref.shape[1], 0.3), hidden.sum())
    memo = {k: v for k, v in arm._memo.items() if k == "teachers"}
    return dataclasses.replace(arm, reference=ref, _memo=memo), hidden


@pytest.mark.parametrize("arm_name", ["fashion", "mnist_arm", "synthetic"])
def test_heldout_labels_never_reach_training_targets(arm_name, request):
    arm = request.getfixturevalue(arm_name)
    rng = np.random.default_rng(0)
    conditions = [c for c in DEFAULT_CONDITIONS if not c.endswith("own-data")]  # own-data: its own test
    for fold in range(arm.config.folds):
        for seed in (0, 1):
            changed, hidden = _with_heldout_labels_changed(arm, fold, seed, rng)
            assert hidden.any() and not np.array_equal(changed.reference, arm.reference)
            train = arm.train_positions(fold, seed)
            for cond in conditions:
                a = arm.targets(cond, seed, fold)[train]
                b = changed.targets(cond, seed, fold)[train]
                assert np.array_equal(a, b), (cond, seed, fold)
            # and the run's fitted amounts of softness (ε, T) do not move either
            pd_a, pd_b = arm.fitted_table([seed]), changed.fitted_table([seed])
            num = [c for c in pd_a.select_dtypes("number").columns if c != "T (own-data teacher)"]
            mine = pd_a["fold"] == fold
            np.testing.assert_array_equal(pd_a.loc[mine, num].to_numpy(), pd_b.loc[mine, num].to_numpy())


def test_training_calibration_and_heldout_items_are_disjoint(fashion, mnist_arm):
    for arm, fold, seed in itertools.product((fashion, mnist_arm), range(2), (None, 0, 1)):
        if True:
            train, cal = arm.train_positions(fold, seed), arm.calibration_positions(fold, seed)
            held = arm.heldout_positions(fold, seed)
            assert not np.intersect1d(train, cal).size and not np.intersect1d(train, held).size
            assert not np.intersect1d(cal, held).size
            assert len(train) + len(cal) + len(held) == arm.n_items
            frac = len(cal) / (len(cal) + len(train))
            assert abs(frac - arm.config.calibration_fraction) < 0.02


def test_fixed_design_shares_split_and_round_robin_teachers(fashion):
    """``resample: [init]`` (the earlier design): every seed has the reference split, seed s uses
    teacher s mod n_teachers, and deterministic shapes are one object for all seeds of a fold."""
    fixed = prepare_arm(dataclasses.replace(fashion.config, resample=("init",)))
    fold = 0
    a, b = fixed.targets("human/human-shuffled", 0, fold), fixed.targets("human/human-shuffled", 1, fold)
    assert not np.array_equal(a, b)
    assert fixed.targets("human/smooth", 0, fold) is fixed.targets("human/smooth", 5, fold)
    np.testing.assert_array_equal(fixed.folds_of(3), fixed.folds_of(0))
    n = fixed.config.n_teachers
    assert [fixed.teacher_of(s) for s in range(2 * n)] == list(range(n)) * 2
    assert np.array_equal(fixed.targets("human/synthetic", 0, fold), fixed.targets("human/synthetic", n, fold))
    assert not np.array_equal(fixed.targets("human/synthetic", 0, fold), fixed.targets("human/synthetic", 1, fold))
    assert "n_teachers" in fixed.config.key_dict() and "n_teachers" not in fashion.config.key_dict()


def test_two_seeds_redraw_folds_calibration_and_teacher_and_conditions_of_a_seed_share_them(smoke, fashion):
    """The pipeline is the unit: seeds 0 and 1 differ in folds, calibration split and teacher;
    every condition of one seed trains on the same items, watches the same items, starts from the
    same seed, and its synthetic targets come from that seed's own teacher."""
    from softlab.labels import build_conditions

    arm = fashion
    s0, s1 = arm.split(0), arm.split(1)
    assert not np.array_equal(s0.folds, s1.folds)
    assert not np.array_equal(s0.folds, arm.folds)  # not the reference split either
    for fold in range(arm.config.folds):
        assert not np.array_equal(s0.calibration[fold], s1.calibration[fold])
    assert arm.teacher_of(0) != arm.teacher_of(1)
    assert not np.allclose(arm.teacher_probs_of(0), arm.teacher_probs_of(1))
    # the split of a seed is stratified like the reference one
    per_fold = np.bincount(s1.folds, minlength=arm.config.folds)
    assert per_fold.max() - per_fold.min() <= 1
    runs, members = grid_members(arm, [0, 1])
    for (seed, fold), part in runs.groupby(["seed", "fold"]):
        group = [members[i] for i in part.index]
        assert {m.seed for m in group} == {seed}
        for m in group:
            np.testing.assert_array_equal(m.train_idx, arm.train_positions(fold, seed))
            np.testing.assert_array_equal(m.watch_idx, arm.watch_positions(fold, seed))
        train = arm.train_positions(fold, seed)
        ann = np.flatnonzero(np.isin(train, arm.annotated))
        ref = arm.reference[np.searchsorted(arm.annotated, train[ann])]
        own = build_conditions(
            arm.official[train],
            ann,
            ref,
            arm.teacher_probs_of(seed)[train],
            "human/synthetic",
            human_kind="distribution",
        )
        syn = next(m for m in group if m.meta["condition"] == "human/synthetic")
        np.testing.assert_array_equal(syn.targets[train], own.target("human/synthetic"))
    train0 = {m.meta["fold"]: m.train_idx for m in members if m.seed == 0}
    train1 = {m.meta["fold"]: m.train_idx for m in members if m.seed == 1}
    assert any(not np.array_equal(train0[f], train1[f]) for f in train0)


def test_resample_is_validated_with_the_parameter_named():
    with pytest.raises(ValueError, match=r"resample: .*including 'init'"):
        ArmConfig("fashion-mnist", resample=("split",))
    with pytest.raises(ValueError, match="resample"):
        ArmConfig("fashion-mnist", resample=("init", "teachers"))
    with pytest.raises(ValueError, match="run_folds: 1 with resample"):
        ArmConfig("fashion-mnist", run_folds=1)
    assert ArmConfig("fashion-mnist", resample=["teacher", "init"]).resample == ("init", "teacher")
    assert ArmConfig("fashion-mnist", run_folds=1, resample=("init", "teacher")).run_folds == 1


def test_own_data_teachers_train_only_on_the_students_items_never_the_item_they_label(fashion, monkeypatch, tmp_path):
    """Every own-data teacher of run (seed, fold) trains on part of that run's training items and
    labels the rest of them; together the parts cover each training item exactly once."""
    import softlab.train
    from softlab.experiment import OWN_DATA_PARTS
    from softlab.train import MemberResult

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    seen = []

    def fake_train(x, members, cfg, **kwargs):
        seen.extend(members)
        return [
            MemberResult(
                name=m.name,
                seed=m.seed,
                meta=m.meta,
                config={},
                train_idx=m.train_idx,
                eval_probs={},
                dynamics=None,
                train_loss=np.zeros(1),
                watch_idx=m.watch_idx,
                watch_probs=np.full((m.n_watch, 10), 0.1, np.float32),
            )
            for m in members
        ]

    monkeypatch.setattr(softlab.train, "train_members", fake_train)
    arm = dataclasses.replace(fashion, _memo={})
    arm.prepare_own_data_teachers([0, 1])
    assert len(seen) == 2 * arm.config.folds * OWN_DATA_PARTS
    for seed in (0, 1):
        for fold in range(arm.config.folds):
            train = arm.train_positions(fold, seed)
            mine = [m for m in seen if f":seed{seed}:fold{fold}:" in m.name]
            assert len(mine) == OWN_DATA_PARTS
            labelled = np.concatenate([m.watch_idx for m in mine])
            np.testing.assert_array_equal(np.sort(labelled), train)  # every training item once
            for m in mine:
                assert np.isin(m.train_idx, train).all() and not np.isin(m.watch_idx, m.train_idx).any()
            assert arm.own_data_probs(seed, fold).shape == (len(train), 10)
    # cached: a fresh arm loads them without training
    seen.clear()
    dataclasses.replace(fashion, _memo={}).prepare_own_data_teachers([0, 1])
    assert seen == []


def test_original_shuffled_targets_come_from_the_same_official_label(fashion):
    fold = 0
    train = fashion.train_positions(fold, 3)
    lc = fashion.fold_conditions("original/human-shuffled", 3, fold)
    src = lc.items["shuffled_from_official_group"].to_numpy().astype(np.int64)
    np.testing.assert_array_equal(fashion.official[train][src], fashion.official[train])


def test_mnist_pool_spreads_the_100_human_items_evenly_over_folds(mnist_arm):
    from softlab.data import load_human

    arm = mnist_arm
    assert len(arm.annotated) == 100
    np.testing.assert_array_equal(np.sort(arm.item_ids[arm.annotated]), np.sort(load_human("mnist-mturk").items))
    per_fold = np.bincount(arm.folds[arm.annotated], minlength=arm.config.folds)
    assert per_fold.max() - per_fold.min() <= 1
    unlabelled = np.setdiff1d(np.arange(arm.n_items), arm.annotated)
    for cond in DEFAULT_CONDITIONS:
        t = arm.targets(cond, 0, 0)[unlabelled]
        assert np.array_equal(t.argmax(1), arm.official[unlabelled]) and np.allclose(t.max(1), 1)


def test_synthetic_arm_has_the_requested_mode_shift_rate_and_generator_reference(synthetic):
    arm = synthetic
    shifted = mode_shifted(arm.reference, arm.official[arm.annotated])
    assert abs(shifted.mean() - arm.config.synthetic_mode_shift) <= 0.005
    per_fold = [shifted[arm.folds[arm.annotated] == f].mean() for f in range(arm.config.folds)]
    assert max(abs(r - arm.config.synthetic_mode_shift) for r in per_fold) <= 0.03
    assert arm.reference_name == "generator"
    # flipped items are the ambiguous ones more often than not
    minority = 1 - arm.reference.max(axis=1)
    assert minority[shifted].mean() > minority[~shifted].mean()


def test_teachers_never_see_the_disjoint_evaluation_sample_or_the_generator_half(fashion, synthetic):
    from softlab.data import load_images
    from softlab.experiment import _teacher_config, disjoint_sample
    from softlab.generator import mnist_train_halves
    from softlab.teachers import train_teacher

    cfg = fashion.config
    dis = disjoint_sample(60000, cfg.disjoint_size, cfg.pool_seed)
    for seed in (0, 1):
        teacher = train_teacher("fashion-mnist", _teacher_config("fashion-mnist", cfg, fashion.teacher_of(seed), dis))
        assert not np.isin(teacher.train_indices, dis).any()
    gen_half, teacher_half = mnist_train_halves(load_images("mnist", "train").labels)
    assert not np.intersect1d(gen_half, teacher_half).size and len(gen_half) + len(teacher_half) == 60000
    teacher = train_teacher("mnist", _teacher_config("synthetic-mnist", synthetic.config, 0, gen_half))
    assert np.isin(teacher.train_indices, teacher_half).all()
    info = synthetic.teacher_info  # one row per teacher prepared so far (seed 0's at least), by seed
    assert synthetic.teacher_of(0) in set(info["seed"]) and info["seed"].is_unique
    expected = synthetic.config.teacher.get("n_train") or len(teacher_half)
    assert (info["training images"] == expected).all()


def test_grid_is_paired_and_watches_heldout_and_calibration_items(smoke, fashion):
    _, _, seeds = smoke
    runs, members = grid_members(fashion, seeds)
    assert len(members) == len(DEFAULT_CONDITIONS) * len(seeds) * fashion.config.folds
    for (seed, fold), part in runs.groupby(["seed", "fold"]):
        idx = [members[i].train_idx for i in part.index]
        assert all(np.array_equal(idx[0], other) for other in idx[1:])
        assert {members[i].seed for i in part.index} == {seed}
        assert not np.isin(fashion.heldout_positions(fold, seed), idx[0]).any()
        np.testing.assert_array_equal(members[part.index[0]].watch_idx, fashion.watch_positions(fold, seed))


def test_cache_keys_differ_by_protocol_and_ignore_which_runs_exist(smoke):
    arms, train, _ = smoke
    cfg = arms["fashion-mnist"]
    a = member_key(cfg, train.key_dict(), "human/human", 0, 0)
    b = member_key(
        dataclasses.replace(cfg, conditions=("human/human",), run_folds=2), train.key_dict(), "human/human", 0, 0
    )
    assert a == b and a["protocol_version"] >= 2
    c = member_key(dataclasses.replace(cfg, calibration_fraction=0.2), train.key_dict(), "human/human", 0, 0)
    assert c != a


def test_bad_arm_configuration_is_named():
    with pytest.raises(ValueError, match="dataset"):
        ArmConfig("kmnist")
    with pytest.raises(ValueError, match="folds"):
        ArmConfig("mnist", folds=1)
    with pytest.raises(ValueError, match="synthetic_mode_shift"):
        ArmConfig("synthetic-mnist", synthetic_mode_shift=0.7)
    with pytest.raises(ValueError, match="disjoint_size"):
        ArmConfig("fashion-mnist", disjoint_size=0)
    with pytest.raises(ValueError, match="arms"):
        configs_from_params({**load_params("smoke"), "arms": ["kmnist"]})


# ----------------------------------------------------------------------------- from runs to tables


@pytest.fixture(scope="module")
def mnist_grid(smoke, mnist_arm):
    _, train, seeds = smoke
    return run_arm(mnist_arm, train, seeds)


def test_pooled_predictions_hold_each_labelled_item_once_per_seed(mnist_grid):
    from softlab.report import arm_predictions, run_temperatures

    temps = run_temperatures(mnist_grid)
    assert len(temps) == len(mnist_grid.runs) and (temps["temperature"] > 0).all()
    preds = arm_predictions(mnist_grid, temps)
    arm = mnist_grid.arm
    assert preds.official.shape == (100,) and set(preds.probs) >= {c + "+ts" for c in DEFAULT_CONDITIONS}
    for p in preds.probs.values():
        assert p.shape == (len(mnist_grid.seeds), 100, 10) and np.isfinite(p).all()
    # item i of seed s comes from the model of seed s whose held-out fold holds it
    for seed_index, seed in enumerate(mnist_grid.seeds):
        for fold in range(arm.config.folds):
            pos, probs = mnist_grid.heldout(mnist_grid.index("human/human", seed, fold))
            where = np.searchsorted(arm.annotated, pos)
            np.testing.assert_array_equal(preds.probs["human/human"][seed_index, where], probs)
    # +ts keeps every argmax
    np.testing.assert_array_equal(preds.probs["human/hard+ts"].argmax(-1), preds.probs["human/hard"].argmax(-1))
    assert preds.strata["hard"].sum() > 0 and preds.strata["mode-shifted"].sum() > 0
    conf = preds.item_arrays["human/human"]["heldout_confidence"]
    assert conf.shape == (len(mnist_grid.seeds), 100) and ((conf >= 0) & (conf <= 1)).all()


def test_difficulty_strata_use_training_fold_thresholds(mnist_grid):
    from softlab.stats import tertile_thresholds

    arm = mnist_grid.arm
    strata = arm.difficulty()
    ent = entropy(arm.reference)
    for fold in range(arm.config.folds):
        mine = arm.folds[arm.annotated] == fold
        train = np.isin(arm.annotated, arm.train_positions(fold))
        t1, t2 = tertile_thresholds(ent[train])
        np.testing.assert_array_equal(strata[mine] == "hard", ent[mine] > t2)
        np.testing.assert_array_equal(strata[mine] == "easy", ent[mine] <= t1)


def test_metrics_and_cartography_tables(mnist_grid):
    from softlab.report import (
        arm_predictions,
        disjoint_records,
        hard_label_cartography,
        heldout_cartography,
        heldout_records,
        metrics_table,
        run_temperatures,
    )

    temps = run_temperatures(mnist_grid)
    preds = arm_predictions(mnist_grid, temps)
    table = metrics_table(heldout_records(preds) + disjoint_records(mnist_grid, temps))
    assert set(table.columns) >= set(TABLE_COLUMNS)
    held = table[table["split"] == "heldout"]
    assert set(held["fold"]) == {-1} and set(table[table["split"] == "disjoint"]["fold"]) == {0, 1}
    n = held[(held["metric"] == "n_items") & (held["condition"] == "human/human") & (held["seed"] == 0)]
    assert n.set_index("stratum")["value"]["all"] == 100
    assert "human/hard+ts" in set(held["condition"])
    rel = heldout_cartography(preds)
    assert set(rel["items"]) == {"held-out"} and rel["value"].notna().any()
    sway = hard_label_cartography(mnist_grid)
    assert set(sway["score"]) == {"variability", "1 - confidence", "predictive entropy (final model)"}
    assert sway["auroc"].between(0, 1).all()


def _write_votes(path, items, n_annotators=5, seed=0):
    """A simulated votes table (``item, annotator, label``) for MNIST test items."""
    import pandas as pd

    from softlab.data import load_images

    labels = load_images("mnist", "test").labels
    rng = np.random.default_rng(seed)
    rows = []
    for item in items:
        soft = np.full(10, 0.02)
        soft[labels[item]] += 0.6
        soft[(labels[item] + 1) % 10] += 0.2
        soft /= soft.sum()
        for a in range(n_annotators):
            rows.append({"item": int(item), "annotator": f"sim{a:02d}", "label": int(rng.choice(10, p=soft))})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_a_votes_table_becomes_an_arm(tmp_path, smoke):
    from softlab.data.votes import load_votes

    path = tmp_path / "my-votes.csv"
    items = np.arange(5, 305, 5)
    _write_votes(path, items)
    params = {**load_params("smoke"), "arms": [], "votes": {"my-study": {"path": str(path), "images": "mnist"}}}
    arms, _, _ = configs_from_params(params)
    cfg = arms["my-study"]
    arm = prepare_arm(cfg)
    assert arm.name == "my-study" and arm.reference_name == "human"
    np.testing.assert_array_equal(np.sort(arm.item_ids[arm.annotated]), items)
    expected = load_votes(path, "mnist", "test")
    order = np.argsort(expected.items)
    np.testing.assert_allclose(
        arm.reference,
        expected.soft()[order]
        if hasattr(expected, "soft")
        else expected.counts[order] / expected.counts[order].sum(1, keepdims=True),
    )
    key = member_key(cfg, {}, "human/human", 0, 0)
    _write_votes(path, items, seed=1)  # other votes: another cache key
    assert member_key(cfg, {}, "human/human", 0, 0) != key


def test_votes_arm_errors_name_the_problem(tmp_path):
    params = {**load_params("smoke"), "votes": {"x": {"path": str(tmp_path / "missing.csv")}}}
    with pytest.raises(ValueError, match="no votes table"):
        configs_from_params(params)
    with pytest.raises(ValueError, match="built-in"):
        configs_from_params({**load_params("smoke"), "votes": {"mnist": str(tmp_path)}})


def test_cifar_arm_is_skipped_with_one_line_when_images_are_missing(smoke, tmp_path, monkeypatch):
    from softlab.experiment import prepare_arms

    monkeypatch.setenv("SOFTLAB_OFFLINE", "1")  # and an empty data dir: no CIFAR-10 here, whatever the machine
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    cfg = dataclasses.replace(smoke[0]["fashion-mnist"], dataset="cifar10")
    prepared, skipped = prepare_arms({"cifar10": cfg})
    assert prepared == {} and "\n" not in skipped["cifar10"] and "cifar-10-python.tar.gz" in skipped["cifar10"]


def test_claim3_evidence_reaches_the_metrics_table_as_heldout_rows(mnist_grid):
    from softlab.report import arm_predictions, cartography_metric_rows, heldout_cartography, run_temperatures

    rel = heldout_cartography(arm_predictions(mnist_grid, run_temperatures(mnist_grid)))
    rows = cartography_metric_rows(rel)
    assert set(rows["split"]) == {"heldout"} and set(rows["fold"]) == {-1} and set(rows["stratum"]) == {"all"}
    assert {"spearman_confidence_entropy", "auroc_variability_ambiguous"} <= set(rows["metric"])
    np.testing.assert_array_equal(rows["value"].to_numpy(), rel["value"].to_numpy())


def test_book_results_saved_by_two_writers_of_the_same_key_keep_the_first(tmp_path):
    from softlab.report import BookResults, load_book, save_book

    folder = tmp_path / "book" / "key"
    tables = {name: pd.DataFrame({"x": [i]}) for i, name in enumerate(BookResults.TABLES)}
    first = BookResults(params_name="a", meta={"params_name": "a", "writer": 1}, **tables)
    second = BookResults(params_name="a", meta={"params_name": "a", "writer": 2}, **tables)
    save_book(first, folder)
    save_book(second, folder)  # the same key written again (a concurrent notebook): no error
    assert load_book(folder).meta["writer"] == 1
    assert [p.name for p in folder.parent.iterdir()] == ["key"]  # no temporary folder left behind
    (folder / "meta.json").unlink()  # an incomplete folder (a killed writer) is replaced
    save_book(second, folder)
    assert load_book(folder).meta["writer"] == 2


# ----------------------------------------------------------------------------- variance decomposition


def _predictions_with_accuracies(correct_per_seed, n_items=20, arm="toy"):
    """ArmPredictions whose seed s is right on the first ``correct_per_seed[s]`` items (one-hot
    predictions), for both decomposition conditions."""
    from softlab.inference import ArmPredictions

    official = np.arange(n_items) % 3
    probs = np.zeros((len(correct_per_seed), n_items, 3), dtype=np.float32)
    for s, k in enumerate(correct_per_seed):
        pred = np.where(np.arange(n_items) < k, official, (official + 1) % 3)
        probs[s, np.arange(n_items), pred] = 1.0
    ref = np.eye(3)[official] * 0.8 + 0.2 / 3
    mask = np.ones(n_items, dtype=bool)
    return ArmPredictions(
        arm=arm,
        reference_name="human",
        seeds=np.arange(len(correct_per_seed)),
        official=official,
        reference=ref,
        strata={"all": mask, "hard": mask},
        probs={"human/human": probs, "human/synthetic": probs[::-1].copy()},
    )


def test_variance_decomposition_shares_are_increments_of_nested_variances():
    import statistics

    from softlab.experiment import variance_decomposition

    per_design = {"init": [10, 11, 10, 11], "init+split": [8, 12, 10, 11], "init+split+teacher": [5, 15, 9, 12]}
    preds = {d: _predictions_with_accuracies(k) for d, k in per_design.items()}
    table = variance_decomposition(preds, metrics=[("accuracy", "all", ["human/human"])])
    assert list(table["design"]) == ["init", "init+split", "init+split+teacher"]
    assert list(table["source"]) == ["init", "split", "teacher"]
    var = {d: statistics.variance([k / 20 for k in ks]) for d, ks in per_design.items()}
    np.testing.assert_allclose(table["variance"], [var["init"], var["init+split"], var["init+split+teacher"]])
    full = var["init+split+teacher"]
    np.testing.assert_allclose(
        table["share"],
        [var["init"] / full, (var["init+split"] - var["init"]) / full, (full - var["init+split"]) / full],
    )
    assert table["share"].sum() == pytest.approx(1.0)
    assert (table["variance_ci_low"] < table["variance"]).all() and (
        table["variance"] < table["variance_ci_high"]
    ).all()
    with pytest.raises(ValueError, match="missing design"):
        variance_decomposition({"init": preds["init"]})


def test_nested_designs_redraw_one_source_more_each(smoke, fashion):
    """``init`` holds split and teacher fixed, ``init+split`` re-draws the split with one fixed
    teacher, the full design also re-draws the teacher; human/human never uses a teacher, so its runs
    under the last two designs are the same numbers."""
    from softlab.experiment import nested_design_configs, run_nested_designs

    cfgs = nested_design_configs(fashion.config)
    assert [c.resample for c in cfgs.values()] == [("init",), ("init", "split"), ("init", "split", "teacher")]
    assert cfgs["init"].n_teachers == 1 and cfgs["init+split"].n_teachers == 1
    assert cfgs["init+split+teacher"].key_dict() == fashion.config.key_dict()  # the book's own runs
    _, train, _ = smoke
    grids = run_nested_designs(fashion.config, train, [0, 1])
    init, split, full = (grids[d].arm for d in ("init", "init+split", "init+split+teacher"))
    np.testing.assert_array_equal(init.folds_of(0), init.folds_of(1))
    assert init.teacher_of(0) == init.teacher_of(1) == split.teacher_of(1)
    assert not np.array_equal(split.folds_of(0), split.folds_of(1))
    assert full.teacher_of(0) != full.teacher_of(1)
    for seed in (0, 1):
        a = grids["init+split"].results[grids["init+split"].index("human/human", seed, 0)]
        b = grids["init+split+teacher"].results[grids["init+split+teacher"].index("human/human", seed, 0)]
        np.testing.assert_array_equal(a.watch_probs, b.watch_probs)


def test_variance_decomposition_figure_draws_one_bar_per_quantity():
    from softlab.experiment import variance_decomposition
    from softlab.plots import SOURCE_COLOURS, plot_variance_decomposition

    per_design = {"init": [10, 11, 10, 11], "init+split": [8, 12, 10, 11], "init+split+teacher": [5, 15, 9, 12]}
    table = variance_decomposition({d: _predictions_with_accuracies(k) for d, k in per_design.items()})
    fig = plot_variance_decomposition(table)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 3  # accuracy of two conditions, calibration of one
    widths = [p.get_width() for p in ax.patches]
    assert len(widths) == 9 and all(w >= 0 for w in widths)
    colours = {p.get_facecolor()[:3] for p in ax.patches}
    assert len(colours) == len(SOURCE_COLOURS)


def test_teacher_accuracy_table_puts_both_teachers_of_a_run_side_by_side(fashion):
    table = fashion.teacher_accuracies([0])
    assert len(table) == 2 * fashion.config.folds and set(table["teacher"]) == {"big", "own-data"}
    for fold in range(fashion.config.folds):
        train = fashion.train_positions(fold, 0)
        row = table[(table["fold"] == fold) & (table["teacher"] == "big")].iloc[0]
        expected = (fashion.teacher_probs_of(0)[train].argmax(1) == fashion.official[train]).mean()
        assert row["accuracy (official)"] == pytest.approx(expected)
        own = table[(table["fold"] == fold) & (table["teacher"] == "own-data")].iloc[0]
        assert own["training images"] < row["training images"]  # the big teacher saw far more data
        assert 0.1 < own["accuracy (official)"] <= 1.0


def test_resample_parameter_rule_names_the_parameter():
    from softlab.params import ParameterError, check_ranges

    check_ranges({"resample": ["init", "split"]})
    with pytest.raises(ParameterError, match=r"parameter 'resample': .*unknown \['teachers'\]"):
        check_ranges({"resample": ["init", "teachers"]})
    with pytest.raises(ValueError, match="including 'init'"):
        configs_from_params({**load_params("smoke"), "resample": ["split"]})
    arms, _, _ = configs_from_params({**load_params("smoke"), "resample": ["init"]})
    assert all(c.resample == ("init",) for c in arms.values())


def test_stability_summary_matches_an_independent_variance_ratio():
    from softlab.experiment import stability_summary
    from softlab.inference import seeds_for_power

    hh, hs = [10, 11, 10, 12, 9, 11, 10, 10], [8, 13, 9, 14, 7, 12, 10, 11]
    preds = _predictions_with_accuracies(hh)
    other = _predictions_with_accuracies(hs)
    preds.probs["human/synthetic"] = other.probs["human/human"]
    row = stability_summary(preds).iloc[0]
    x, y = np.array(hh) / 20, np.array(hs) / 20
    assert row["variance_ratio"] == pytest.approx(x.var(ddof=1) / y.var(ddof=1))
    assert row["rho"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert row["ci_low"] < row["variance_ratio"] < row["ci_high"] and row["seeds"] == 8
    assert row["seeds_for_power"] == seeds_for_power(0.85, row["rho"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_every_seeds_split_partitions_the_pool_like_the_reference_split(mnist_arm, seed):
    """Whatever the seed: held-out folds partition the pool, each fold's training, calibration and
    held-out items are disjoint and cover it, fold sizes and the annotated items' spread match the
    reference split's (±1), and the calibration share is the configured one."""
    arm, k = mnist_arm, mnist_arm.config.folds
    folds = arm.folds_of(seed)
    sizes, ref_sizes = np.bincount(folds, minlength=k), np.bincount(arm.folds, minlength=k)
    assert sizes.max() - sizes.min() <= 1 and sorted(sizes) == sorted(ref_sizes)
    per_fold = np.bincount(folds[arm.annotated], minlength=k)
    assert per_fold.max() - per_fold.min() <= 1
    for fold in range(k):
        train, cal = arm.train_positions(fold, seed), arm.calibration_positions(fold, seed)
        held = arm.heldout_positions(fold, seed)
        assert len(np.union1d(np.union1d(train, cal), held)) == len(train) + len(cal) + len(held) == arm.n_items
        assert abs(len(cal) / (len(cal) + len(train)) - arm.config.calibration_fraction) < 0.02
