"""Run (or load) the ``stability`` parameter set and record its claim-2 result, with provenance,
in ``recorded/stability.csv`` — the file chapter 4 shows where this machine's cache does not hold
the set (a fresh clone's ``make book`` never trains its 1,100 seeds).

    .venv/bin/python benchmarks/record_stability.py                 # train what is missing, analyse, record
    .venv/bin/python benchmarks/record_stability.py --set seeds=30  # a quick look (records nothing unless --record)

Reads the runs in chunks of seeds (``softlab.report.stability_from_runs``): the whole book analysis
of 1,100 seeds at once (``softlab run --params stability``) needs more than the 24 GB of the 2-core
machine. Prints the wall time of training and analysis, and the recorded row (``key=value`` lines).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

from softlab.chapter import record_result, resolve_book_parameters
from softlab.report import stability_from_runs


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "softlab", "params"], capture_output=True, text=True
        )
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="stability")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides (YAML values)")
    ap.add_argument("--record", action="store_true", help="record even with --set overrides")
    ap.add_argument("--chunk", type=int, default=100, help="seeds read at once (bounded memory)")
    ap.add_argument(
        "--training",
        default="",
        help="how the cached runs were trained, when an earlier invocation trained them (recorded as is)",
    )
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    params = resolve_book_parameters(args.params, overrides)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    table = stability_from_runs(params, chunk=args.chunk, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    print(f"wall_seconds={seconds:.1f}")
    print(f"seeds={int(params['seeds'])} folds={int(params['folds'])} cpu_count={os.cpu_count()}")
    if len(table):
        for row in table.to_dict("records"):
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if overrides and not args.record:
        print("recorded=no (overrides given; pass --record to record anyway)")
        return 0
    root = Path(__file__).resolve().parent.parent
    provenance = {
        "recorded_on": dt.date.today().isoformat(),
        "commit": _commit(root),
        "command": "python benchmarks/record_stability.py" + "".join(f" --set {s}" for s in args.set),
        "wall_seconds": round(seconds, 1),
        "training": args.training or "trained (or loaded) by this invocation",
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end"
        ),
    }
    path = record_result(args.params, table, provenance)
    print(f"recorded={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
