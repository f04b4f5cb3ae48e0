"""The standing fault-and-fuzz script (issue 25): inputs a user can get wrong and interruptions a
machine can suffer, each tried for real, with one line of figures at the end::

    inputs_tried=<n> refused_cleanly=<n> round_trips_exact=<n> faults_injected=<n> faults_survived=<n>
    answers_lost=<n> answers_duplicated=<n> tracebacks=<n>

What it does (``--fast``: a few of each, seconds to a minute; default: the long profile):

- **inputs**: hostile ``--set`` values through ``softlab run`` (in-process, papermill stubbed out),
  hostile votes tables through :func:`softlab.data.load_votes`, exported tables read back
  (``round_trips_exact``); a refusal counts when it is one line, exit status 2, nothing written;
- **caches**: every cached ``.npz`` kind (teacher/generator/synthetic, :func:`softlab.io.load_cached_npz`)
  and stored runs (:class:`softlab.store.RunStore`) emptied, truncated, byte-flipped, replaced by
  a folder or given a wrong trainer version: each is healed (recomputed to the identical numbers)
  or refused in one line, never a wrong number;
- **interruptions**: ``kill -9`` and SIGINT of a process filling a run cache at a random moment,
  then a re-run: the results equal an uninterrupted run's and no partial file is read; two such
  processes at once on one cache: both finish with identical results; a read-only (unwritable)
  cache is one line;
- **whole runs** (long profile only, most of its time): ``softlab run --params smoke`` (training,
  results and every notebook, in a copy of the project so this checkout's ``book/`` is never
  written) uninterrupted; then 3 ``kill -9`` and 2 SIGINT (Ctrl-C, to the process group) at points
  drawn by a seeded RNG, each attempt resuming the one before, and a last re-run: nothing partial
  left after any interruption, no damaged file met, and ``results/smoke/*.parquet``, every stored
  run and every cached book table equal the uninterrupted run's; then two runs at once on one
  cache, results folder and ``book/``: both finish, the same results;
- **data files**: a flipped byte and a truncation in each verified image file, on a copy of the
  data folder (``SOFTLAB_DATA_DIR``; ``~/.cache/softlab/data`` is never touched): refused naming
  the file and both checksums;
- **Dask**: a scheduler address nobody answers at: one line within ``SOFTLAB_DASK_TIMEOUT``;
  (long profile) a worker SIGKILLed mid-task on a loopback cluster: the task runs again, every
  run is stored once, the numbers equal an in-process run's;
- **annotation app**: N concurrent writers, the server killed with ``kill -9`` mid-load and
  restarted, every unacknowledged answer resent with its submission id: 0 lost, 0 duplicated;
  a 50 MB body refused before it is read.

A Python traceback anywhere a user would see it counts in ``tracebacks``.

    python benchmarks/faults.py --fast      # what tests/test_faults.py runs
    python benchmarks/faults.py             # the long profile (README, reliability section)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "inputs_tried",
    "refused_cleanly",
    "round_trips_exact",
    "faults_injected",
    "faults_survived",
    "answers_lost",
    "answers_duplicated",
    "tracebacks",
)


class Tally:
    """The figures, and a line per failure (printed, so a failing case can be found)."""

    def __init__(self) -> None:
        self.n: Counter[str] = Counter(dict.fromkeys(FIGURES, 0))
        self.failures: list[str] = []

    def fault(self, name: str, survived: bool, detail: str = "") -> None:
        self.n["faults_injected"] += 1
        self.n["faults_survived"] += int(survived)
        if not survived:
            self.failures.append(f"fault {name}: {detail}")
        if "Traceback" in detail:
            self.n["tracebacks"] += 1

    def refusal(self, name: str, clean: bool, detail: str = "") -> None:
        self.n["inputs_tried"] += 1
        self.n["refused_cleanly"] += int(clean)
        if "Traceback" in detail:
            self.n["tracebacks"] += 1
        if not clean:
            self.failures.append(f"input {name}: {detail}")

    def line(self) -> str:
        return " ".join(f"{k}={self.n[k]}" for k in FIGURES)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- inputs


IDS = ["001", "NA", "null", "Zoë", "=x", "a b"]


def hostile_inputs(t: Tally, fast: bool, work: Path) -> None:
    import pandas as pd

    import softlab.pipeline
    from softlab.cli import main
    from softlab.data.annotations import AnnotationError, read_annotations, write_annotations

    sets = [
        "seeds=0", "seeds=-1", "seeds=1000000000", "seeds=2.5", "seeds=abc", "folds=1", "epochs=0", "lr=0",
        "lr=.nan", "params_name=../x", "params_name=/tmp/abs", "votes={../../x: v.csv}", "arms=[]",
        "arms=[nope]", "unknown=1", "seeds=[", "votes={a: {path: x, path: y}}", "n_boot=1000000000000",
        "batch_size=0", "model=resnet", "votes={ok: /nonexistent.csv}",
    ]  # fmt: skip
    if fast:
        sets = sets[::3]
    ran: list[object] = []
    real_run = softlab.pipeline.run_notebooks
    softlab.pipeline.run_notebooks = lambda *a, **k: ran.append(a)  # type: ignore[assignment]
    try:
        for text in sets:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    status = main(["run", "--params", "smoke", "--set", text])
                except BaseException as exc:
                    status, err = -1, io.StringIO(f"Traceback: {type(exc).__name__}: {exc}")
            msg = err.getvalue()
            t.refusal(f"--set {text}", status == 2 and msg.count("\n") == 1 and not ran, msg.strip())
            ran.clear()
    finally:
        softlab.pipeline.run_notebooks = real_run  # type: ignore[assignment]

    cells = ["-1", "10", "3.0", "1e3", "0_3", "\uff13", "", "NA", "nan", "9223372036854775808", "'=1"]
    header = "item,annotator,label\n"
    tables = [header + f"0,a,{c}\n" for c in cells] + [
        "", header, "item;annotator;label\n0;a;1\n", "annotator,item\na,1\n", header + "0,a,1\n0,a,2\n",
        header + "0,a,1\n0,a ,1\n", header + "99999,a,1\n", "item,annotator,label,weight\n0,a,1,1e308\n0,b,1,1e308\n",
        "\x00\x01binary", "item,annotator,label,dataset\n0,a,1,fashion-mnist\n",
    ]  # fmt: skip
    for k, text in enumerate(tables[:: 2 if fast else 1]):
        folder = work / f"votes{k}"
        folder.mkdir()
        path = folder / "votes.csv"
        path.write_text(text, encoding="utf-8")
        try:
            from softlab.data.votes import load_votes

            load_votes(path, "mnist", "test")
            clean, detail = False, "accepted"
        except AnnotationError as exc:
            clean, detail = "\n" not in str(exc) and str(path) in str(exc), str(exc)
        except BaseException as exc:
            clean, detail = False, f"Traceback: {type(exc).__name__}: {exc}"
        clean = clean and sorted(p.name for p in folder.iterdir()) == ["votes.csv"]
        t.refusal(f"votes {text[:30]!r}", clean, detail)

    rng = np.random.default_rng(0)
    for k in range(5 if fast else 60):
        n = int(rng.integers(1, 50))
        df = pd.DataFrame(
            {
                "item": rng.integers(0, 10_000, n).astype(np.int64),
                "annotator": pd.Series(
                    [rng.choice(["001", "NA", "null", "Zoë", "=x", "a b"]) for _ in range(n)]
                ).astype(str),
                "label": rng.integers(0, 10, n).astype(np.int64),
                "weight": rng.random(n) + 0.01,
            }
        )
        for suffix in (".csv", ".parquet"):
            path = work / f"rt{k}{suffix}"
            write_annotations(df, path)
            t.n["inputs_tried"] += 1
            try:
                pd.testing.assert_frame_equal(read_annotations(path), df)
                t.n["round_trips_exact"] += 1
            except AssertionError as exc:
                t.failures.append(f"round trip {path.name}: {' '.join(str(exc).split())[:200]}")


# --------------------------------------------------------------------------- caches


def cache_faults(t: Tally, fast: bool, work: Path) -> None:
    from softlab.io import DamagedCacheWarning, atomic_save_npz, load_cached_npz

    arrays = {"logits": np.arange(200, dtype=np.float32).reshape(20, 10)}
    damages: dict[str, Callable[[Path], None]] = {
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "flipped": lambda p: _flip(p, random.Random(p.name).randrange(p.stat().st_size)),
        "folder": lambda p: (p.unlink(), p.mkdir()),  # type: ignore[func-returns-value]
    }
    for kind in ("teacher-logits", "generator-vae", "synthetic-set"):
        for name, damage in damages.items():
            for rep in range(1 if fast else 8):
                path = work / kind / f"{name}{rep}.npz"
                atomic_save_npz(path, **arrays)
                damage(path)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DamagedCacheWarning)
                    got = load_cached_npz(path, required=("logits",))
                if got is None:  # quarantined: the caller recomputes and rewrites it
                    atomic_save_npz(path, **arrays)
                    got = load_cached_npz(path, required=("logits",))
                ok = got is not None and np.array_equal(got["logits"], arrays["logits"])
                t.fault(f"{kind} {name}", ok, "wrong numbers after healing")

    store_faults(t, fast, work / "runs")


def _flip(path: Path, i: int) -> None:
    data = bytearray(path.read_bytes())
    data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def _fake_result(config: dict[str, Any]) -> Any:
    from softlab.train import MemberResult

    rng = np.random.default_rng(int(config["seed"]))
    p = rng.dirichlet(np.ones(10), size=30).astype(np.float32)
    return MemberResult(
        name=f"run{config['seed']}",
        seed=int(config["seed"]),
        meta={},
        config=dict(config),
        train_idx=np.arange(30),
        eval_probs={"heldout": p},
        dynamics=None,
        train_loss=np.array([1.0, 0.5]),
    )


def _fingerprint(results: list[Any]) -> str:
    from softlab.io import sha256_bytes

    return sha256_bytes(b"".join(np.ascontiguousarray(r.eval_probs["heldout"]).tobytes() for r in results))


def store_faults(t: Tally, fast: bool, root: Path) -> None:
    from softlab.store import DamagedRunWarning, RunStore

    configs = [{"seed": s, "what": "faults"} for s in range(6)]
    store = RunStore(root)
    reference = _fingerprint(store.get_or_train(configs, lambda cs: [_fake_result(c) for c in cs]))
    for name in ("truncate", "zero-byte", "flip", "folder", "wrong-version", "missing-file"):
        for rep in range(1 if fast else 4):
            key = store.key(configs[rep % len(configs)])
            files = sorted(p for p in (root / key).iterdir() if p.is_file())
            target = files[rep % len(files)]
            if name == "truncate":
                target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 2)])
            elif name == "zero-byte":
                target.write_bytes(b"")
            elif name == "flip":
                _flip(target, target.stat().st_size // 2)
            elif name == "folder":
                target.unlink()
                target.mkdir()
            elif name == "missing-file":
                target.unlink()
            else:
                meta = root / key / "result.json"
                doc = json.loads(meta.read_text())
                doc["store_version"] = -1
                meta.write_text(json.dumps(doc))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DamagedRunWarning)
                try:
                    got = _fingerprint(store.get_or_train(configs, lambda cs: [_fake_result(c) for c in cs]))
                    ok, detail = got == reference, "different numbers after healing"
                except Exception as exc:
                    ok, detail = False, f"Traceback: {type(exc).__name__}: {exc}"
            t.fault(f"run store {name}", ok, detail)


# --------------------------------------------------------------------------- interruptions

CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, {bench!r})
from faults import _fake_result, _fingerprint
from softlab.store import RunStore
configs = [{{"seed": s, "what": "interrupt"}} for s in range({n})]
def slow(cs):
    for i, c in enumerate(cs):
        time.sleep({delay})
        yield [i], [_fake_result(c)]
res = RunStore({root!r}).get_or_train(configs, slow)
print("fingerprint", _fingerprint(res), flush=True)
"""


def _child(root: Path, n: int, delay: float) -> subprocess.Popen[str]:
    code = CHILD.format(bench=str(Path(__file__).parent), n=n, delay=delay, root=str(root))
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[str | None, str]:
    out, err = proc.communicate(timeout=timeout)
    m = re.search(r"fingerprint (\w+)", out)
    return (m.group(1) if m else None), err


def _in_process(root: Path, n: int) -> tuple[str, str]:
    """The child's job here (a re-run after an interruption reads what the killed one left)."""
    from softlab.store import DamagedRunWarning, RunStore

    configs = [{"seed": s, "what": "interrupt"} for s in range(n)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedRunWarning)
        results = RunStore(root).get_or_train(configs, lambda cs: [_fake_result(c) for c in cs])
    return _fingerprint(results), "\n".join(str(w.message) for w in caught if "damaged" in str(w.message))


def interruptions(t: Tally, fast: bool, work: Path) -> None:
    n, delay = (8, 0.05) if fast else (24, 0.05)
    reference, _ = _in_process(work / "reference", n)
    rng = random.Random(0)
    for k, sig in enumerate([signal.SIGKILL] if fast else [signal.SIGKILL, signal.SIGINT] * 6):
        root = work / f"interrupted{k}"
        proc = _child(root, n, delay)
        time.sleep(rng.uniform(0.5, 0.5 + n * delay))
        proc.send_signal(sig)
        _finish(proc)
        again, err2 = _in_process(root, n)
        ok = again == reference and not err2.strip()
        t.fault(f"{signal.Signals(sig).name} then re-run", ok, err2.strip()[-300:] or f"fingerprint {again}")
    root = work / "concurrent"
    a, b = _child(root, n, delay), _child(root, n, delay)
    (fa, ea), (fb, eb) = _finish(a), _finish(b)
    t.fault("two runs on one cache", fa == fb == reference, (ea + eb).strip()[-300:])

    if fast:  # the unwritable cache through the CLI is tests/test_faults.py's regression test
        return
    blocker = work / "not-a-folder"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "softlab.cli", "train", "--params", "smoke", "--no-progress"],
        capture_output=True,
        text=True,
        env=_env(SOFTLAB_CACHE_DIR=str(blocker / "cache")),
        cwd=ROOT,
        timeout=300,
    )
    t.fault(
        "unwritable run cache",
        proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot write there" in proc.stderr,
        proc.stderr.strip()[-300:],
    )


# --------------------------------------------------------------------------- whole runs

RUN_SET = "smoke"
RUN_STARTUP_S = 10.0
"""Seconds a ``softlab run`` spends importing and validating before it does any work (2 shared
cores): each interruption point is drawn in the work that follows."""
ORPHAN_WAIT_S = 20.0
"""How long the processes a killed run started (its notebook kernel) get to notice and exit."""


def _project_copy(dest: Path) -> Path:
    """The package, notebooks and parameter sets copied to ``dest``: ``softlab run`` writes its
    notebooks into ``<project>/book``, so the runs here write into the copy, never into this
    checkout's ``book/``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in ("softlab", "notebooks", "params"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def _softlab_run(project: Path, scenario: Path, log: str) -> subprocess.Popen[str]:
    """``softlab run --params smoke`` of the copy in ``project``, with the cache and results
    folders of ``scenario``, in a session of its own (so its kernel can be found and signalled);
    its output goes to ``scenario/<log>.out`` / ``.err``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(project),
        "SOFTLAB_CACHE_DIR": str(scenario / "cache"),
        "SOFTLAB_RESULTS_DIR": str(scenario / "results"),
    }
    scenario.mkdir(parents=True, exist_ok=True)
    with open(scenario / f"{log}.out", "w") as out, open(scenario / f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "softlab.cli", "run", "--params", RUN_SET],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=project,
            start_new_session=True,
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_group(pgid: int) -> int:
    """Wait for every process of the group to exit (a kernel notices its parent died); SIGKILL
    what is left after ``ORPHAN_WAIT_S``. Returns 1 when something had to be killed."""
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not _group_alive(pgid):
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    while _group_alive(pgid):
        time.sleep(0.1)
    return 1


TIMING = ("seconds", "batch_members", "created_unix")
"""What two runs of the same configuration legitimately differ in: wall time, batch size (a
re-run trains what is missing in batches of its own) and creation time (``result.json``; the
robustness table's ``seconds`` column). The first long run with whole runs counted them as
different results."""


def _frame_digest(path: Path) -> str:
    import pandas as pd

    df = pd.read_parquet(path)
    df = df.drop(columns=[c for c in TIMING if c in df.columns])
    h = json.dumps([list(map(str, df.columns)), [str(t) for t in df.dtypes]]).encode()
    return _digest([h, pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()])


def _digest(parts: list[bytes]) -> str:
    from softlab.io import sha256_bytes

    return sha256_bytes(b"".join(sha256_bytes(p).encode() for p in parts))


def _run_digest(folder: Path) -> str:
    """A stored run's numbers and description (its arrays as arrays: the zip's timestamps differ
    between two writes; :data:`TIMING` left out)."""
    result = json.loads((folder / "result.json").read_text())
    for timing in TIMING:
        result.pop(timing, None)
    parts = [(folder / "config.json").read_bytes(), json.dumps(result, sort_keys=True).encode()]
    with np.load(folder / "arrays.npz", allow_pickle=False) as z:
        for name in sorted(z.files):
            a = z[name]
            parts += [f"{name} {a.dtype} {a.shape}".encode(), np.ascontiguousarray(a).tobytes()]
    return _digest(parts)


def _whole_run_state(scenario: Path) -> dict[str, str]:
    """Everything a run leaves that later runs read, by name: every results table
    (``results/<set>/*.parquet``), every stored run (``cache/runs/<key>``) and every cached book
    folder's tables (``cache/book/<key>``), each as a digest of its contents. A file that cannot
    be read is recorded as such (a partial file would show up here)."""
    state: dict[str, str] = {}
    entries = [(p, "results") for p in sorted((scenario / "results" / RUN_SET).glob("*.parquet"))]
    runs = scenario / "cache" / "runs"
    if runs.is_dir():
        entries += [(p, "run") for p in sorted(runs.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    book = scenario / "cache" / "book"
    if book.is_dir():
        for folder in sorted(p for p in book.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if ".tmp" not in folder.name:
                entries += [(p, "book") for p in sorted(folder.glob("*.parquet"))]
    for path, kind in entries:
        name = f"{kind} {path.relative_to(scenario)}"
        try:
            state[name] = _run_digest(path) if kind == "run" else _frame_digest(path)
        except Exception as exc:
            state[name] = f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    return state


def _state_differences(got: dict[str, str], reference: dict[str, str], partial: bool) -> str:
    """What in ``got`` differs from the uninterrupted run's state ("" when nothing). With
    ``partial`` (after an interruption) entries may be missing, but each one present must be whole
    and equal to the reference's."""
    wrong = [k for k in got if got[k] != reference.get(k)]
    missing = [] if partial else [k for k in reference if k not in got]
    if not wrong and not missing:
        return ""
    return f"{len(wrong)} different ({', '.join(wrong[:3])}) and {len(missing)} missing ({', '.join(missing[:3])})"


def _read_log(scenario: Path, log: str) -> tuple[str, str]:
    return (scenario / f"{log}.out").read_text(errors="replace"), (scenario / f"{log}.err").read_text(errors="replace")


def _complete_run(project: Path, scenario: Path, log: str) -> tuple[int, str, str]:
    proc = _softlab_run(project, scenario, log)
    status = proc.wait(timeout=3600)
    _end_group(proc.pid)
    return (status, *_read_log(scenario, log))


def whole_runs(t: Tally, fast: bool, work: Path) -> None:
    """``softlab run --params smoke`` (training, results and every notebook) uninterrupted once;
    then, on a fresh cache, run again and again, each attempt interrupted (``kill -9`` of the
    run's process, or SIGINT to its process group as Ctrl-C sends it) at a point drawn by a
    seeded RNG, the last attempt left to finish: after every interruption each results table,
    stored run and cached book table present is whole and equal to the uninterrupted run's, the
    next attempt meets no damaged file, and the final state equals the uninterrupted run's. Then
    two runs at once on one fresh cache and results folder: both finish, the same state.
    Minutes: the long profile only (``tests/test_faults.py`` kills a small ``softlab train``)."""
    if fast:
        return
    project = _project_copy(work / "project")
    start = time.monotonic()
    status, out, err = _complete_run(project, work / "reference", "run")
    took = time.monotonic() - start
    reference = _whole_run_state(work / "reference")
    print(f"[faults] uninterrupted softlab run --params {RUN_SET}: {took:.0f} s", file=sys.stderr, flush=True)
    if status != 0 or "Traceback" in err:
        t.failures.append(f"whole run: the uninterrupted run failed (status {status}): {err.strip()[-300:]}")
        t.n["tracebacks"] += int("Traceback" in err)
        return

    rng = random.Random(25)
    kinds = [signal.SIGKILL] * 3 + [signal.SIGINT] * 2
    rng.shuffle(kinds)
    # points in the run's work (fractions of the uninterrupted run's time after start-up),
    # each attempt killed that much further into it than the one before
    points = sorted(rng.uniform(0.05, 0.95) for _ in kinds)
    work_s = max(took - RUN_STARTUP_S, 1.0)
    chain = work / "interrupted"
    orphans = 0
    done = 0.0
    checked: list[tuple[str, list[str]]] = []
    for k, (sig, point) in enumerate(zip(kinds, points)):
        delay = RUN_STARTUP_S + max(point - done, 0.02) * work_s
        done = point
        name = f"{signal.Signals(sig).name} {delay:.0f} s into attempt {k + 1} of softlab run --params {RUN_SET}"
        proc = _softlab_run(project, chain, f"attempt{k}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=delay)
        if proc.poll() is not None:  # finished first: nothing was interrupted, nothing counted
            orphans += _end_group(proc.pid)
            print(f"[faults] {name}: the attempt finished before the signal", file=sys.stderr, flush=True)
            continue
        if sig == signal.SIGKILL:
            proc.kill()  # the run's own process only: its kernel is left to notice
        else:
            os.killpg(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=600)
        orphans += _end_group(proc.pid)
        _, err = _read_log(chain, f"attempt{k}")
        problems = _traceback(err)
        if sig == signal.SIGINT and (status != 130 or err.strip().splitlines()[-1:] != ["softlab run: interrupted"]):
            problems.append(f"SIGINT: status {status}, stderr ends {err.strip()[-200:]!r}")
        left = _state_differences(_whole_run_state(chain), reference, partial=True)
        if left:
            problems.append(f"partial or different files left: {left}")
        checked.append((name, problems))
    status, out, err = _complete_run(project, chain, "final")
    after = _traceback(err)
    if status != 0:
        after.append(f"the re-run failed with status {status}: {err.strip()[-300:]}")
    damaged = [ln for ln in (out + err).splitlines() if "damaged" in ln.lower()]
    if damaged:
        after.append(f"the re-run met damaged files: {damaged[:2]}")
    final = _state_differences(_whole_run_state(chain), reference, partial=False)
    if final:
        after.append(f"the re-run's results differ from the uninterrupted run's: {final}")
    for name, problems in checked:  # survived: nothing partial left, and the re-run gave the same results
        t.fault(f"{name}, then re-run", not problems and not after, "; ".join(problems + after))
    print(f"[faults] whole-run interruptions: {orphans} process(es) outlived a killed run by {ORPHAN_WAIT_S:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip

    together = work / "together"
    procs = [_softlab_run(project, together, f"run{k}") for k in range(2)]
    statuses = [p.wait(timeout=3600) for p in procs]
    for p in procs:
        _end_group(p.pid)
    problems = [f"statuses {statuses}"] if statuses != [0, 0] else []
    for k in range(2):
        err = _read_log(together, f"run{k}")[1]
        problems += _traceback(err) or ([err.strip()[-300:]] if statuses[k] else [])
    same = _state_differences(_whole_run_state(together), reference, partial=False)
    if same:
        problems.append(f"results differ from one run's: {same}{_kept(work, ('reference', 'together'))}")
    t.fault("two softlab runs at once on one cache and results folder", not problems, "; ".join(problems))


def _kept(work: Path, scenarios: Sequence[str]) -> str:
    """With ``SOFTLAB_FAULTS_KEEP=<folder>``: the results tables, book caches and logs of
    ``scenarios`` copied there for a post-mortem (the work folder is removed at the end); the
    text names the folder ("" without the variable)."""
    keep = os.environ.get("SOFTLAB_FAULTS_KEEP")
    if not keep:
        return ""
    for name in scenarios:
        src, dest = work / name, Path(keep) / name
        for part in ("results", "cache/book"):
            if (src / part).is_dir():
                shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
        for log in src.glob("*.err"):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, dest / log.name)
    return f" (kept in {keep})"


def _traceback(err: str) -> list[str]:
    """``[the traceback's end]`` when ``err`` holds one (counted in ``tracebacks``), else ``[]``."""
    return [f"Traceback on stderr: {err[err.index('Traceback') :].strip()[-400:]}"] if "Traceback" in err else []


# --------------------------------------------------------------------------- data files


def data_faults(t: Tally, fast: bool, work: Path) -> None:
    from softlab.data.images import DataError, load_images, raw_dir, spec
    from softlab.paths import data_dir

    warnings.simplefilter("ignore", UserWarning)  # each refusal also warns; the figures count them

    real = data_dir()
    datasets = ["mnist"] if fast else ["mnist", "fashion-mnist"]
    for dataset in datasets:
        files = list(spec(dataset).md5)
        for file in files[:2] if fast else files:
            for damage in ("flip", "truncate"):
                copy = work / f"data-{dataset}-{file}-{damage}"
                for src in real.rglob("*"):
                    if src.is_file():
                        dest = copy / src.relative_to(real)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.symlink_to(src)
                os.environ["SOFTLAB_DATA_DIR"] = str(copy)
                try:
                    target = raw_dir(dataset) / file
                    data = target.read_bytes()
                    target.unlink()  # the link, never the real file
                    target.write_bytes(data[:-100] if damage == "truncate" else _flipped(data))
                    split = "test" if file.startswith("t10k") else "train"
                    try:
                        load_images(dataset, split, sources=("cache",))
                        ok, detail = False, "damaged file accepted"
                    except DataError as exc:
                        msg = str(exc)
                        ok = file in msg and len(re.findall(r"\b[0-9a-f]{32}\b", msg)) >= 2
                        detail = msg[:300]
                    except Exception as exc:
                        ok, detail = False, f"Traceback: {type(exc).__name__}: {exc}"
                    t.fault(f"data {dataset}/{file} {damage}", ok, detail)
                finally:
                    os.environ.pop("SOFTLAB_DATA_DIR", None)
                    shutil.rmtree(copy, ignore_errors=True)


def _flipped(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


# --------------------------------------------------------------------------- Dask


def dask_faults(t: Tally, fast: bool, work: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    if fast:  # in-process (the CLI path is the long profile's and a regression test's)
        from softlab.distributed import DaskUnavailable, dask_environment

        os.environ["SOFTLAB_DASK_TIMEOUT"] = "1"
        try:
            with dask_environment(f"tcp://127.0.0.1:{port}"):
                ok, detail = False, "connected to nothing"
        except DaskUnavailable as exc:
            ok, detail = "\n" not in str(exc) and time.monotonic() - start < 30, str(exc)
        finally:
            os.environ.pop("SOFTLAB_DASK_TIMEOUT", None)
        t.fault("dask scheduler unreachable", ok, detail)
        return
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "softlab.cli",
            "run",
            "--params",
            "smoke",
            "--only",
            "01",
            "--dask",
            f"tcp://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        env=_env(SOFTLAB_DASK_TIMEOUT="2"),
        cwd=ROOT,
        timeout=300,
    )
    took = time.monotonic() - start
    t.fault(
        "dask scheduler unreachable",
        proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no Dask scheduler answered" in proc.stderr,
        proc.stderr.strip()[-300:] + f" ({took:.0f} s)",
    )
    dask_worker_killed(t, work)


def dask_worker_killed(t: Tally, work: Path) -> None:
    """A Dask worker SIGKILLed while it trains a task of a ``softlab train --dask`` run (the
    loopback cluster and the run of ``tests/test_distributed.py``, one definition of both): the
    run completes, the task is run again, every run is stored exactly once, nothing partial is
    left, and the numbers equal an in-process run's."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_distributed as td

    problems: list[str] = []
    work.mkdir(parents=True, exist_ok=True)
    cluster = td.LoopbackCluster(work)
    try:
        got = td.train_killing_a_worker(cluster, work / "dask-runs")
        problems += _traceback(got["stderr"])
        if got["victim"] is None or got["victim_status"] != -signal.SIGKILL:
            problems.append(f"no worker was killed mid-task (victim {got['victim']}, status {got['victim_status']})")
        if got["returncode"] != 0:
            problems.append(f"the run failed with status {got['returncode']}: {got['stderr'].strip()[-300:]}")
        else:
            summary, runs = got["summary"], got["task_runs"]
            if not summary["runs"] == summary["trained"] == str(got["n_runs"]) or len(runs) != got["n_tasks"]:
                problems.append(f"runs/tasks: {summary} {runs}")
            if not runs or max(runs.values()) < 2:
                problems.append(f"the killed worker's task was not run again: {runs}")
            td.assert_clean(work / "dask-runs")
            if len(td.RunStore(work / "dask-runs").list_runs()) != got["n_runs"]:
                problems.append("not every run stored exactly once")
            td.softlab_train(work / "inprocess-runs", *td.KILLED_WORKER_GRID)
            td.assert_same_runs(work / "inprocess-runs", work / "dask-runs", got["n_runs"])
    except AssertionError as exc:
        problems.append(" ".join(str(exc).split())[:400])
    finally:
        cluster.close()
    t.fault("dask worker killed mid-run", not problems, "; ".join(problems))


# --------------------------------------------------------------------------- annotation app


@contextlib.contextmanager
def _server(study_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "softlab.annotate", "--study-dir", str(study_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"at (http://\S+?)/", line)
        if m is None:
            raise RuntimeError(f"annotation server did not start: {line!r}")
        base = m.group(1)
        import httpx

        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def annotation_faults(t: Tally, fast: bool, work: Path) -> None:
    import httpx

    from softlab.annotate import StudySettings, annotator_key, create_study
    from softlab.annotate.app import KEY_HEADER

    writers, items = (10, 6) if fast else (50, 20)
    rng = np.random.default_rng(0)
    study = create_study(
        work / "study",
        images=rng.integers(0, 256, (2 * items + 10, 28, 28), dtype=np.uint8),
        labels=np.arange(2 * items + 10) % 10,
        classes=[str(c) for c in range(10)],
        dataset="user",
        split="test",
        strategy="stratified",
        size=items,
        seed=0,
        settings=StudySettings(),
    )
    state: dict[str, Any] = {"base": None}
    acked: Counter[str] = Counter()
    lock = threading.Lock()

    def writer(k: int) -> None:
        annotator = f"w{k}"
        headers = {KEY_HEADER: annotator_key(study, annotator)}
        for item in (int(i) for i in study.items):
            body = {"annotator": annotator, "item": item, "label": item % 10, "response_ms": 500.0,
                    "submission_id": f"{annotator}-{item}"}  # fmt: skip
            for _ in range(600):  # resend until acknowledged (the server may be down meanwhile)
                try:
                    r = httpx.post(state["base"] + "/api/answers", json=body, headers=headers, timeout=10)
                    if r.status_code in (200, 201):
                        with lock:
                            acked[f"{annotator}/{item}"] += 1
                        break
                    raise RuntimeError(f"status {r.status_code}: {r.text[:200]}")
                except (httpx.HTTPError, TypeError):
                    time.sleep(0.05)

    with _server(study.study_dir) as (proc, base):
        state["base"] = base
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
        for th in threads:
            th.start()
        total = writers * items
        while sum(acked.values()) < total // 3:
            time.sleep(0.01)
        proc.kill()  # kill -9 mid-load
        proc.wait()
        state["base"] = None
        with _server(study.study_dir) as (_, base2):
            state["base"] = base2
            for th in threads:
                th.join(300)
            big = _big_body(base2)
    with sqlite3.connect(study.db_path) as conn:
        rows, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT annotator || '/' || item) FROM answers"
        ).fetchone()
    t.n["answers_lost"] += total - distinct
    t.n["answers_duplicated"] += rows - distinct
    t.fault(
        "annotation server kill -9 mid-load", distinct == total == rows and len(acked) == total, f"{rows=} {distinct=}"
    )
    t.fault("50 MB body", big, "not refused before it was read")


def _big_body(base: str) -> bool:
    """Send the headers of a 50 MB answer and 64 KiB of it: a 413 must come back at once."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"POST /api/answers HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 2**20}\r\n\r\n".encode()
        )
        with contextlib.suppress(OSError):
            s.sendall(b"x" * 65536)
        reply = s.recv(200).decode(errors="replace")
    return reply.startswith("HTTP/1.1 413")


# --------------------------------------------------------------------------- main


def run(fast: bool, only: list[str] | None = None) -> Tally:
    t = Tally()
    with tempfile.TemporaryDirectory(prefix="softlab-faults-") as tmp:
        work = Path(tmp)
        os.environ["SOFTLAB_CACHE_DIR"] = str(work / "cache")
        steps: list[tuple[str, Callable[[], None]]] = [
            ("inputs", lambda: hostile_inputs(t, fast, work / "inputs")),
            ("caches", lambda: cache_faults(t, fast, work / "caches")),
            ("interruptions", lambda: interruptions(t, fast, work / "interrupt")),
            ("whole runs", lambda: whole_runs(t, fast, work / "whole")),
            ("data", lambda: data_faults(t, fast, work / "data")),
            ("dask", lambda: dask_faults(t, fast, work / "dask")),
            ("annotation", lambda: annotation_faults(t, fast, work / "annotate")),
        ]
        for name, step in steps:
            if only and name.split()[0] not in only:
                continue
            (work / name).mkdir(exist_ok=True)
            for sub in ("inputs", "caches", "interrupt", "whole", "data", "annotate"):
                (work / sub).mkdir(exist_ok=True)
            start = time.monotonic()
            try:
                step()
            except Exception as exc:
                t.n["tracebacks"] += 1
                t.failures.append(f"step {name}: {type(exc).__name__}: {exc}")
            print(f"[faults] {name} done in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="a few cases of each kind (what the tests run)")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["inputs", "caches", "interruptions", "whole", "data", "dask", "annotation"],
        help="these steps only (to look into a failure; the figures then cover only them)",
    )
    args = ap.parse_args(argv)
    # a shell starts a background job (`faults.py &`) with SIGINT ignored, and an ignored signal
    # stays ignored in every process it starts: the SIGINT cases then interrupted nothing (the
    # first long run with whole runs found it). A handler of our own is reset to the default in
    # each child, whose Python then turns SIGINT into KeyboardInterrupt as after a Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    t = run(args.fast, args.only)
    for failure in t.failures:
        print(f"[faults] FAILED {failure}", file=sys.stderr)
    print(t.line(), flush=True)
    ok = (
        t.n["tracebacks"] == 0
        and t.n["answers_lost"] == 0
        and t.n["answers_duplicated"] == 0
        and t.n["faults_survived"] == t.n["faults_injected"]
        and t.n["refused_cleanly"] + t.n["round_trips_exact"] == t.n["inputs_tried"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
