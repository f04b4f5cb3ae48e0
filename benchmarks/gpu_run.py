"""One prepared GPU run (issue 26): provenance, trainer benchmarks, the ``paper`` set, verdicts.

Called by ``benchmarks/gpu_run.sh`` (which only fixes the environment and the wall-clock cap).
Everything lands in one output folder:

    provenance.json      GPU name, driver, torch / CUDA / cuDNN versions, CPU, git commit, command
    bench_<model>.txt    full output of benchmarks/bench_trainer.py for the MLP and the CNN
    paper_train.txt      what the paper step printed (runs, seconds, slice)
    verdicts.parquet     the paper configuration's verdict table (softlab.inference)
    verdicts.md          the same table, readable
    timing.log           one line per step: step, seconds, status
    figures.txt          every ``key=value`` figure (also printed on stdout, last)

Steps (each bounded by what is left of ``--budget-s``):

1. provenance; with ``--device cuda`` and no CUDA the run stops at once, printing
   ``blocked=...`` (exit status 3) — nothing is estimated;
2. ``bench_trainer.py`` for the MLP and the CNN at 1, 8, 64, 256 members, naive (float32 eager)
   and batched in float32 and bf16 autocast, then the CNN with ``torch.compile`` at 256 members;
   every option is checked against float32 eager on a fixed seed (``*_max_abs_prob_diff_vs_fp32=``);
3. the ``paper`` set (reference CNN, 30 epochs, 10 seeds × 5 folds) on the arms whose images are
   local (``--paper-arms``, default fashion-mnist, mnist, synthetic-mnist: CIFAR-10 needs the
   internet), trained in a child process that is stopped when the budget runs out (finished
   groups stay in the run cache, so a rerun continues); then its verdict table.

``--tiny`` shrinks every step to seconds (tiny benchmark sizes, no compile, a tiny slice of the
``smoke`` set instead of ``paper``): the CPU test of this script (``tests/test_gpu_run.py``).

Targets (issue 26) are printed as ``target_*=met|missed|not-measured`` beside the figures
``cnn_batched_over_naive_64=``, ``cnn_samples_per_s_256=`` and ``paper_train_s=``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_trainer.py"
FIGURE = re.compile(r"^([A-Za-z0-9_.\-]+)=(\S+)$")  # key=value, the value without spaces

TARGETS = (
    # (figure, comparison, threshold, what issue 26 asks)
    ("cnn_batched_over_naive_64", ">=", 20.0, "batched >= 20x naive at 64 members (CNN)"),
    ("cnn_samples_per_s_256", ">=", 2_000_000.0, ">= 2,000,000 CNN sample-steps/s at 256 members"),
    ("paper_train_s", "<", 600.0, "the paper set's training under 10 minutes"),
)

TINY_PAPER = {
    "params_name": "gpu-run-tiny",
    "arms": ["fashion-mnist"],
    "pool_size": 120,
    "seeds": 1,
    "folds": 2,
    "epochs": 1,
    "hidden": 16,
    "batch_size": 32,
    "n_teachers": 1,
    "teacher_epochs": 1,
    "teacher_train_items": 300,
    "disjoint_size": 100,
    "n_boot": 20,
}


class Run:
    """The output folder, the figures and the timing log of one run."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.figures: dict[str, str] = {}
        out.mkdir(parents=True, exist_ok=True)
        self.timing = out / "timing.log"
        self.timing.write_text("step\tseconds\tstatus\n")

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def log(self, step: str, seconds: float, status: str) -> None:
        with self.timing.open("a") as f:
            f.write(f"{step}\t{seconds:.1f}\t{status}\n")
        print(f"[gpu_run] {step}: {status} in {seconds:.1f}s ({self.left():.0f}s of the budget left)", flush=True)

    def figure(self, key: str, value: Any) -> None:
        self.figures[key] = str(value)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` under the output folder via a temporary file and a rename."""
        dest = self.out / name
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text(text)
        tmp.replace(dest)
        return dest


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: str) -> dict[str, Any]:
    """What ran where: GPU (name, driver, memory), torch / CUDA / cuDNN, CPU, commit, command."""
    import torch

    info: dict[str, Any] = {
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
    }
    try:
        from bench_trainer import cpu_name  # type: ignore[import-not-found]

        info["cpu"] = cpu_name()
    except ImportError:  # pragma: no cover - run from elsewhere
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["nvidia_smi"] = smi.stdout.strip()
            info["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def bench_steps(device: str, tiny: bool) -> list[tuple[str, list[str]]]:
    """(name, bench_trainer.py arguments) of every benchmark step."""
    if tiny:
        tiny_args = ["--device", device, "--n-train", "64", "--epochs", "1", "--naive-max", "1", "--members", "1", "2"]
        tiny_args += ["--target-members", "2", "--precision", "float32", "bfloat16", "--check-items", "64"]
        return [("bench_mlp_cnn", ["--models", "mlp", "cnn", *tiny_args])]
    common = ["--device", device, "--n-train", "4096", "--epochs", "2", "--naive-max", "8", "--target-members", "8"]
    sizes = ["--members", "1", "8", "64", "256"]
    return [
        ("bench_mlp", ["--models", "mlp", *common, *sizes, "--precision", "float32", "bfloat16"]),
        ("bench_cnn", ["--models", "cnn", *common, *sizes, "--precision", "float32", "bfloat16"]),
        (
            "bench_cnn_compile",
            [
                "--models",
                "cnn",
                *common,
                "--members",
                "256",
                "--precision",
                "float32",
                "bfloat16",
                "--compile",
                "default",
            ],
        ),
    ]


def run_child(run: Run, name: str, cmd: list[str], reserve_s: float, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` with what is left of the budget (minus ``reserve_s``); its output goes to
    ``<name>.txt``; its ``key=value`` lines become figures. Returns the status."""
    limit = run.left() - reserve_s
    if limit < 5:
        run.log(name, 0.0, "skipped (budget spent)")
        return "skipped"
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, env={**os.environ, **(env or {})}
        )
        text, status = proc.stdout + proc.stderr, ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        text, status = out + err, f"stopped at the budget ({limit:.0f}s)"
    run.write_text(f"{name}.txt", text)
    for line in text.splitlines():
        m = FIGURE.match(line.strip())
        if m:
            run.figure(m.group(1), m.group(2))
    run.log(name, time.monotonic() - t0, status)
    if not status.startswith("ok"):
        print(text[-2000:], file=sys.stderr)
    return status


def paper_child(args: argparse.Namespace) -> int:
    """The paper step in its own process: train the slice, then compute and write its verdicts."""
    import dataclasses

    from softlab.experiment import configs_from_params, run_arms
    from softlab.pipeline import resolve_parameters
    from softlab.report import book_results
    from softlab.store import RunStore

    overrides: dict[str, Any] = json.loads(args.paper_overrides)
    _, per_notebook = resolve_parameters(args.paper_set, overrides)
    values: dict[str, Any] = {}
    for declared in per_notebook.values():
        values.update(declared)
    arm_configs, train_cfg, seeds = configs_from_params(values)
    train_cfg = dataclasses.replace(train_cfg, device=args.device)
    store = RunStore()
    print(f"paper_set={args.paper_set}", flush=True)
    print(f"paper_slice={json.dumps(overrides, sort_keys=True, separators=(',', ':'))}", flush=True)
    t0 = time.perf_counter()
    grids = run_arms(arm_configs, train_cfg, seeds, progress=False, store=store)
    train_s = time.perf_counter() - t0
    print(f"paper_runs={sum(len(g.results) for g in grids.values())}", flush=True)
    print(f"paper_train_s={train_s:.1f}", flush=True)
    t0 = time.perf_counter()
    results = book_results(values, progress=False, store=store)
    print(f"paper_verdicts_s={time.perf_counter() - t0:.1f}", flush=True)
    out = Path(args.out)
    verdicts = results.verdicts
    tmp = out / ".verdicts.parquet.tmp"
    verdicts.to_parquet(tmp, index=False)
    tmp.replace(out / "verdicts.parquet")
    (out / ".verdicts.md.tmp").write_text(verdict_markdown(verdicts))
    (out / ".verdicts.md.tmp").replace(out / "verdicts.md")
    print(f"paper_verdict_rows={len(verdicts)}", flush=True)
    for verdict, n in verdicts["verdict"].value_counts().sort_index().items():
        print(f"paper_verdicts_{verdict}={n}", flush=True)
    return 0


def verdict_markdown(table: Any) -> str:
    """The verdict table as a Markdown table (every column, numbers to 4 significant digits)."""
    cols = list(table.columns)

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "/")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def judge_targets(run: Run, tiny: bool) -> None:
    """``target_<figure>=met|missed|not-measured`` (``tiny-run`` in --tiny mode: no verdict on speed)."""
    for key, op, threshold, _what in TARGETS:
        if tiny:
            run.figure(f"target_{key}", "tiny-run")
            continue
        raw = run.figures.get(key)
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is None:
            run.figure(f"target_{key}", "not-measured")
        else:
            ok = value >= threshold if op == ">=" else value < threshold
            run.figure(f"target_{key}", "met" if ok else "missed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (the GPU run) or cpu (the test of this script)")
    ap.add_argument("--tiny", action="store_true", help="every step in seconds (the CPU test)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "results" / "gpu_run"), help="output folder")
    ap.add_argument("--budget-s", type=float, default=530.0, help="wall-clock budget of the whole run")
    ap.add_argument("--paper-set", default="paper", help="parameter set of the paper step")
    ap.add_argument(
        "--paper-arms",
        nargs="+",
        default=["fashion-mnist", "mnist", "synthetic-mnist"],
        help="arms of the paper step (cifar10 needs its images)",
    )
    ap.add_argument("--paper-seeds", type=int, default=0, help="seeds of the paper step (0 = the set's)")
    ap.add_argument("--no-bench", action="store_true", help="skip the benchmarks")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper step")
    ap.add_argument("--paper-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--paper-overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.paper_child:
        return paper_child(args)

    import torch

    run = Run(Path(args.out).resolve(), args.budget_s)
    t0 = time.monotonic()
    info = provenance(args.device)
    run.write_text("provenance.json", json.dumps(info, indent=2) + "\n")
    for key in ("gpu_name", "driver", "torch", "torch_cuda", "cudnn"):
        run.figure(key, str(info.get(key)).replace(" ", "_"))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        run.log("provenance", time.monotonic() - t0, "blocked: no CUDA device")
        print("blocked=torch.cuda.is_available() is False: no GPU here; nothing was measured", flush=True)
        return 3
    run.log("provenance", time.monotonic() - t0, "ok")

    if not args.no_bench:
        for name, bench_args in bench_steps(args.device, args.tiny):
            # keep at least 40% of what is left for the paper step
            run_child(run, name, [sys.executable, str(BENCH), *bench_args], reserve_s=0.4 * run.left())

    if not args.no_paper:
        overrides: dict[str, Any] = dict(TINY_PAPER) if args.tiny else {"arms": list(args.paper_arms)}
        if args.paper_seeds:
            overrides["seeds"] = args.paper_seeds
        paper_set = "smoke" if args.tiny and args.paper_set == "paper" else args.paper_set
        cmd = [sys.executable, str(Path(__file__).resolve()), "--paper-child", "--device", args.device]
        cmd += ["--out", str(run.out), "--paper-set", paper_set, "--paper-overrides", json.dumps(overrides)]
        run_child(run, "paper_train", cmd, reserve_s=5.0)

    judge_targets(run, args.tiny)
    run.figure("total_s", f"{time.monotonic() - run.start:.1f}")
    text = "".join(f"{k}={v}\n" for k, v in run.figures.items())
    run.write_text("figures.txt", text)
    print(text, end="", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    raise SystemExit(main())
