"""Record the full ``robustness`` grid, with provenance, in ``recorded/robustness.csv`` — the file
chapter 8 and the findings page show where this machine has not computed the grid (a fresh clone's
``make book`` runs only the default set's slice of it).

    /usr/bin/time -v .venv/bin/softlab run --params robustness      # computes the grid (measure it)
    .venv/bin/python benchmarks/record_robustness.py --wall-seconds 6120 --training "cold cache, ..."

Reads ``results/robustness/robustness.parquet``, which ``softlab run --params robustness`` writes,
and records it with the wall time and the description of the run that computed it (this script
computes nothing; the grid takes hours on 2 cores). With ``--partial`` it records the cells found
in the results cache instead (a grid still being computed; the chapter names the missing cells);
``--partial --keep-recorded`` keeps every cell already recorded, with the provenance of the run that
computed it, and adds from the cache only the cells not yet recorded (a grid computed over several runs or machines:
the chapter names each run and its cells).

    .venv/bin/python benchmarks/record_robustness.py --partial --keep-recorded --wall-seconds 5800 \
        --command "robustness_table(params, cells=[cell]) for the CNN cells" --training "cold cache, ..."
Prints the recorded rows' verdicts per cell.
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

from softlab.chapter import load_recorded, record_result, resolve_book_parameters
from softlab.inference import load_claims
from softlab.io import load_cached_parquet
from softlab.paths import cache_dir
from softlab.robustness import COLUMNS, _cell_key, grid_cells, parse_grid, robustness_path


def cached_cells(params_name: str) -> tuple[pd.DataFrame | None, list[str]]:
    """The grid's cells found in the results cache (rows of COLUMNS, grid order) and the names of
    those not there; nothing is computed."""
    params = resolve_book_parameters(params_name)
    spec, claims = parse_grid(params.get("robustness")), load_claims()
    parts, missing = [], []
    for cell in grid_cells(spec, params):
        path = cache_dir() / "robustness" / f"{_cell_key(cell, params, spec, claims)}.parquet"
        table = load_cached_parquet(path, columns=COLUMNS)
        if table is None:
            missing.append(cell.name)
        else:
            parts.append(table)
    return (pd.concat(parts, ignore_index=True)[list(COLUMNS)] if parts else None), missing


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
    ap.add_argument("--partial", action="store_true", help="record the cells in the results cache (some may lack)")
    ap.add_argument(
        "--keep-recorded",
        action="store_true",
        help="with --partial: keep every cell already in recorded/<set>.csv, with its own provenance, and add "
        "from the results cache only the cells not yet recorded (a grid computed over several runs or machines)",
    )
    args = ap.parse_args(argv)
    path = robustness_path(args.params)
    if args.keep_recorded and not args.partial:
        ap.error("--keep-recorded needs --partial")
    kept = None
    if args.partial:
        found, missing = cached_cells(args.params)
        if args.keep_recorded:  # every cell already recorded keeps its row and provenance
            recorded = load_recorded(args.params)
            kept = recorded.drop(columns="source") if recorded is not None else None
            done = set(kept["cell"]) if kept is not None else set()
            if kept is not None:
                missing = [c for c in missing if c not in set(kept["cell"])]
                print(f"kept_recorded_cells={kept['cell'].nunique()}")
            if found is not None:
                found = found[~found["cell"].isin(done)]
                found = found if len(found) else None
        if found is None:
            print(f"no new cell of the {args.params!r} grid is in the results cache ({cache_dir()})", file=sys.stderr)
            return 2
        table = found
        print(f"missing_cells={len(missing)}: " + "; ".join(missing))
    elif not path.is_file():
        print(f"{path}: missing; run `softlab run --params {args.params}` first (or pass --partial)", file=sys.stderr)
        return 2
    else:
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
    params = resolve_book_parameters(args.params)
    order = [c.name for c in grid_cells(parse_grid(params.get("robustness")), params)]
    out = record_result(args.params, table, provenance, kept=kept, order=order)
    table = pd.read_csv(out)
    print(f"cells={table['cell'].nunique()} rows={len(table)} recorded={out}")
    summary = table.pivot_table(index="cell", columns="test", values="verdict", aggfunc="first")
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
