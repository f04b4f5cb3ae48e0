"""Throughput of the batched many-member trainer vs the naive one-model-at-a-time loop.

Prints sample-steps/s = members × training samples × epochs / wall seconds for
``softlab.train.train_members`` (all members as one batched computation) and for
``softlab.train.train_single_reference`` called once per member (plain nn.Module +
torch.optim), on the same random data, model, batch size and epochs, and their ratio.

The naive loop's throughput does not depend on the number of members (it trains them one
after another), so it is measured on ``min(members, --naive-max)`` members and reported per
member-sample; the table says how many it ran.

    python benchmarks/bench_trainer.py --quick
    python benchmarks/bench_trainer.py --models cnn --members 1 8 32 --n-train 4096 --epochs 2
    python benchmarks/bench_trainer.py --device cuda --members 1 64 256
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from softlab.models import ModelConfig, count_params
from softlab.runtime import resolve_device, tune_cpu_allocator
from softlab.train import Member, TrainConfig, train_members, train_single_reference


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_members(n_members: int, n_total: int, n_train: int, n_classes: int, seed: int = 0) -> list[Member]:
    rng = np.random.default_rng(seed)
    targets = rng.dirichlet(np.ones(n_classes) * 0.3, size=n_total).astype(np.float32)
    members = []
    for m in range(n_members):
        idx = np.sort(rng.choice(n_total, size=n_train, replace=False))
        members.append(Member(seed=m, targets=targets, train_idx=idx, name=f"m{m}"))
    return members


def time_batched(x: np.ndarray, members: list[Member], cfg: TrainConfig) -> float:
    t0 = time.perf_counter()
    train_members(x, members, cfg, progress=False)
    if cfg.device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_naive(x: np.ndarray, members: list[Member], cfg: TrainConfig) -> float:
    t0 = time.perf_counter()
    for m in members:
        train_single_reference(x, m, cfg)
    if cfg.device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: n-train 1024, 1 epoch, naive-max 4")
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    ap.add_argument("--members", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--n-train", type=int, default=4096, help="training items per member")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    ap.add_argument("--naive-max", type=int, default=8, help="members the naive loop actually trains")
    ap.add_argument("--dynamics", action="store_true", help="also record per-epoch dynamics (both trainers)")
    ap.add_argument("--repeats", type=int, default=1, help="best of this many timings")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.epochs, args.naive_max = 1024, 1, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tuned = tune_cpu_allocator() if device.type == "cpu" else False

    print(
        f"machine: {cpu_name()} | os.cpu_count={os.cpu_count()} | torch {torch.__version__} "
        f"threads={torch.get_num_threads()} | device={device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f" | glibc malloc tuned={tuned} (applies to both trainers)"
    )
    print(
        f"n_train={args.n_train} epochs={args.epochs} batch={args.batch_size} dynamics={args.dynamics} "
        f"repeats={args.repeats}"
    )
    header = (
        f"{'model':5s} {'params':>8s} {'members':>7s} {'batched s':>9s} {'batched smp/s':>13s} "
        f"{'naive s':>8s} {'naive n':>7s} {'naive smp/s':>11s} {'ratio':>6s}"
    )
    print(header)
    print("-" * len(header))
    n_total = max(args.n_train * 2, 2048)
    x = np.random.default_rng(1).random((n_total, 1, 28, 28), dtype=np.float32)
    for kind in args.models:
        model = ModelConfig(kind)
        cfg = TrainConfig(
            model, epochs=args.epochs, batch_size=args.batch_size, record_dynamics=args.dynamics, device=str(device)
        )
        # warm-up (allocator, kernels, lazy imports)
        warm = make_members(2, n_total, 256, model.n_classes)
        wcfg = TrainConfig(model, epochs=1, batch_size=args.batch_size, record_dynamics=False, device=str(device))
        time_batched(x, warm, wcfg)
        time_naive(x, warm[:1], wcfg)
        naive_rate = None
        for n_members in args.members:
            members = make_members(n_members, n_total, args.n_train, model.n_classes)
            work = n_members * args.n_train * args.epochs
            tb = min(time_batched(x, members, cfg) for _ in range(args.repeats))
            n_naive = min(n_members, args.naive_max)
            if naive_rate is None or n_naive > naive_rate[1]:
                tn = min(time_naive(x, members[:n_naive], cfg) for _ in range(args.repeats))
                naive_rate = (n_naive * args.n_train * args.epochs / tn, n_naive, tn)
            rate_b = work / tb
            print(
                f"{kind:5s} {count_params(model):8d} {n_members:7d} {tb:9.2f} {rate_b:13.0f} "
                f"{naive_rate[2]:8.2f} {naive_rate[1]:7d} {naive_rate[0]:11.0f} {rate_b / naive_rate[0]:6.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
