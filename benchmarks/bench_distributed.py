"""The same training grid in-process and through Dask (`local:N`), at equal cores.

Trains a slice of the ``default`` parameter set's grid (by default its Fashion-MNIST arm: the
whole 10,000-item pool, 5 folds, 5 seeds, 11 conditions = 275 runs, without training dynamics so
that they form two equal batched groups of 138 and 137 MLP members — one task per worker; with
``--record-dynamics`` the groups are unequal and the ratio also measures load imbalance) twice,
each time into a fresh, empty run cache:

* in-process, with ``--threads`` torch threads (default: as many as Dask workers);
* through ``--dask local:N`` (N single-threaded worker processes, one torch thread each),
  timed from before the LocalCluster starts to the last run stored (``dask_startup_s`` says how
  much of it was starting the cluster).

The arm is prepared (data, teacher) once beforehand and not timed. Prints one ``key=value``
line each: ``inprocess_s=``, ``dask_s=``, ``ratio=`` (dask / in-process), ``tasks=``, then
``dask_startup_s=``, ``runs=`` and ``identical=`` (whether every stored number agrees bit for
bit; expected only when both sides use the same torch thread count, e.g. ``--threads 1``).

    python benchmarks/bench_distributed.py                       # the measurement (~2 min here)
    python benchmarks/bench_distributed.py --seeds 1 --pool-size 1000 --epochs 1 --members-per-task 25
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from softlab.distributed import open_executor
from softlab.experiment import configs_from_params, prepare_arm, run_arm
from softlab.params import load_params
from softlab.runtime import torch_threads
from softlab.store import RunStore


def identical(a: list, b: list) -> bool:
    for ra, rb in zip(a, b, strict=True):
        if not (
            np.array_equal(ra.train_loss, rb.train_loss)
            and np.array_equal(ra.dynamics, rb.dynamics)
            and all(np.array_equal(ra.eval_probs[k], rb.eval_probs[k]) for k in ra.eval_probs)
        ):
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", default="fashion-mnist", choices=["fashion-mnist", "mnist", "synthetic-mnist"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, help="default: the parameter set's")
    ap.add_argument("--pool-size", type=int, help="default: the parameter set's (0 = whole pool)")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (local:N)")
    ap.add_argument("--threads", type=int, help="in-process torch threads (default: --workers)")
    ap.add_argument(
        "--members-per-task",
        type=int,
        help="members per group/task, both sides (default: the runs split evenly over the workers)",
    )
    ap.add_argument(
        "--record-dynamics",
        action="store_true",
        help="record training dynamics as the book does (the first seed and original/hard): members then form "
        "unequal groups, and the ratio measures load imbalance as well as overhead",
    )
    ap.add_argument("--params", default="default")
    args = ap.parse_args()

    p = dict(load_params(args.params))
    p.update(arms=[args.arm], seeds=args.seeds, record_dynamics=bool(args.record_dynamics))
    if args.epochs is not None:
        p["epochs"] = args.epochs
    if args.pool_size is not None:
        p["pool_size" if args.arm != "mnist" else "mnist_pool_size"] = args.pool_size
    arm_configs, train_cfg, seeds = configs_from_params(p)
    members_per_task = args.members_per_task
    if members_per_task is None:  # equal tasks, one per worker: the ratio then measures Dask's overhead
        cfg = arm_configs[args.arm]
        n_runs = len(seeds) * len(cfg.folds_to_run()) * len(cfg.conditions)
        members_per_task = -(-n_runs // args.workers)
    train_cfg = dataclasses.replace(train_cfg, max_members_per_batch=members_per_task)
    threads = args.threads or args.workers
    print(
        f"# grid: {args.params} arm={args.arm} seeds={args.seeds} epochs={train_cfg.epochs} "
        f"pool_size={p['pool_size']} model={train_cfg.model.kind} members_per_task={members_per_task} "
        f"record_dynamics={p['record_dynamics']}; in-process torch threads={threads}, "
        f"dask local:{args.workers} (1 thread each); cpus={os.cpu_count()}",
        flush=True,
    )
    t = time.perf_counter()
    arm = prepare_arm(arm_configs[args.arm])
    print(f"# arm prepared in {time.perf_counter() - t:.1f} s (not timed below)", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        start = time.perf_counter()
        with torch_threads(threads), open_executor("inprocess") as ex:
            local = run_arm(arm, train_cfg, seeds, store=RunStore(Path(tmp) / "inprocess"), executor=ex)
        inprocess_s = time.perf_counter() - start

        start = time.perf_counter()
        with open_executor(f"local:{args.workers}") as dask:
            dask.client  # noqa: B018 - start the cluster now, to report its share
            startup_s = time.perf_counter() - start
            remote = run_arm(arm, train_cfg, seeds, store=RunStore(Path(tmp) / "dask"), executor=dask)
            tasks = dask.submitted_tasks
        dask_s = time.perf_counter() - start

    print(f"inprocess_s={inprocess_s:.2f}")
    print(f"dask_s={dask_s:.2f}")
    print(f"ratio={dask_s / inprocess_s:.3f}")
    print(f"tasks={tasks}")
    print(f"dask_startup_s={startup_s:.2f}")
    print(f"runs={len(remote.results)}")
    print(f"identical={identical(local.results, remote.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
