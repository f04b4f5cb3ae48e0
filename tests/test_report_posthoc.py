"""The post-hoc twins of softlab.report: ``+ts-official`` (issue 22, claim 1's exploratory
reading "scaling on official labels only") never sees a human distribution, and the claims file
runs it as an exploratory test."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax

from softlab import inference as inf
from softlab.experiment import Arm, RunKey
from softlab.report import OFFICIAL_TS_SUFFIX, TS_SUFFIX, heldout_records, run_temperatures
from tests.test_inference import CONDITIONS, make_arm


@dataclass
class _Arm:
    """The part of :class:`softlab.experiment.Arm` that :func:`run_temperatures` reads, with the
    real reference methods (human distribution where annotated, else one-hot official)."""

    name: str
    official: np.ndarray
    annotated: np.ndarray
    reference: np.ndarray
    n_items = Arm.n_items
    n_classes = Arm.n_classes
    reference_full = Arm.reference_full
    target_reference = Arm.target_reference


@dataclass
class _Grid:
    arm: _Arm
    calibration: list[tuple[np.ndarray, np.ndarray]]
    keys: list[RunKey] = field(default_factory=list)

    def run_keys(self) -> list[RunKey]:
        return self.keys

    def calibration_probs(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.calibration[index]


def _grid(reference: np.ndarray, seed: int = 0) -> _Grid:
    rng = np.random.default_rng(seed)
    n, c = 400, 5
    official = rng.integers(0, c, n)
    annotated = np.sort(rng.choice(n, 250, replace=False))
    arm = _Arm("fashion-mnist", official, annotated, reference)
    calibration, keys = [], []
    for run in range(3):
        pos = np.sort(rng.choice(n, 120, replace=False))  # calibration items, most of them annotated
        logits = 3.0 * np.log(np.eye(c)[official[pos]] * 0.7 + 0.06) + rng.normal(0, 1, (len(pos), c))
        calibration.append((pos, softmax(logits, axis=1)))
        keys.append(RunKey("human/hard", run, 0, False))
    return _Grid(arm, calibration, keys)


def test_the_official_temperature_never_sees_a_human_distribution():
    rng = np.random.default_rng(1)
    human = rng.dirichlet(np.full(5, 0.5), 250)
    other = rng.dirichlet(np.full(5, 3.0), 250)  # every annotated item gets another human distribution
    a, b = run_temperatures(_grid(human)), run_temperatures(_grid(other))
    assert not np.allclose(a["temperature"], b["temperature"], rtol=1e-3)  # the replacement bites on +ts
    np.testing.assert_array_equal(a["temperature_official"].to_numpy(), b["temperature_official"].to_numpy())
    assert (a["temperature_official"] > 0).all() and (a["calibration_items"] == 120).all()


def test_official_twins_feed_the_verdict_table_not_the_metrics_table():
    conditions = CONDITIONS + tuple(
        c.removesuffix(TS_SUFFIX) + OFFICIAL_TS_SUFFIX for c in CONDITIONS if c.endswith(TS_SUFFIX)
    )
    arm = make_arm("fashion-mnist", seeds=10, conditions=conditions)
    table = inf.verdict_table({"fashion-mnist": arm}, inf.load_claims())
    row = table[table["test"] == "soft-calibration-hard-vs-best-ts-official"]
    assert len(row) == 1 and row.iloc[0]["family"] == "exploratory" and not row.iloc[0]["primary"]
    assert row.iloc[0]["comparator"].endswith(OFFICIAL_TS_SUFFIX)
    assert "human/hard+ts-official" in inf.known_conditions()
    assert not any(r.condition.endswith(OFFICIAL_TS_SUFFIX) for r in heldout_records(arm))
    assert any(r.condition.endswith(TS_SUFFIX) for r in heldout_records(arm))


def test_seeds_that_share_a_teacher_are_clustered_for_the_teacher_based_conditions(monkeypatch, tmp_path):
    from softlab.experiment import configs_from_params, prepare_arm, run_arm
    from softlab.params import load_params
    from softlab.report import _load_predictions, _save_predictions, arm_predictions

    cfgs, train, seeds = configs_from_params(load_params("smoke"))
    grid = run_arm(prepare_arm(cfgs["mnist"]), train, seeds)
    temps = run_temperatures(grid)
    assert arm_predictions(grid, temps).seed_clusters is None  # smoke: one teacher per seed
    monkeypatch.setattr(Arm, "teacher_of", lambda self, seed: 0)  # every seed on one teacher
    preds = arm_predictions(grid, temps)
    np.testing.assert_array_equal(preds.seed_clusters, [0] * len(seeds))
    assert "human/synthetic+ts" in preds.clustered_conditions and "human/hard" not in preds.clustered_conditions
    _save_predictions(preds, tmp_path / "p.npz")
    back = _load_predictions(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.seed_clusters, preds.seed_clusters)
    assert back.clustered_conditions == preds.clustered_conditions
