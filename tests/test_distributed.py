"""The training grid on a real Dask cluster (loopback only): a `dask scheduler` and two
`dask worker` processes started and stopped here by PID, driven through `softlab train`.

- stored results equal the in-process ones bit for bit (one torch thread on both sides);
- a worker SIGKILLed while it runs a task: the grid still completes, every run is stored
  exactly once, nothing partial is left, and the numbers are still the in-process ones;
- a cache that already holds some runs: only the missing runs are submitted (the scheduler's
  own transition log counts the tasks).

Plus the in-process streaming trainer against ``train_members`` and the address parser.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from softlab.distributed import (
    TASK_PREFIX,
    InProcessExecutor,
    check_address,
    make_executor,
    plan_groups,
)
from softlab.experiment import DEFAULT_CONDITIONS
from softlab.models import ModelConfig
from softlab.paths import PROJECT_ROOT
from softlab.store import COMPLETE_MARKER, RunStore
from softlab.train import Member, TrainConfig, train_members

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300


def _env(**extra: str) -> dict[str, str]:
    """Subprocess environment: this checkout first on the path (CI: the editable install is the
    same tree), one torch thread, a long scheduler log so every task transition is kept."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT) + (os.pathsep + path if path else ""),
        "SOFTLAB_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": "100000",
        **extra,
    }


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class LoopbackCluster:
    """A scheduler and named single-threaded workers (no nanny: the PID is the worker)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.scheduler_file = workdir / "scheduler.json"
        self.logs: list = []
        self.scheduler = self._spawn(
            "scheduler",
            [
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
        )
        deadline = time.time() + START_TIMEOUT_S
        while not self.scheduler_file.exists():
            if time.time() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {self._log('scheduler')}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but give the reader a whole file
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        self.workers: dict[str, subprocess.Popen] = {}
        from distributed import Client

        self.client = Client(self.address, timeout=START_TIMEOUT_S)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - open while the process runs
        self.logs.append(log)
        return subprocess.Popen(
            [sys.executable, *args], env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )

    def _log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def ensure_workers(self, names=("w0", "w1")) -> None:
        """(Re)start any of the named workers that is not running, and wait for all of them."""
        for name in names:
            proc = self.workers.get(name)
            if proc is None or proc.poll() is not None:
                self.workers[name] = self._spawn(
                    name,
                    [
                        "-m",
                        "distributed.cli.dask_worker",
                        "--scheduler-file",
                        str(self.scheduler_file),
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--name",
                        name,
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--local-directory",
                        str(self.workdir / name),
                        "--death-timeout",
                        "60",
                    ],
                )
        deadline = time.time() + START_TIMEOUT_S
        while set(self.worker_names().values()) != set(names):
            if time.time() > deadline:
                raise RuntimeError(f"workers did not join: {[self._log(n) for n in names]}")
            time.sleep(0.2)

    def worker_names(self) -> dict[str, str]:
        return {addr: str(info["name"]) for addr, info in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def processing(self) -> dict[str, list[str]]:
        """Worker name → keys of the training tasks the scheduler has it running now."""

        def probe(dask_scheduler):
            return {str(ws.name): [str(ts.key) for ts in ws.processing] for ws in dask_scheduler.workers.values()}

        return {
            n: [k for k in ks if k.startswith(TASK_PREFIX)] for n, ks in self.client.run_on_scheduler(probe).items()
        }

    def task_runs(self) -> dict[str, int]:
        """Training task key → how many times the scheduler sent it to a worker (its own log)."""

        def probe(dask_scheduler):
            runs: dict[str, int] = {}
            for t in dask_scheduler.transition_log:
                key = str(t[0])
                if key.startswith("softlab-train"):
                    runs[key] = runs.get(key, 0) + (t[2] == "processing")
            return runs

        return self.client.run_on_scheduler(probe)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            for proc in [*self.workers.values(), self.scheduler]:
                _stop(proc)
            for log in self.logs:
                log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("dask"))
    try:
        c.ensure_workers()
        yield c
    finally:
        c.close()


def softlab_train(runs_dir: Path, *args: str, wait: bool = True):
    """`softlab train --params smoke …` in a subprocess (one torch thread)."""
    cmd = [
        sys.executable,
        "-m",
        "softlab.cli",
        "train",
        "--params",
        "smoke",
        "--runs-dir",
        str(runs_dir),
        "--no-progress",
        *args,
    ]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"{cmd} failed:\n{out}\n{err[-4000:]}"
    return _summary(out)


def _summary(out: str) -> dict[str, str]:
    line = [ln for ln in out.splitlines() if ln.startswith("[softlab train]")][-1]
    return dict(re.findall(r"(\w+)=(\S+)", line))


def assert_same_runs(a: Path, b: Path, n: int) -> None:
    """Both caches hold the same n runs with identical arrays and results (timing aside)."""
    sa, sb = RunStore(a), RunStore(b)
    assert sa.keys() == sb.keys() and len(sa.keys()) == n
    for key in sa:
        ra, rb = sa.load_key(key), sb.load_key(key)
        assert (ra.name, ra.seed, ra.meta, ra.config, ra.diverged, ra.batch_members) == (
            rb.name,
            rb.seed,
            rb.meta,
            rb.config,
            rb.diverged,
            rb.batch_members,
        )
        for field in ("train_idx", "train_loss", "dynamics"):
            np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field), err_msg=f"{key} {field}")
        assert ra.eval_probs.keys() == rb.eval_probs.keys()
        for name in ra.eval_probs:
            np.testing.assert_array_equal(ra.eval_probs[name], rb.eval_probs[name], err_msg=f"{key} {name}")


def assert_clean(root: Path) -> None:
    """Nothing half-written or quarantined, every run folder complete and verified."""
    store = RunStore(root)
    assert store.tmp_dirs() == [] and store.quarantined() == []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert all((p / COMPLETE_MARKER).is_file() for p in folders)
    assert all(store.verify(p.name) is None for p in folders)


def test_dask_grid_equals_inprocess_grid_bit_for_bit(cluster, tmp_path):
    cluster.ensure_workers()
    before = set(cluster.task_runs())
    local = softlab_train(tmp_path / "inprocess")
    remote = softlab_train(tmp_path / "dask", "--dask", cluster.address)
    assert local["executor"] == "inprocess" and remote["executor"] == cluster.address
    n_runs = 3 * 2 * 2 * len(DEFAULT_CONDITIONS)  # 3 arms × 2 seeds × 2 folds × the default conditions
    assert local["runs"] == remote["runs"] == remote["trained"] == str(n_runs)
    new_tasks = set(cluster.task_runs()) - before
    assert len(new_tasks) == int(remote["tasks"]) == int(local["tasks"]) >= 3  # one task per batched group
    assert_same_runs(tmp_path / "inprocess", tmp_path / "dask", n_runs)
    assert_clean(tmp_path / "dask")


#: The grid a worker is killed in: one group key (no training dynamics), so 2 seeds × 2 folds × the
#: default conditions (48 runs) in ceil(48 / 5) = 10 tasks of about a second each on one thread.
KILLED_WORKER_GRID = ("--set", "arms=[fashion-mnist]", "epochs=40", "record_dynamics=false", "--members-per-task", "5")


def train_killing_a_worker(cluster: LoopbackCluster, root: Path) -> dict:
    """`softlab train` of :data:`KILLED_WORKER_GRID` on the cluster into ``root``, one worker
    SIGKILLed as soon as a training task of this run is seen running on it. Returns what happened:
    ``victim`` (its name, or None when no task was seen), ``victim_status``, ``returncode``,
    ``stderr``, ``summary`` (the `[softlab train]` line), ``task_runs`` (task key → times sent to a
    worker, this run's tasks only), ``n_runs`` and ``n_tasks`` (expected). Also used by
    ``benchmarks/faults.py`` (its long profile counts this fault)."""
    cluster.ensure_workers()
    n_runs = 2 * 2 * len(DEFAULT_CONDITIONS)
    before = set(cluster.task_runs())
    proc = softlab_train(root, "--dask", cluster.address, *KILLED_WORKER_GRID, wait=False)
    victim = None
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while victim is None and time.time() < deadline and proc.poll() is None:
            # a task seen for the first time has just started: it has about a second left
            busy = [name for name, keys in cluster.processing().items() if set(keys) - before]
            if busy:
                victim = busy[0]
                cluster.workers[victim].send_signal(signal.SIGKILL)
            else:
                time.sleep(0.02)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _stop(proc)
    return {
        "victim": victim,
        "victim_status": None if victim is None else cluster.workers[victim].wait(timeout=10),
        "returncode": proc.returncode,
        "stderr": err,
        "summary": _summary(out) if proc.returncode == 0 else {},
        "task_runs": {k: v for k, v in cluster.task_runs().items() if k not in before},
        "n_runs": n_runs,
        "n_tasks": -(-n_runs // 5),
    }


def test_killed_worker_task_is_rescheduled_and_every_run_stored_once(cluster, tmp_path):
    got = train_killing_a_worker(cluster, tmp_path / "dask")
    n_runs, n_tasks, summary, runs = got["n_runs"], got["n_tasks"], got["summary"], got["task_runs"]
    assert got["victim"] is not None, "no training task was seen running"
    assert got["victim_status"] == -signal.SIGKILL
    assert got["returncode"] == 0, got["stderr"][-4000:]
    assert summary["runs"] == summary["trained"] == str(n_runs) and summary["tasks"] == str(n_tasks)
    assert len(runs) == n_tasks
    assert max(runs.values()) >= 2, f"the killed worker's task should have been run again: {runs}"
    assert_clean(tmp_path / "dask")
    assert len(RunStore(tmp_path / "dask").list_runs()) == n_runs  # each run once
    softlab_train(tmp_path / "inprocess", *KILLED_WORKER_GRID)
    assert_same_runs(tmp_path / "inprocess", tmp_path / "dask", n_runs)


def test_only_missing_runs_are_submitted(cluster, tmp_path):
    cluster.ensure_workers()
    root = tmp_path / "runs"
    first = softlab_train(root, "--set", "arms=[fashion-mnist]", "seeds=1", "record_dynamics=false")
    per_seed = 2 * len(DEFAULT_CONDITIONS)  # 2 folds × the default conditions
    assert first["trained"] == str(per_seed)
    stored = {
        p.name: (p / COMPLETE_MARKER).stat().st_mtime_ns
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    }
    before = set(cluster.task_runs())
    second = softlab_train(
        root,
        "--set",
        "arms=[fashion-mnist]",
        "seeds=2",
        "record_dynamics=false",
        "--members-per-task",
        "8",
        "--dask",
        cluster.address,
    )
    assert (second["runs"], second["trained"], second["loaded"]) == tuple(map(str, (2 * per_seed, per_seed, per_seed)))
    new_tasks = set(cluster.task_runs()) - before
    assert len(new_tasks) == int(second["tasks"]) == -(-per_seed // 8)  # only the missing seed's runs, 8 per task
    for key, mtime in stored.items():  # the cached runs were neither retrained nor rewritten
        assert (root / key / COMPLETE_MARKER).stat().st_mtime_ns == mtime
    assert len(RunStore(root)) == 2 * per_seed
    assert_clean(root)


# ----------------------------------------------------------------------------- in-process pieces

TRAIN = TrainConfig(ModelConfig("mlp", hidden=8), epochs=2, batch_size=16, max_members_per_batch=3)


def _members():
    rng = np.random.default_rng(1)
    x = rng.random((60, 1, 28, 28), dtype=np.float32)
    targets = rng.dirichlet(np.ones(10), 60).astype(np.float32)
    members = [Member(s, targets, np.arange(40 if s % 2 else 36), f"m{s}", {"s": s}) for s in range(7)]
    return x, members


def test_inprocess_stream_yields_train_members_groups_with_identical_numbers():
    x, members = _members()
    eval_sets = {"test": x[40:]}
    reference = train_members(x, members, TRAIN, eval_sets, progress=False)
    groups = plan_groups(members, TRAIN)
    assert sorted(len(g) for g in groups) == [1, 3, 3] and sorted(i for g in groups for i in g) == list(range(7))
    ex = InProcessExecutor()
    chunks = list(ex.train(x, members, TRAIN, eval_sets))
    assert [c[0] for c in chunks] == groups and ex.submitted_tasks == 3 and ex.submitted_members == 7
    for positions, results in chunks:
        for i, r in zip(positions, results):
            assert r.name == reference[i].name and r.batch_members == reference[i].batch_members
            np.testing.assert_array_equal(r.eval_probs["test"], reference[i].eval_probs["test"])
            np.testing.assert_array_equal(r.dynamics, reference[i].dynamics)
            np.testing.assert_array_equal(r.train_loss, reference[i].train_loss)


def test_results_do_not_depend_on_where_the_image_buffers_start():
    """Deserialised arrays can start at any byte offset; the executors align them, so the numbers
    are those of an aligned buffer (unaligned ones changed the last bit here)."""
    from softlab.distributed import aligned

    x, members = _members()
    base = np.empty(x.nbytes + 64, dtype=np.uint8)
    for offset in (4, 8, 16):
        start = (-base.ctypes.data) % 64 + offset
        shifted = base[start : start + x.nbytes].view(np.float32).reshape(x.shape)
        shifted[...] = x
        assert shifted.ctypes.data % 64 == offset and aligned(shifted).ctypes.data % 64 == 0
        np.testing.assert_array_equal(aligned(shifted), x)
        runs = [
            [r for _, results in InProcessExecutor().train(a, members, TRAIN, {"test": a[40:]}) for r in results]
            for a in (x, shifted)
        ]
        for r, s in zip(*runs, strict=True):
            np.testing.assert_array_equal(r.eval_probs["test"], s.eval_probs["test"])


def test_every_member_field_reaches_the_worker(cluster):
    """Members differing in lr, watched items (and any other Member field) train on the cluster
    exactly as in-process: the task rebuilds each member from all of its fields."""
    import dataclasses

    from softlab.distributed import DaskExecutor
    from softlab.runtime import torch_threads

    cluster.ensure_workers()
    x, members = _members()
    names = {f.name for f in dataclasses.fields(Member)}
    extra = {"record_dynamics": False} if "record_dynamics" in names else {}
    members = [
        dataclasses.replace(m, lr=0.01 * (1 + i % 2), watch_idx=np.arange(40, 50) + i % 3, **(extra if i % 2 else {}))
        for i, m in enumerate(members)
    ]
    eval_sets = {"test": x[40:]}
    with torch_threads(1):
        reference = train_members(x, members, TRAIN, eval_sets, progress=False)
    ex = DaskExecutor(client=cluster.client)
    got = {i: r for positions, results in ex.train(x, members, TRAIN, eval_sets) for i, r in zip(positions, results)}
    assert sorted(got) == list(range(len(members))) and ex.submitted_tasks == len(plan_groups(members, TRAIN))
    for i, ref in enumerate(reference):
        r = got[i]
        assert (r.name, r.config, r.meta) == (ref.name, ref.config, ref.meta)
        for field in ("train_loss", "dynamics", "watch_idx", "watch_dynamics", "watch_probs"):
            np.testing.assert_array_equal(getattr(r, field), getattr(ref, field), err_msg=field)
        np.testing.assert_array_equal(r.eval_probs["test"], ref.eval_probs["test"])
    ex.close()  # leaves the given client open
    assert cluster.client.status == "running"


def test_executor_addresses_are_checked(monkeypatch):
    for ok in ("local:2", "local", "tcp://127.0.0.1:8786", "tls://sched:8786", "10.0.0.5:8786", "inprocess"):
        assert check_address(ok) == ok
    for bad in ("local:0", "local:x", "gpu-node", "tcp//host"):
        with pytest.raises(ValueError, match="local:N"):
            check_address(bad)
    monkeypatch.delenv("SOFTLAB_DASK", raising=False)
    assert isinstance(make_executor(None)[0], InProcessExecutor)
    monkeypatch.setenv("SOFTLAB_DASK", "tcp://127.0.0.1:1")
    ex, owned = make_executor(None)
    assert ex.address == "tcp://127.0.0.1:1" and owned  # nothing connects before the first task
    monkeypatch.setenv("SOFTLAB_DASK", "nonsense")
    with pytest.raises(ValueError, match="SOFTLAB_DASK"):
        make_executor(None)


def test_softlab_run_dask_reaches_the_notebook_kernels_environment(cluster, tmp_path, monkeypatch, capsys):
    """`softlab run --dask ADDR` exports $SOFTLAB_DASK to the processes it starts; a child
    process (here `softlab train`, standing in for a papermill kernel) then trains on the cluster."""
    import softlab.pipeline
    from softlab.cli import main

    cluster.ensure_workers()
    monkeypatch.delenv("SOFTLAB_DASK", raising=False)
    seen = {}

    def fake_run_notebooks(params, only=None, overrides=None, **kw):
        seen["env"] = os.environ.get("SOFTLAB_DASK")
        seen["child"] = softlab_train(tmp_path / "runs", "--set", "arms=[mnist]", "seeds=1")
        return []

    monkeypatch.setattr(softlab.pipeline, "run_notebooks", fake_run_notebooks)
    assert main(["run", "--params", "smoke", "--dask", cluster.address]) == 0
    assert seen["env"] == cluster.address and seen["child"]["executor"] == cluster.address
    assert int(seen["child"]["tasks"]) >= 1 and seen["child"]["trained"] == str(2 * len(DEFAULT_CONDITIONS))
    assert "SOFTLAB_DASK" not in os.environ  # restored afterwards
    assert main(["run", "--params", "smoke", "--dask", "local:0"]) == 2  # a user error: one line, status 2
    err = capsys.readouterr().err
    assert "local:N" in err and len(err.strip().splitlines()) == 1


def test_local_cluster_is_started_once_and_exported_as_a_tcp_address(monkeypatch):
    from distributed import Client

    from softlab.distributed import dask_environment

    monkeypatch.setenv("SOFTLAB_DASK", "inprocess")
    with dask_environment("local:1") as address:
        assert address.startswith("tcp://127.0.0.1:") and os.environ["SOFTLAB_DASK"] == address
        with Client(address, timeout=30) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
    assert os.environ["SOFTLAB_DASK"] == "inprocess"
