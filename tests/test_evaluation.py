"""The tidy evaluation table built from RunPredictions records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from softlab import evaluation as E
from softlab import metrics as M
from softlab import stats as S

N_ITEMS, N_CLASSES, FOLDS, SEEDS = 60, 4, 2, 3
CONDITIONS = ("original/hard", "human/human")


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    human = rng.dirichlet(np.full(N_CLASSES, 0.3), size=N_ITEMS)
    human[:10] = np.eye(N_CLASSES)[rng.integers(0, N_CLASSES, 10)]  # unanimous items (H = 0)
    official = human.argmax(1)
    official[10:16] = (official[10:16] + 1) % N_CLASSES  # some official labels differ from the mode
    return {"human": human, "official": official, "fold": np.arange(N_ITEMS) % FOLDS}


@pytest.fixture(scope="module")
def records(pool) -> list[E.RunPredictions]:
    rng = np.random.default_rng(1)
    recs = []
    for cond in CONDITIONS:
        for seed in range(SEEDS):
            for fold in range(FOLDS):
                idx = np.flatnonzero(pool["fold"] == fold)
                probs = rng.dirichlet(np.ones(N_CLASSES), size=idx.size).astype(np.float32)
                recs.append(
                    E.RunPredictions(
                        "toy", cond, seed, fold, "heldout", probs, idx, pool["official"][idx], pool["human"][idx]
                    )
                )
    # an official-label-only split
    for seed in range(SEEDS):
        probs = rng.dirichlet(np.ones(N_CLASSES), size=25)
        recs.append(
            E.RunPredictions(
                "toy", "original/hard", seed, -1, "disjoint", probs, np.arange(25), rng.integers(0, N_CLASSES, 25)
            )
        )
    return recs


@pytest.fixture(scope="module")
def table(records) -> pd.DataFrame:
    return E.evaluate_runs(records)


def test_columns_and_dtypes(table):
    assert tuple(table.columns) == E.TABLE_COLUMNS
    assert table["seed"].dtype == np.int64 and table["fold"].dtype == np.int64
    assert table["value"].dtype == np.float64
    assert set(table["mode"]) == {"original", "human"} and set(table["shape"]) == {"hard", "human"}
    assert not table.duplicated(["dataset", "condition", "seed", "fold", "split", "stratum", "metric"]).any()


def test_values_equal_direct_metric_calls(table, records, pool):
    rec = records[4]  # original/hard, seed 2, fold 0
    got = table[
        (table.condition == rec.condition)
        & (table.seed == rec.seed)
        & (table.fold == rec.fold)
        & (table.split == "heldout")
        & (table.stratum == "all")
    ].set_index("metric")["value"]
    direct = M.metric_suite(rec.probs, rec.official, rec.human)
    for name, v in direct.items():
        assert got[name] == pytest.approx(float(v), nan_ok=True), name
    assert got["n_items"] == rec.probs.shape[0]


def test_strata_use_pool_wide_tertiles(table, records, pool):
    t1, t2 = S.tertile_thresholds(M.entropy(pool["human"]))
    strata = S.difficulty_strata(M.entropy(pool["human"]), (t1, t2))
    rec = records[1]  # fold 1
    n = table[
        (table.condition == rec.condition)
        & (table.seed == rec.seed)
        & (table.fold == rec.fold)
        & (table.split == "heldout")
        & (table.metric == "n_items")
    ].set_index("stratum")["value"]
    for name in ("easy", "medium", "hard"):
        assert n.get(name, 0) == np.sum(strata[rec.item_ids] == name)
    shifted = S.mode_shifted(rec.human, rec.official)
    assert n["mode-shifted"] == shifted.sum()
    # stratum metric equals the metric on the stratum's items
    mask = strata[rec.item_ids] == "hard"
    val = table[
        (table.condition == rec.condition)
        & (table.seed == rec.seed)
        & (table.fold == rec.fold)
        & (table.stratum == "hard")
        & (table.metric == "ece")
    ]["value"].item()
    assert val == pytest.approx(float(M.ece(rec.probs[mask], rec.official[mask])))
    assert E.entropy_thresholds(records)[("toy", "heldout")] == pytest.approx((t1, t2))


def test_official_only_split(table):
    dis = table[table.split == "disjoint"]
    assert set(dis["stratum"]) == {"all"}
    assert set(dis["metric"]) == set(M.OFFICIAL_METRICS) | {"n_items"}
    assert len(dis) == SEEDS * (len(M.OFFICIAL_METRICS) + 1)


def test_stacking_does_not_mix_records(records, table):
    alone = pd.concat(
        [E.evaluate_runs([r], thresholds=E.entropy_thresholds(records)) for r in records], ignore_index=True
    )
    key = ["dataset", "condition", "seed", "fold", "split", "stratum", "metric"]
    merged = table.merge(alone, on=key, suffixes=("", "_alone"))
    assert len(merged) == len(table) == len(alone)
    np.testing.assert_allclose(merged["value"], merged["value_alone"], equal_nan=True)


def test_strata_subset_and_threshold_override(records):
    df = E.evaluate_runs(records[:1], strata=["all", "hard"], thresholds={("toy", "heldout"): (10.0, 10.0)})
    assert set(df["stratum"]) == {"all"}  # nothing is above 10 nats: empty strata give no rows
    with pytest.raises(ValueError, match="strata"):
        E.evaluate_runs(records, strata=["very-hard"])


def test_write_and_read_parquet_atomically(table, tmp_path):
    path = tmp_path / "sub" / "metrics.parquet"
    E.write_metrics_table(table, path)
    back = E.read_metrics_table(path)
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True))
    assert [p.name for p in path.parent.iterdir()] == ["metrics.parquet"]  # no temporary left behind
    with pytest.raises(ValueError, match="missing column"):
        E.write_metrics_table(table.drop(columns="stratum"), tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_reliability_frame(records):
    rel = E.reliability_frame(records, reference="human-mode", n_bins=10)
    assert len(rel) == len(CONDITIONS) * SEEDS * FOLDS * 10
    assert rel.groupby(["condition", "seed", "fold"])["count"].sum().eq(N_ITEMS // FOLDS).all()
    rec = records[0]
    mode = M.human_mode(rec.human, rec.official)
    part = rel[(rel.condition == rec.condition) & (rel.seed == rec.seed) & (rel.fold == rec.fold)]
    gap = np.nansum(part["count"] * np.abs(part["accuracy"] - part["mean_confidence"])) / part["count"].sum()
    assert gap == pytest.approx(float(M.ece(rec.probs, mode, n_bins=10)))
    official = E.reliability_frame(records, n_bins=5)
    assert set(official["split"]) == {"heldout", "disjoint"}
    with pytest.raises(ValueError, match="reference"):
        E.reliability_frame(records, reference="soft")


def test_disagreement_table(records):
    dis = E.disagreement_table(records)
    assert set(dis.columns) == {"dataset", "condition", "mode", "shape", "fold", "split", "stratum", "n_runs", "churn"}
    row = dis[(dis.condition == "human/human") & (dis.fold == 1) & (dis.stratum == "all")].iloc[0]
    runs = [r for r in records if r.condition == "human/human" and r.fold == 1]
    assert row["n_runs"] == SEEDS
    assert row["churn"] == pytest.approx(S.churn(np.stack([r.probs for r in runs])))


def test_run_predictions_validation():
    probs = np.full((3, 2), 0.5)
    ids = np.arange(3)
    off = np.zeros(3, dtype=int)
    rec = E.RunPredictions("d", "human/human-shuffled", 0, 0, "heldout", probs, ids, off)
    assert (rec.mode, rec.shape) == ("human", "human-shuffled")
    with pytest.raises(ValueError, match="condition"):
        E.RunPredictions("d", "hard", 0, 0, "heldout", probs, ids, off)
    with pytest.raises(ValueError, match="item_ids"):
        E.RunPredictions("d", "a/b", 0, 0, "heldout", probs, np.zeros(3), off)
    with pytest.raises(ValueError, match="official"):
        E.RunPredictions("d", "a/b", 0, 0, "heldout", probs, ids, off[:2])
    with pytest.raises(ValueError, match="human"):
        E.RunPredictions("d", "a/b", 0, 0, "heldout", probs, ids, off, np.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="probs"):
        E.RunPredictions("d", "a/b", 0, 0, "heldout", probs[0], ids, off)
    bad = E.RunPredictions("d", "a/b", 4, 1, "heldout", np.full((3, 2), 0.7), ids, off)
    with pytest.raises(ValueError, match=r"seed=4.*sums to 1.4"):
        E.evaluate_runs([bad])
    with pytest.raises(ValueError, match="records"):
        E.evaluate_runs([])
    assert E.parse_condition("original/synthetic") == ("original", "synthetic")
