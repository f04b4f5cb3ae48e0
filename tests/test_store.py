"""Run cache: keys from the full configuration, load-instead-of-train, tidy tables, and
atomic writes checked by SIGKILLing a training subprocess mid-way and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softlab.io import config_key
from softlab.models import ModelConfig
from softlab.paths import PROJECT_ROOT
from softlab.store import COMPLETE_MARKER, RunStore
from softlab.train import TRAINER_VERSION, Member, MemberResult, TrainConfig, train_members

TRAIN = TrainConfig(ModelConfig("mlp", hidden=8), epochs=2, batch_size=32)


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    targets = {"hard": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)],
               "soft": rng.dirichlet(np.ones(10), n).astype(np.float32)}
    return x, targets


def _configs(seeds=(0, 1), conditions=("hard", "soft")) -> list[dict]:
    return [{"dataset": "synthetic-test", "dataset_version": "v1", "label_source": "none", "condition": c,
             "seed": s, "fold": 0, "train": TRAIN.key_dict()} for s in seeds for c in conditions]


class CountingTrainer:
    """A train_fn that records which configurations it was asked to train."""

    def __init__(self):
        self.x, self.targets = _data()
        self.calls: list[list[dict]] = []

    def __call__(self, configs: list[dict]) -> list[MemberResult]:
        self.calls.append(configs)
        members = [Member(c["seed"], self.targets[c["condition"]], np.arange(48), f"{c['condition']}-{c['seed']}",
                          {"condition": c["condition"]}) for c in configs]
        return train_members(self.x, members, TRAIN, {"test": self.x[48:]}, progress=False)

    @property
    def trained(self) -> int:
        return sum(len(c) for c in self.calls)


def test_get_or_train_trains_once_then_loads(tmp_path):
    store = RunStore(tmp_path)
    fn = CountingTrainer()
    configs = _configs()
    first = store.get_or_train(configs, fn)
    assert fn.trained == 4 and len(fn.calls) == 1  # one batched call for all missing runs
    again = store.get_or_train(configs, fn)
    assert fn.trained == 4  # nothing retrained
    for a, b in zip(first, again):
        assert a.name == b.name and a.meta == b.meta and a.config == b.config
        np.testing.assert_array_equal(a.eval_probs["test"], b.eval_probs["test"])
        np.testing.assert_array_equal(a.dynamics, b.dynamics)
        assert b.dynamics.dtype == np.float16
        np.testing.assert_array_equal(a.train_loss, b.train_loss)
        np.testing.assert_array_equal(a.train_idx, b.train_idx)
    # one new configuration: only it is trained
    store.get_or_train(configs + _configs(seeds=(2,), conditions=("hard",)), fn)
    assert fn.trained == 5 and len(fn.calls[-1]) == 1
    assert len(store) == 5


def test_key_covers_every_part_of_the_configuration(tmp_path):
    store = RunStore(tmp_path)
    base = _configs()[0]
    keys = {store.key(base)}
    for field, value in [("dataset_version", "v2"), ("label_source", "fmh-2"), ("condition", "soft"), ("seed", 9),
                         ("fold", 3)]:
        keys.add(store.key({**base, field: value}))
    for field, value in [("lr", 0.5), ("epochs", 3), ("optimizer", "sgd")]:
        keys.add(store.key({**base, "train": {**base["train"], field: value}}))
    keys.add(store.key({**base, "train": {**base["train"], "model": {**base["train"]["model"], "hidden": 9}}}))
    assert len(keys) == 10
    # order of keys does not matter, the trainer version is part of the hash
    assert store.key(dict(reversed(list(base.items())))) == store.key(base)
    assert store.key(base) == config_key({**base, "trainer_version": TRAINER_VERSION})
    with pytest.raises(ValueError, match="trainer_version"):
        store.key({**base, "trainer_version": "0-old"})
    with pytest.raises(ValueError, match=r"config\['targets'\]"):
        store.key({**base, "targets": np.zeros(3)})


def test_tables_are_tidy_and_parquet_readable(tmp_path):
    store = RunStore(tmp_path)
    store.get_or_train(_configs(), CountingTrainer())
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    listed = store.list_runs()
    assert len(runs) == len(listed) == 4
    assert set(runs["run_key"]) == set(store.keys())
    assert {"condition", "seed", "fold", "train.lr", "train.model.kind", "run_bytes", "run_diverged"} <= set(runs.columns)
    assert sorted(zip(runs["condition"], runs["seed"])) == [("hard", 0), ("hard", 1), ("soft", 0), ("soft", 1)]
    assert (runs["run_bytes"] > 0).all() and not runs["run_diverged"].any()
    assert json.loads(runs["train.model.in_shape"].iloc[0]) == [1, 28, 28]
    epochs = store.epoch_table()
    assert list(epochs.columns) == ["run_key", "epoch", "train_loss"] and len(epochs) == 4 * TRAIN.epochs
    one = store.load_key(runs["run_key"].iloc[0])
    np.testing.assert_array_equal(epochs[epochs.run_key == runs["run_key"].iloc[0]]["train_loss"], one.train_loss)


def test_empty_store_lists_nothing(tmp_path):
    store = RunStore(tmp_path / "new")
    assert store.keys() == [] and len(store.list_runs()) == 0 and len(store.epoch_table()) == 0
    with pytest.raises(KeyError):
        store.load(_configs()[0])


def test_train_fn_contract_is_checked(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="returned 0 results for 4"):
        store.get_or_train(_configs(), lambda cfgs: [])
    with pytest.raises(ValueError, match="chunk_size"):
        store.get_or_train(_configs(), CountingTrainer(), chunk_size=0)
    assert len(store) == 0


def test_interrupted_write_leaves_no_run(tmp_path, monkeypatch):
    import softlab.store as S

    store = RunStore(tmp_path)
    fn = CountingTrainer()
    cfg = _configs()[:1]
    res = fn(cfg)[0]

    def fail(path, obj):
        raise KeyboardInterrupt  # as if interrupted between two files

    monkeypatch.setattr(S, "_write_json", fail)
    with pytest.raises(KeyboardInterrupt):
        store.save(cfg[0], res)
    assert not store.has(cfg[0]) and store.keys() == [] and store.tmp_dirs() == []


SUBPROCESS_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    import softlab.store as S
    sys.path.insert(0, {tests!r})
    from test_store import CountingTrainer, _configs

    slow = S._write_json
    def slow_write(path, obj):  # widen the window between a run's files
        slow(path, obj)
        time.sleep(0.15)
    S._write_json = slow_write
    store = S.RunStore({store!r})
    store.get_or_train(_configs(seeds=(0, 1, 2), conditions=("hard", "soft")), CountingTrainer(), chunk_size=1)
    print("finished", flush=True)
""")


def test_sigkill_mid_run_leaves_only_complete_runs_and_resume_trains_the_rest(tmp_path):
    root = tmp_path / "store"
    script = SUBPROCESS_SCRIPT.format(root=str(PROJECT_ROOT), tests=str(Path(__file__).parent), store=str(root))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = RunStore(root)
    deadline = time.time() + 90
    killed_mid_write = False
    try:
        while time.time() < deadline and proc.poll() is None:
            # kill once at least one run is complete AND another is half-written
            if len(store.keys()) >= 1 and any(not (d / COMPLETE_MARKER).exists() and any(d.iterdir())
                                              for d in store.tmp_dirs()):
                proc.send_signal(signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and not killed_mid_write:
            proc.kill()
        out, err = proc.communicate(timeout=30)
    assert killed_mid_write, f"subprocess ended before it could be killed: {out!r} {err[-2000:]!r}"
    assert proc.returncode == -signal.SIGKILL

    complete = store.keys()
    assert 1 <= len(complete) < 6
    assert store.tmp_dirs(), "the half-written run should have been left in .tmp"
    for key in complete:  # every stored run loads completely
        r = store.load_key(key)
        assert r.dynamics.shape == (TRAIN.epochs, 48, 10) and r.eval_probs["test"].shape == (16, 10)
        assert r.train_loss.shape == (TRAIN.epochs,) and np.isfinite(r.train_loss).all()
        assert store.load_config(key)["trainer_version"] == TRAINER_VERSION
    assert set(store.list_runs()["run_key"]) == set(complete)  # half-written runs are invisible

    fn = CountingTrainer()
    all_configs = _configs(seeds=(0, 1, 2), conditions=("hard", "soft"))
    results = store.get_or_train(all_configs, fn)
    assert fn.trained == 6 - len(complete)  # resume trains only the missing ones
    trained_keys = {store.key(c) for call in fn.calls for c in call}
    assert trained_keys.isdisjoint(complete)
    assert len(results) == 6 and len(store) == 6
    # a resumed run equals what an uninterrupted run gives (deterministic training)
    reference = CountingTrainer()(all_configs)
    for r, ref in zip(results, reference):
        np.testing.assert_allclose(r.eval_probs["test"], ref.eval_probs["test"], atol=1e-6)
    assert store.clean_tmp(max_age_s=0) >= 1 and store.tmp_dirs() == []


def test_watched_items_round_trip_through_the_store(tmp_path):
    x, targets = _data()
    member = Member(0, targets["soft"], np.arange(40), "watching", watch_idx=np.arange(40, 64))
    result = train_members(x, [member], TRAIN, progress=False)[0]
    store = RunStore(tmp_path)
    config = _configs(seeds=(0,), conditions=("soft",))[0]
    store.save(config, result)
    back = store.load(config)
    for name in ("watch_idx", "watch_dynamics", "watch_probs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.watch_dynamics.dtype == np.float16 and back.watch_probs.dtype == np.float32
