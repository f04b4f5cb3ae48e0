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

import softlab.store as S
from softlab.io import config_key, sha256_file
from softlab.models import ModelConfig
from softlab.paths import PROJECT_ROOT
from softlab.store import COMPLETE_MARKER, RunStore
from softlab.train import (
    TRAINER_VERSION,
    Member,
    MemberResult,
    TrainConfig,
    train_members,
)

TRAIN = TrainConfig(ModelConfig("mlp", hidden=8), epochs=2, batch_size=32)


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    targets = {
        "hard": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)],
        "soft": rng.dirichlet(np.ones(10), n).astype(np.float32),
    }
    return x, targets


def _configs(seeds=(0, 1), conditions=("hard", "soft")) -> list[dict]:
    return [
        {
            "dataset": "synthetic-test",
            "dataset_version": "v1",
            "label_source": "none",
            "condition": c,
            "seed": s,
            "fold": 0,
            "train": TRAIN.key_dict(),
        }
        for s in seeds
        for c in conditions
    ]


class CountingTrainer:
    """A train_fn that records which configurations it was asked to train."""

    def __init__(self):
        self.x, self.targets = _data()
        self.calls: list[list[dict]] = []

    def __call__(self, configs: list[dict]) -> list[MemberResult]:
        self.calls.append(configs)
        members = [
            Member(
                c["seed"],
                self.targets[c["condition"]],
                np.arange(48),
                f"{c['condition']}-{c['seed']}",
                {"condition": c["condition"]},
            )
            for c in configs
        ]
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
    for field, value in [
        ("dataset_version", "v2"),
        ("label_source", "fmh-2"),
        ("condition", "soft"),
        ("seed", 9),
        ("fold", 3),
    ]:
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
    assert {"condition", "seed", "fold", "train.lr", "train.model.kind", "run_bytes", "run_diverged"} <= set(
        runs.columns
    )
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
        digest = slow(path, obj)
        time.sleep(0.15)
        return digest
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
            if len(store.keys()) >= 1 and any(
                not (d / COMPLETE_MARKER).exists() and any(d.iterdir()) for d in store.tmp_dirs()
            ):
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


# ----------------------------------------------------------------------------- streaming chunks


def _chunked_trainer(store: RunStore, sizes: list[int], seen_stored: list[int]):
    """A train_fn yielding (positions, results) chunks of the given sizes, recording before each
    chunk how many runs the store already holds."""
    inner = CountingTrainer()

    def train(configs):
        results = inner(configs)
        start = 0
        for size in sizes:
            seen_stored.append(len(store))
            yield list(range(start, start + size))[::-1], results[start : start + size][::-1]
            start += size

    train.inner = inner
    return train


def test_streamed_chunks_are_stored_as_they_arrive_with_a_run_progress_bar(tmp_path, capsys):
    store = RunStore(tmp_path)
    seen: list[int] = []
    configs = _configs(seeds=(0, 1, 2))
    results = store.get_or_train(configs, _chunked_trainer(store, [2, 3, 1], seen), progress=True)
    assert seen == [0, 2, 5]  # each chunk was stored before the next one was asked for
    assert len(store) == 6 and [r.name for r in results] == [f"{c['condition']}-{c['seed']}" for c in configs]
    assert "6/6" in capsys.readouterr().err  # tqdm: runs done / total
    again = store.get_or_train(configs, lambda cfgs: pytest.fail("nothing is missing"))
    for a, b in zip(results, again):
        np.testing.assert_array_equal(a.eval_probs["test"], b.eval_probs["test"])


def test_chunk_protocol_is_checked_and_runs_delivered_before_an_error_are_kept(tmp_path):
    configs = _configs()
    results = CountingTrainer()(configs)
    bad = {
        "duplicate": [([0, 1], results[:2]), ([1], results[1:2])],
        "out of range": [([0], results[:1]), ([7], results[:1])],
        "missing": [([0, 1], results[:2])],
    }
    messages = {"duplicate": "twice", "out of range": "position 7", "missing": "delivered 2 of 4"}
    for name, chunks in bad.items():
        store = RunStore(tmp_path / name.replace(" ", "-"))
        with pytest.raises(ValueError, match=messages[name]):
            store.get_or_train(configs, lambda cfgs, chunks=chunks: iter(chunks))
        assert len(store) >= 1  # what arrived before the error was stored


def test_one_failing_save_does_not_lose_the_others(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    configs = _configs()
    victim = store.key(configs[1])
    real_save = RunStore.save

    def flaky_save(self, config, result):
        if self.key(config) == victim:
            raise OSError(28, "No space left on device")
        return real_save(self, config, result)

    monkeypatch.setattr(RunStore, "save", flaky_save)
    with pytest.raises(S.RunSaveError, match=rf"1 of 4 .*{victim}.*No space left"):
        store.get_or_train(configs, CountingTrainer())
    assert set(store.keys()) == {store.key(c) for c in configs} - {victim}
    monkeypatch.setattr(RunStore, "save", real_save)
    fn = CountingTrainer()
    store.get_or_train(configs, fn)
    assert fn.trained == 1 and len(store) == 4  # only the lost one is trained again


# ----------------------------------------------------------------------------- healing (issue 13, item 3)


def _stored(tmp_path, seeds=(0, 1)):
    store = RunStore(tmp_path)
    configs = _configs(seeds=seeds)
    results = store.get_or_train(configs, CountingTrainer())
    return store, configs, results


def _assert_healed(store, configs, original, damaged_keys, recwarn, per_run_warning=True):
    """get_or_train retrains exactly the damaged runs, quarantines them with a warning naming
    each, and the results equal the originals."""
    fn = CountingTrainer()
    results = store.get_or_train(configs, fn)
    assert sorted(store.key(c) for call in fn.calls for c in call) == sorted(damaged_keys)
    warned = [str(w.message) for w in recwarn if issubclass(w.category, S.DamagedRunWarning)]
    for key in damaged_keys if per_run_warning else []:
        assert any(f"run {key}" in m and "quarantine" in m for m in warned), warned
    assert all("\n" not in m for m in warned)
    moved = {p.name.split(".")[0] for p in store.quarantined()}
    assert moved == set(damaged_keys)
    for r, ref in zip(results, original):
        np.testing.assert_array_equal(r.eval_probs["test"], ref.eval_probs["test"])
    assert all(store.verify(k) is None for k in store) and len(store) == len(configs)
    return fn


def test_incomplete_run_folder_does_not_block_save(tmp_path, recwarn):
    store = RunStore(tmp_path)
    configs = _configs()
    blocked = store.key(configs[2])
    (tmp_path / blocked).mkdir()
    (tmp_path / blocked / "arrays.npz").write_bytes(b"half a file")  # e.g. an interrupted copy
    fn = CountingTrainer()
    results = store.get_or_train(configs, fn)  # old code: OSError "Directory not empty", chunk lost
    assert fn.trained == 4 and len(store) == 4 and store.verify(blocked) is None
    (q,) = store.quarantined()
    assert q.name.startswith(f"{blocked}.") and (q / "arrays.npz").read_bytes() == b"half a file"  # kept
    assert "no COMPLETE marker" in (q / S.QUARANTINE_NOTE).read_text()
    assert any(f"run {blocked}" in str(w.message) for w in recwarn if w.category is S.DamagedRunWarning)
    # save() itself, with a leftover folder at the destination, also succeeds
    leftover = store.key(_configs(seeds=(5,))[0])
    (tmp_path / leftover).mkdir()
    (tmp_path / leftover / "result.json").write_text("{}")
    store.save(_configs(seeds=(5,))[0], results[0])
    assert store.verify(leftover) is None and len(store.quarantined()) == 2


def test_damaged_arrays_are_quarantined_and_retrained(tmp_path, recwarn):
    store, configs, original = _stored(tmp_path)
    truncated, flipped = store.key(configs[0]), store.key(configs[3])
    path = tmp_path / truncated / "arrays.npz"
    path.write_bytes(path.read_bytes()[:200])
    path = tmp_path / flipped / "arrays.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed data
    path.write_bytes(bytes(data))
    with pytest.raises(S.DamagedRunError, match=rf"run {truncated} .*arrays.npz does not match"):
        store.load_key(truncated)  # not a raw BadZipFile
    _assert_healed(store, configs, original, [truncated, flipped], recwarn)


def test_invalid_result_json_is_quarantined(tmp_path, recwarn):
    store, configs, original = _stored(tmp_path)
    edited, resigned = store.key(configs[1]), store.key(configs[2])
    (tmp_path / edited / "result.json").write_text('{"name": ', encoding="utf-8")
    # the same defect with COMPLETE's checksum updated to match: the JSON parser is reached
    (tmp_path / resigned / "result.json").write_text("{not json", encoding="utf-8")
    marker = json.loads((tmp_path / resigned / COMPLETE_MARKER).read_text())
    marker["files"]["result.json"] = S.sha256_bytes(b"{not json")
    (tmp_path / resigned / COMPLETE_MARKER).write_text(json.dumps(marker))
    with pytest.raises(KeyError, match=rf"run {resigned} .*invalid JSON") as info:
        store.load_key(resigned)
    assert not isinstance(info.value, json.JSONDecodeError) and isinstance(info.value, S.DamagedRunError)
    assert len(store.list_runs()) == 2  # the index leaves the damaged runs out instead of failing
    _assert_healed(store, configs, original, [edited, resigned], recwarn)


def test_swapped_arrays_are_detected(tmp_path, recwarn):
    store, configs, original = _stored(tmp_path, seeds=(0, 1, 2))
    a, b = store.key(configs[0]), store.key(configs[1])
    # 1. arrays.npz of two runs swapped (same names and shapes, other numbers)
    pa, pb = tmp_path / a / "arrays.npz", tmp_path / b / "arrays.npz"
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    # 2. two arrays swapped inside one file, COMPLETE's checksum updated to match
    c = store.key(configs[2])
    with np.load(tmp_path / c / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["train_idx"], arrays["train_loss"] = arrays["train_loss"], arrays["train_idx"]
    np.savez_compressed(tmp_path / c / "arrays.npz", **arrays)
    marker = json.loads((tmp_path / c / COMPLETE_MARKER).read_text())
    marker["files"]["arrays.npz"] = sha256_file(tmp_path / c / "arrays.npz")
    (tmp_path / c / COMPLETE_MARKER).write_text(json.dumps(marker))
    assert "other names/shapes" in store.verify(c)
    # 3. a whole run folder under another run's key
    d, e = store.key(configs[3]), store.key(configs[4])
    os.rename(tmp_path / d, tmp_path / "x")
    os.rename(tmp_path / e, tmp_path / d)
    os.rename(tmp_path / "x", tmp_path / e)
    assert "the folder holds another run" in store.verify(d)
    _assert_healed(store, configs, original, [a, b, c, d, e], recwarn)


def test_complete_marker_without_checksums_is_treated_as_damaged(tmp_path, recwarn):
    store, configs, original = _stored(tmp_path, seeds=(0, 1, 2))
    old = [store.key(c) for c in configs[:5]]
    for key in old:
        (tmp_path / key / COMPLETE_MARKER).write_text(json.dumps({"key": key}))  # what softlab wrote before
    assert "older softlab" in store.verify(old[0])
    _assert_healed(store, configs, original, old, recwarn, per_run_warning=False)
    warned = [str(w.message) for w in recwarn if issubclass(w.category, S.DamagedRunWarning)]
    assert len(warned) == 1 and warned[0].startswith("5 run(s)") and "older softlab" in warned[0]  # one line, not 5


def test_stale_tmp_cleaned_at_start(tmp_path):
    store, configs, _ = _stored(tmp_path)
    key = store.key(configs[0])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = tmp_path / ".tmp"
    killed_writer = tmp / f"{key}.{S._host_tag()}.{dead.pid}.aaaa"
    old_format = tmp / f"{key}.{dead.pid}.bbbb"  # no host: judged by age only
    ancient = tmp / f"{key}.otherhost.1.cccc"
    live = tmp / f"{key}.{S._host_tag()}.{os.getppid()}.dddd"  # a running writer on this host
    elsewhere = tmp / f"{key}.otherhost.1.eeee"  # a recent writer on another host
    for p in (killed_writer, old_format, ancient, live, elsewhere):
        p.mkdir(parents=True)
        (p / "arrays.npz").write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(ancient, (two_hours_ago, two_hours_ago))
    RunStore(tmp_path)  # opening the store cleans up
    assert sorted(p.name for p in store.tmp_dirs()) == sorted(p.name for p in (old_format, live, elsewhere))
    assert len(store) == 4  # complete runs untouched
