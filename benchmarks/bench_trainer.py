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
    python benchmarks/bench_trainer.py --models cnn --members 8 --precision float32 bfloat16 --repeats 3
    python benchmarks/bench_trainer.py --models cnn --members 8 --n-train 2048 --epochs 1 --breakdown
    python benchmarks/bench_trainer.py --models cnn --members 8 --precision float32 bfloat16 --cpu-workers 1 2

Options of the batched trainer (``--precision float32 bfloat16``, ``--compile none default``,
``--cpu-workers 1 2``) are
each checked against float32 eager on a fixed seed (``<model>_<option>_max_abs_prob_diff_vs_fp32=``);
the naive baseline is always float32 eager, the path the book ran with. The last lines are
``key=value`` figures: ``<model>_samples_per_s_<members>[_<option>]=``,
``<model>_batched_over_naive_<members>[_<option>]=`` and the headline pair
``<model>_batched_over_naive=`` / ``<model>_samples_per_s=`` at ``--target-members`` (default 8)
for the fastest measured option (named by ``<model>_headline_option=``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from softlab.models import ModelConfig, conv_channels, count_params
from softlab.runtime import resolve_device, tune_cpu_allocator
from softlab.train import COMPILE_MODES, PRECISIONS, Member, TrainConfig, train_members, train_single_reference


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
    t0, c0 = time.perf_counter(), time.process_time()
    train_members(x, members, cfg, progress=False)
    if cfg.device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    CPU_SECONDS.append(time.process_time() - c0)
    return time.perf_counter() - t0


def time_naive(x: np.ndarray, members: list[Member], cfg: TrainConfig) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    for m in members:
        train_single_reference(x, m, cfg)
    if cfg.device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    CPU_SECONDS.append(time.process_time() - c0)
    return time.perf_counter() - t0


CPU_SECONDS: list[float] = []
"""CPU seconds (this process, all threads) of each timing, in order: on shared, oversubscribed
cores wall time measures the neighbours too; with ``--threads 1`` CPU time is the work itself."""


def bf16_supported() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (avx512_bf16 / AMX); elsewhere bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def option_name(precision: str, compile_mode: str, cpu_workers: int = 1) -> str:
    """``fp32``, ``bf16``, ``fp32_compile``, ``bf16_compile-max-autotune``, ``bf16_w2`` …: the label
    of a measured option (``_w<n>``: ``TrainConfig.cpu_workers`` = n)."""
    short = {"float32": "fp32", "bfloat16": "bf16"}[precision]
    label = (
        short
        if compile_mode == "none"
        else f"{short}_compile" + ("" if compile_mode == "default" else f"-{compile_mode}")
    )
    return label if cpu_workers == 1 else f"{label}_w{cpu_workers}"


def check_against_fp32(x: np.ndarray, cfg: TrainConfig, n_total: int, n_items: int = 512) -> float:
    """Max |p_option − p_fp32| over the eval probabilities of 2 members trained on a fixed seed
    (``n_items`` training items each, 2 epochs)."""
    members = make_members(2, n_total, n_items, cfg.model.n_classes, seed=3)
    ref_cfg = replace(cfg, precision="float32", compile_mode="none", cpu_workers=1, epochs=2, record_dynamics=False)
    opt_cfg = replace(cfg, epochs=2, record_dynamics=False)
    ev = {"eval": x[:256]}
    ref = train_members(x, members, ref_cfg, eval_sets=ev, progress=False)
    got = train_members(x, members, opt_cfg, eval_sets=ev, progress=False)
    return float(max(np.abs(a.eval_probs["eval"] - b.eval_probs["eval"]).max() for a, b in zip(ref, got)))


def train_flops_per_sample(model: ModelConfig) -> float:
    """Floating-point operations of one training sample-step (multiply-add = 2) in the convolutions
    and matrix products: forward, ∂weights, and ∂inputs for every layer but the first (the images
    need no gradient). Pooling, activations, the loss and the optimizer are not counted."""
    c, h, w = model.in_shape
    layers: list[float] = []  # forward FLOPs of each layer, in order
    if model.kind == "cnn":
        for c_out in conv_channels(model):
            layers.append(2.0 * h * w * c_out * c * 9)
            c, h, w = c_out, h // 2, w // 2
        widths = [c * h * w, model.hidden, model.n_classes]
    else:
        widths = [c * h * w, *([model.hidden] * model.depth), model.n_classes]
    layers += [2.0 * a * b for a, b in itertools.pairwise(widths)]
    return float(sum(layers) * 3 - layers[0])


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product speed (n×n by n×n, best of ``repeats``), in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


#: Where a training step's time goes: a profiler op name's first matching pattern names its part.
STEP_PARTS = (
    ("convolution", ("convolution",)),
    ("matrix products", ("bmm", "addmm", "aten::mm", "matmul")),
    ("pooling", ("max_pool",)),
    ("zero-fill", ("fill_", "zero_")),
    ("optimizer", ("_fused_adam", "_fused_sgd")),
)


def step_breakdown(x: np.ndarray, members: list[Member], cfg: TrainConfig) -> tuple[dict[str, float], float]:
    """Self time (s) of each of :data:`STEP_PARTS` (the rest as ``other``) in one profiled
    ``train_members`` call, and that call's wall time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        train_members(x, members, cfg, progress=False)
        wall = time.perf_counter() - t0
    parts = {name: 0.0 for name, _ in STEP_PARTS} | {"other": 0.0}
    for event in prof.key_averages():
        part = next((name for name, pats in STEP_PARTS if any(p in event.key for p in pats)), "other")
        parts[part] += event.self_cpu_time_total / 1e6
    return parts, wall


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
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds (each times naive and every option once, interleaved); the best round counts",
    )
    ap.add_argument(
        "--precision",
        nargs="+",
        default=["float32"],
        choices=list(PRECISIONS),
        help="batched-trainer precisions to measure (the naive baseline is always float32 eager)",
    )
    ap.add_argument(
        "--compile",
        nargs="+",
        default=["none"],
        choices=list(COMPILE_MODES),
        help="torch.compile modes of the batched step to measure ('none' = eager)",
    )
    ap.add_argument(
        "--cpu-workers",
        nargs="+",
        type=int,
        default=[1],
        help="TrainConfig.cpu_workers values to measure: groups trained side by side in threads, "
        "each on threads/workers intra-op threads (1 = one group at a time on all threads)",
    )
    ap.add_argument(
        "--target-members",
        type=int,
        default=8,
        help="member count of the headline lines <model>_batched_over_naive= / <model>_samples_per_s=",
    )
    ap.add_argument(
        "--headline",
        default="",
        help="option label (fp32, bf16, fp32_compile …) of the headline lines; default: the fastest measured",
    )
    ap.add_argument("--check-items", type=int, default=512, help="training items of the check against fp32")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also profile one fp32 run at --target-members: where the step's time goes, the machine's "
        "sgemm speed, and the throughput bound the convolutions alone set",
    )
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
        + (f" | cpu bf16 kernels={bf16_supported()}" if device.type == "cpu" else "")
        + f" | load average {' '.join(f'{v:.2f}' for v in load_average())}"
    )
    print(
        f"n_train={args.n_train} epochs={args.epochs} batch={args.batch_size} dynamics={args.dynamics} "
        f"repeats={args.repeats}"
    )
    header = (
        f"{'model':5s} {'option':14s} {'params':>8s} {'members':>7s} {'batched s':>9s} {'batched smp/s':>13s} "
        f"{'naive s':>8s} {'naive n':>7s} {'naive smp/s':>11s} {'ratio':>6s}"
    )
    print(header)
    print("-" * len(header))
    n_total = max(args.n_train * 2, 2048)
    x = np.random.default_rng(1).random((n_total, 1, 28, 28), dtype=np.float32)
    options = [(p, c, w) for p in args.precision for c in args.compile for w in args.cpu_workers]
    figures: list[str] = []
    for kind in args.models:
        model = ModelConfig(kind)
        base = TrainConfig(
            model, epochs=args.epochs, batch_size=args.batch_size, record_dynamics=args.dynamics, device=str(device)
        )
        # warm-up (allocator, kernels, lazy imports) and the naive baseline (float32 eager)
        warm = make_members(2, n_total, min(256, args.n_train), model.n_classes)
        wcfg = replace(base, epochs=1, record_dynamics=False)
        time_batched(x, warm, wcfg)
        time_naive(x, warm[:1], wcfg)
        n_naive = min(max(args.members), args.naive_max)
        naive_members = make_members(n_naive, n_total, args.n_train, model.n_classes)
        cfgs = {option_name(p, c, w): replace(base, precision=p, compile_mode=c, cpu_workers=w) for p, c, w in options}
        for label, cfg in cfgs.items():
            if label != "fp32":
                diff = check_against_fp32(x, cfg, n_total, args.check_items)
                figures.append(f"{kind}_{label}_max_abs_prob_diff_vs_fp32={diff:.3g}")
            if cfg.compile_mode != "none":  # compilation happens on the first call: keep it out of the timing
                time_batched(x, make_members(max(args.members), n_total, 256, model.n_classes), wcfg_for(cfg))
        # --repeats rounds, each timing the naive loop and every option once (interleaved, so that
        # a change in the machine's load hits all of them alike); the best of the rounds counts
        naive_times: list[float] = []
        naive_cpu: list[float] = []
        batched_times: dict[tuple[str, int], list[float]] = {}
        batched_cpu: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            naive_times.append(time_naive(x, naive_members, base))
            naive_cpu.append(CPU_SECONDS[-1])
            for label, cfg in cfgs.items():
                for n_members in args.members:
                    members = make_members(n_members, n_total, args.n_train, model.n_classes)
                    batched_times.setdefault((label, n_members), []).append(time_batched(x, members, cfg))
                    batched_cpu.setdefault((label, n_members), []).append(CPU_SECONDS[-1])
        tn = min(naive_times)
        naive_rate = n_naive * args.n_train * args.epochs / tn
        naive_cpu_rate = n_naive * args.n_train * args.epochs / min(naive_cpu)
        figures.append(f"{kind}_naive_samples_per_cpu_s={naive_cpu_rate:.0f}")
        rates: dict[tuple[str, int], float] = {}
        for (label, n_members), times in batched_times.items():
            tb = min(times)
            rate_b = n_members * args.n_train * args.epochs / tb
            rates[(label, n_members)] = rate_b
            print(
                f"{kind:5s} {label:14s} {count_params(model):8d} {n_members:7d} {tb:9.2f} {rate_b:13.0f} "
                f"{tn:8.2f} {n_naive:7d} {naive_rate:11.0f} {rate_b / naive_rate:6.2f}",
                flush=True,
            )
            suffix = "" if label == "fp32" else f"_{label}"
            cpu_rate = n_members * args.n_train * args.epochs / min(batched_cpu[(label, n_members)])
            figures.append(f"{kind}_samples_per_cpu_s_{n_members}{suffix}={cpu_rate:.0f}")
            figures.append(f"{kind}_batched_over_naive_cpu_{n_members}{suffix}={cpu_rate / naive_cpu_rate:.2f}")
            figures.append(f"{kind}_samples_per_s_{n_members}{suffix}={rate_b:.0f}")
            figures.append(f"{kind}_batched_over_naive_{n_members}{suffix}={rate_b / naive_rate:.2f}")
        figures.append(f"{kind}_naive_samples_per_s={naive_rate:.0f}")
        at_target = {lab: r for (lab, m), r in rates.items() if m == args.target_members}
        if at_target:
            head = args.headline if args.headline in at_target else max(at_target, key=lambda k: at_target[k])
            figures.append(f"{kind}_headline_option={head}")
            figures.append(f"{kind}_headline_members={args.target_members}")
            figures.append(f"{kind}_batched_over_naive={at_target[head] / naive_rate:.2f}")
            figures.append(f"{kind}_samples_per_s={at_target[head]:.0f}")
            flops = train_flops_per_sample(model)
            figures.append(f"{kind}_gflop_per_sample_step={flops / 1e9:.4f}")
            figures.append(f"{kind}_achieved_gflops={at_target[head] * flops / 1e9:.1f}")
        if args.breakdown:
            figures += breakdown_figures(kind, x, base, n_total, args)
    print(f"load_average_after={' '.join(f'{v:.2f}' for v in load_average())}")
    for line in figures:
        print(line)
    return 0


def breakdown_figures(kind: str, x: np.ndarray, base: TrainConfig, n_total: int, args: argparse.Namespace) -> list[str]:
    """Print where one fp32 run's time goes (at --target-members) and return its figures:
    ``<model>_share_<part>=``, ``<model>_convolution_bound_samples_per_s=`` (the throughput if
    everything but the convolutions took no time) and ``cpu_sgemm_gflops=``."""
    members = make_members(args.target_members, n_total, args.n_train, base.model.n_classes)
    parts, wall = step_breakdown(x, members, base)
    total = sum(parts.values())
    samples = args.target_members * args.n_train * args.epochs
    print(
        f"{kind} fp32, {args.target_members} members, profiled run {wall:.2f} s: "
        + ", ".join(f"{name} {sec / total:.0%}" for name, sec in parts.items())
    )
    out = [f"{kind}_share_{name.replace(' ', '_').replace('-', '_')}={sec / total:.3f}" for name, sec in parts.items()]
    if parts["convolution"] > 0:
        out.append(f"{kind}_convolution_bound_samples_per_s={samples / parts['convolution']:.0f}")
    out.append(f"cpu_sgemm_gflops={sgemm_gflops():.0f}")
    return out


def wcfg_for(cfg: TrainConfig) -> TrainConfig:
    """A one-epoch copy of ``cfg`` without dynamics (warm-up / compilation run)."""
    return replace(cfg, epochs=1, record_dynamics=False)


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Unix
        return (float("nan"),) * 3


if __name__ == "__main__":
    raise SystemExit(main())
