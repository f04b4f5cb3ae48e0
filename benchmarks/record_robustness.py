"""Record the full ``robustness`` grid, with provenance, in ``recorded/robustness.csv`` — the file
chapter 8 and the findings page show where this machine has not computed the grid (a fresh clone's
``make book`` runs only the default set's slice of it).

    /usr/bin/time -v .venv/bin/softlab run --params robustness      # computes the grid (measure it)
    .venv/bin/python benchmarks/record_robustness.py --wall-seconds 6120 --training "cold cache, ..."

Reads ``results/robustness/robustness.parquet``, which ``softlab run --params robustness`` writes,
and records it with the wall time and the description of the run that computed it (this script
computes nothing; the grid takes hours on 2 cores). Prints the recorded rows' verdicts per cell.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

import pandas as pd
from record_stability import _commit

from softlab.chapter import record_result
from softlab.robustness import COLUMNS, robustness_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="robustness")
    ap.add_argument(
        "--wall-seconds", type=float, required=True, help="measured wall time of the run that computed the grid"
    )
    ap.add_argument(
        "--command",
        default="softlab run --params robustness",
        help="the command that computed it (recorded as is)",
    )
    ap.add_argument("--training", required=True, help="how that run trained: cache state, machine load (as is)")
    ap.add_argument("--commit", default="", help="the commit it ran at (default: this checkout's HEAD)")
    args = ap.parse_args(argv)
    path = robustness_path(args.params)
    if not path.is_file():
        print(f"{path}: missing; run `softlab run --params {args.params}` first", file=sys.stderr)
        return 2
    table = pd.read_parquet(path)
    if list(table.columns) != list(COLUMNS):
        print(f"{path}: expected the columns {list(COLUMNS)}, got {list(table.columns)}", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    provenance = {
        "recorded_on": dt.date.today().isoformat(),
        "commit": args.commit or _commit(root),
        "command": args.command,
        "wall_seconds": round(args.wall_seconds, 1),
        "training": args.training,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    out = record_result(args.params, table, provenance)
    print(f"cells={table['cell'].nunique()} rows={len(table)} recorded={out}")
    summary = table.pivot_table(index="cell", columns="test", values="verdict", aggfunc="first")
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
