"""The ``softlab`` command line.

    softlab data fetch [--dataset mnist fashion-mnist] [--human]   fetch and verify data
    softlab data info                                               what is cached, from where, checksums
    softlab run --params smoke|default|paper [--only 01 ...]        execute the notebooks into book/
    softlab train --params smoke|default|paper [--dask ADDR]        train (or load) the grid, no notebooks
    softlab book                                                    build the HTML book (Jupyter Book 1.x)
    softlab annotate ...                                            the annotation app (see `softlab annotate -h`)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from softlab.data import images
    from softlab.data.human import HUMAN_FILES, fetch_human_file

    status = 0
    for dataset in args.dataset:
        try:
            origins = images.fetch(dataset, sources=tuple(args.sources))
        except images.DataError as exc:
            print(f"FAILED {dataset}:\n{exc}", file=sys.stderr)
            status = 1
            continue
        for file, origin in origins.items():
            print(f"ok  {dataset:<14} {file:<26} from {origin}")
    if args.human:
        for relpath in HUMAN_FILES:
            try:
                path, origin = fetch_human_file(relpath, download=not args.offline)
            except Exception as exc:  # noqa: BLE001 - report every file, then fail
                print(f"FAILED {relpath}:\n{exc}", file=sys.stderr)
                status = 1
                continue
            print(f"ok  {'human':<14} {relpath:<52} from {origin}")
    return status


def _cmd_data_info(args: argparse.Namespace) -> int:
    import pandas as pd

    from softlab.data import images
    from softlab.data.human import human_cache_info
    from softlab.paths import cache_dir, data_dir

    print(f"data dir  (SOFTLAB_DATA_DIR):  {data_dir()}")
    print(f"cache dir (SOFTLAB_CACHE_DIR): {cache_dir()}")
    rows = [r for d in images.DATASETS for r in images.cache_info(d)] + human_cache_info()
    df = pd.DataFrame(rows)[["dataset", "file", "status", "origin"]]
    widths = {c: max(len(c), int(df[c].str.len().max())) for c in ("dataset", "file", "status")}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in df.columns))
    for row in df.itertuples(index=False):
        print("  ".join(str(v).ljust(widths.get(c, 0)) for c, v in zip(df.columns, row)))
    bad = df["status"].str.startswith("MISMATCH").any()
    return 1 if bad else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from softlab.distributed import dask_environment
    from softlab.pipeline import run_notebooks

    with dask_environment(args.dask):  # the notebook kernels read $SOFTLAB_DASK
        run_notebooks(args.params, only=args.only, overrides=dict(kv.split("=", 1) for kv in args.set or []))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train (or load) every run of a parameter set's grid, without executing notebooks."""
    import dataclasses
    import time

    from softlab.distributed import open_executor
    from softlab.experiment import configs_from_params, run_arms
    from softlab.params import coerce_override, load_params, validate
    from softlab.pipeline import notebook_paths
    from softlab.store import RunStore

    values = dict(load_params(args.params))
    for k, v in dict(kv.split("=", 1) for kv in args.set or []).items():
        values[k] = coerce_override(v)
    validate(values, notebook_paths())
    arm_configs, train_cfg, seeds = configs_from_params(values)
    if args.members_per_task is not None:
        train_cfg = dataclasses.replace(train_cfg, max_members_per_batch=args.members_per_task)
    store = RunStore(args.runs_dir)
    start = time.perf_counter()
    with open_executor(args.dask) as ex:
        grids = run_arms(arm_configs, train_cfg, seeds, progress=args.progress, store=store, executor=ex)
    n_runs = sum(len(g.results) for g in grids.values())
    print(f"[softlab train] runs={n_runs} trained={ex.submitted_members} loaded={n_runs - ex.submitted_members} "
          f"tasks={ex.submitted_tasks} executor={ex.address} seconds={time.perf_counter() - start:.1f} "
          f"store={store.root}", flush=True)
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from softlab.pipeline import build_book

    return build_book(strict=not args.no_strict)


DASK_HELP = ("train missing runs on Dask: 'local:N' (N single-threaded worker processes here) or a "
             "scheduler address 'tcp://host:8786'; default $SOFTLAB_DASK, else in this process")


def build_parser() -> argparse.ArgumentParser:
    from softlab.data.images import DATASETS, SOURCES

    parser = argparse.ArgumentParser(prog="softlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch, verify and list data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    fetch = dsub.add_parser("fetch", help="fetch and verify image files and human labels")
    fetch.add_argument("--dataset", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    fetch.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES),
                       help="image sources to try, in order")
    fetch.add_argument("--no-human", dest="human", action="store_false", help="skip the human-label files")
    fetch.add_argument("--offline", action="store_true", help="do not try to download human labels")
    fetch.set_defaults(func=_cmd_data_fetch)
    info = dsub.add_parser("info", help="what is cached, from where, and each checksum's status")
    info.set_defaults(func=_cmd_data_info)

    run = sub.add_parser("run", help="execute the notebooks with a named parameter set into book/")
    run.add_argument("--params", default="default", help="parameter set name (params/<name>.yml) or a path")
    run.add_argument("--only", nargs="+", help="notebook prefixes to run, e.g. 01 04")
    run.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override parameters (YAML values)")
    run.add_argument("--dask", metavar="ADDR", help=DASK_HELP)
    run.set_defaults(func=_cmd_run)

    train = sub.add_parser("train", help="train (or load from the run cache) a parameter set's whole grid, "
                                         "without executing notebooks")
    train.add_argument("--params", default="default", help="parameter set name (params/<name>.yml) or a path")
    train.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override parameters (YAML values)")
    train.add_argument("--dask", metavar="ADDR", help=DASK_HELP)
    train.add_argument("--runs-dir", metavar="DIR", help="run cache folder (default: $SOFTLAB_CACHE_DIR/runs)")
    train.add_argument("--members-per-task", type=int, metavar="N",
                       help="members per batched computation / Dask task (default: the trainer's, "
                            "32 CNN / 128 MLP on CPU, 256 on GPU); does not change the numbers' cache key")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    book = sub.add_parser("book", help="build the HTML book with Jupyter Book 1.x")
    book.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    book.set_defaults(func=_cmd_book)

    sub.add_parser("annotate", help="the annotation app (run `softlab annotate -h`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "annotate":
        from softlab.annotate import main_annotate

        return main_annotate(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
