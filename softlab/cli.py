"""The ``softlab`` command line.

    softlab data fetch [--dataset mnist fashion-mnist] [--human] [--offline]   fetch and verify data
    softlab data info                                               what is cached, from where, checksums
    softlab run --params smoke|default|paper [--only 01 ...] [--set KEY=VALUE ...] [--offline] [--dask ADDR]
                                                                    validate, then execute the notebooks into book/
    softlab train --params smoke|default|paper [--set ...] [--dask ADDR]
                                                                    train (or load) the grid, no notebooks
    softlab book                                                    build the HTML book (Jupyter Book 1.x)
    softlab annotate ...                                            the annotation app (see `softlab annotate -h`)

Errors: a user error (bad option, parameter, file or data) is one line on stderr,
``softlab <cmd>: error: ...``, exit status 2, no traceback; a notebook that fails while
running is one line with exit status 1. ``SOFTLAB_DEBUG=1`` shows the traceback.
Offline: ``--offline`` or ``SOFTLAB_OFFLINE=1`` forbids all network access (local data only).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


class CliError(Exception):
    """A user error found by a command (printed as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``PROG: error: ...``, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def _go_offline(args: argparse.Namespace) -> None:
    """``--offline``: no network for this process and the notebooks' kernels it starts."""
    if getattr(args, "offline", False):
        os.environ["SOFTLAB_OFFLINE"] = "1"


def printable(text: object, limit: int = 300) -> str:
    """``text`` safe for a terminal table: control characters (newlines, escape codes, ...)
    shown as ``\\xNN`` escapes, cut to ``limit`` characters."""
    out = "".join(
        c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in str(text)
    )
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from softlab.data import images
    from softlab.data.cifar import DataUnavailable
    from softlab.data.human import HUMAN_FILES, fetch_human_file

    _go_offline(args)
    status = 0
    for dataset in args.dataset or [*images.DATASETS, *images.OPTIONAL_DATASETS]:
        try:
            origins = images.fetch(dataset, sources=tuple(args.sources))
        except DataUnavailable as exc:  # an optional set not asked for by name: one line, not a failure
            if args.dataset:
                print(f"FAILED {dataset}: {exc}\n" + "\n".join(exc.failures), file=sys.stderr)
                status = 1
            else:
                print(f"skip {dataset}: {exc}")
            continue
        except (images.DataError, OSError) as exc:  # one data set's trouble never aborts the others
            print(f"FAILED {dataset}:\n{one_line(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
            status = 1
            continue
        for file, origin in origins.items():
            print(f"ok  {dataset:<14} {file:<26} from {printable(origin)}")
    if args.human:
        for relpath in HUMAN_FILES:
            try:
                _, origin = fetch_human_file(relpath, download=not args.offline)
            except Exception as exc:
                print(f"FAILED {relpath}:\n{exc}", file=sys.stderr)
                status = 1
                continue
            print(f"ok  {'human':<14} {relpath:<52} from {printable(origin)}")
    return status


def _cmd_data_info(args: argparse.Namespace) -> int:
    import pandas as pd

    from softlab.data import images
    from softlab.data.human import human_cache_info
    from softlab.paths import cache_dir, data_dir

    print(f"data dir  (SOFTLAB_DATA_DIR):  {printable(data_dir())}")
    print(f"cache dir (SOFTLAB_CACHE_DIR): {printable(cache_dir())}")
    for name, path in (("SOFTLAB_DATA_DIR", data_dir()), ("SOFTLAB_CACHE_DIR", cache_dir())):
        if path.exists() and not path.is_dir():
            raise CliError(
                f"{name} {printable(path)} is a file, not a folder; point {name} at a folder (or remove the file)"
            )
    rows = [r for d in (*images.DATASETS, *images.OPTIONAL_DATASETS) for r in images.cache_info(d)] + human_cache_info()
    df = pd.DataFrame(rows)[["dataset", "file", "status", "origin"]].map(printable)
    widths = {c: max(len(c), int(df[c].str.len().max())) for c in ("dataset", "file", "status")}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in df.columns))
    for row in df.itertuples(index=False):
        print("  ".join(str(v).ljust(widths.get(c, 0)) for c, v in zip(df.columns, row)))
    bad = df["status"].str.startswith("MISMATCH").any()
    return 1 if bad else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from softlab.distributed import dask_environment
    from softlab.pipeline import resolve_parameters, run_notebooks

    _go_offline(args)
    overrides = _overrides(args)
    resolve_parameters(args.params, overrides, args.only)  # a bad parameter fails before a cluster starts
    with dask_environment(args.dask):  # the notebook kernels read $SOFTLAB_DASK
        run_notebooks(args.params, only=args.only, overrides=overrides)  # validates everything before papermill
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs (values still YAML text); a key given twice is an error."""
    from softlab.params import split_override

    overrides: dict[str, str] = {}
    for text in args.set or []:
        key, value = split_override(text)
        if key in overrides:
            raise CliError(f"--set {key}: given twice")
        overrides[key] = value
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    """Train (or load) every run of a parameter set's grid, without executing notebooks."""
    import dataclasses
    import time

    from softlab.distributed import open_executor
    from softlab.experiment import configs_from_params, run_arms
    from softlab.paths import check_writable
    from softlab.pipeline import resolve_parameters
    from softlab.store import RunStore

    _go_offline(args)
    _, per_notebook = resolve_parameters(args.params, _overrides(args))
    values: dict[str, Any] = {}
    for declared in per_notebook.values():
        values.update(declared)
    arm_configs, train_cfg, seeds = configs_from_params(values)
    if args.members_per_task is not None:
        train_cfg = dataclasses.replace(train_cfg, max_members_per_batch=args.members_per_task)
    store = RunStore(args.runs_dir)
    check_writable(store.root, "--runs-dir" if args.runs_dir else "SOFTLAB_CACHE_DIR")  # before anything trains
    start = time.perf_counter()
    with open_executor(args.dask) as ex:
        grids = run_arms(arm_configs, train_cfg, seeds, progress=args.progress, store=store, executor=ex)
    n_runs = sum(len(g.results) for g in grids.values())
    print(
        f"[softlab train] runs={n_runs} trained={ex.submitted_members} loaded={n_runs - ex.submitted_members} "
        f"tasks={ex.submitted_tasks} executor={ex.address} seconds={time.perf_counter() - start:.1f} "
        f"store={store.root}",
        flush=True,
    )
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from softlab.pipeline import build_book

    return build_book(strict=not args.no_strict)


DASK_HELP = (
    "train missing runs on Dask: 'local:N' (N single-threaded worker processes here) or a "
    "scheduler address 'tcp://host:8786'; default $SOFTLAB_DASK, else in this process"
)


def build_parser() -> argparse.ArgumentParser:
    from softlab.data.images import DATASETS, OPTIONAL_DATASETS, SOURCES

    parser = _Parser(prog="softlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch, verify and list data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    fetch = dsub.add_parser("fetch", help="fetch and verify image files and human labels")
    fetch.add_argument(
        "--dataset",
        nargs="+",
        choices=[*DATASETS, *OPTIONAL_DATASETS],
        help=f"default: all; unavailable optional sets ({', '.join(OPTIONAL_DATASETS)}) are skipped with one line",
    )
    fetch.add_argument(
        "--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES), help="image sources to try, in order"
    )
    fetch.add_argument("--no-human", dest="human", action="store_false", help="skip the human-label files")
    fetch.add_argument(
        "--offline", action="store_true", help="local sources only, no network (same as SOFTLAB_OFFLINE=1)"
    )
    fetch.set_defaults(func=_cmd_data_fetch)
    info = dsub.add_parser("info", help="what is cached, from where, and each checksum's status")
    info.set_defaults(func=_cmd_data_info)

    run = sub.add_parser("run", help="validate a parameter set, then execute the notebooks into book/")
    run.add_argument("--params", default="default", help="parameter set name (params/<name>.yml) or a path")
    run.add_argument("--only", nargs="+", help="notebook prefixes to run, e.g. 01 04")
    run.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override parameters (YAML values)")
    run.add_argument(
        "--offline", action="store_true", help="no network access in the notebooks (same as SOFTLAB_OFFLINE=1)"
    )
    run.add_argument("--dask", metavar="ADDR", help=DASK_HELP)
    run.set_defaults(func=_cmd_run)

    train = sub.add_parser(
        "train", help="train (or load from the run cache) a parameter set's whole grid, without executing notebooks"
    )
    train.add_argument("--params", default="default", help="parameter set name (params/<name>.yml) or a path")
    train.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override parameters (YAML values)")
    train.add_argument("--dask", metavar="ADDR", help=DASK_HELP)
    train.add_argument("--runs-dir", metavar="DIR", help="run cache folder (default: $SOFTLAB_CACHE_DIR/runs)")
    train.add_argument(
        "--members-per-task",
        type=int,
        metavar="N",
        help="members per batched computation / Dask task (default: the trainer's, "
        "32 CNN / 128 MLP on CPU, 256 on GPU); does not change the numbers' cache key",
    )
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    train.add_argument("--offline", action="store_true", help="local data only, no network (same as SOFTLAB_OFFLINE=1)")
    train.set_defaults(func=_cmd_train)

    book = sub.add_parser("book", help="build the HTML book with Jupyter Book 1.x")
    book.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    book.set_defaults(func=_cmd_book)

    sub.add_parser("annotate", help="the annotation app (run `softlab annotate -h`)", add_help=False)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """``softlab run``, ``softlab data info``, ...: the command words the user typed."""
    words = [str(getattr(args, "command", "") or "")]
    words += [str(v) for k, v in sorted(vars(args).items()) if k.endswith("_command") and k != "command" and v]
    return " ".join(["softlab", *[w for w in words if w]])


def _failure(exc: BaseException) -> int | None:
    """Exit status for an exception that is not a bug: 2 for user errors, 1 for a failed
    notebook; None for anything else (a bug: its traceback is kept)."""
    import yaml

    from softlab.data.human import HumanDataError
    from softlab.data.images import DataError
    from softlab.pipeline import PipelineError
    from softlab.store import RunSaveError

    if isinstance(exc, PipelineError):
        return 1
    if isinstance(exc, (CliError, ValueError, OSError, DataError, HumanDataError, yaml.YAMLError, RunSaveError)):
        return 2
    return None


def one_line(exc: BaseException) -> str:
    """An error message on one line (an OSError as ``FILE: reason``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _silence_stderr() -> None:
    """After "interrupted": the notebook kernel's ZMQ sockets, torn down while the interpreter
    exits, printed a 20-line ZMQError traceback; the one line already said what happened."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (see the module docstring for errors)."""
    from_console = argv is None  # the `softlab` command itself, not a call from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "annotate":
        from softlab.annotate import main_annotate

        return main_annotate(argv[1:])
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # named after the subcommand, not the top-level parser
        name = _command_name(args)
        print(f"{name}: error: unrecognized arguments: {' '.join(unknown)} (see `{name} -h`)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{_command_name(args)}: interrupted", file=sys.stderr, flush=True)
        if from_console:
            _silence_stderr()
        return 130
    except Exception as exc:
        status = _failure(exc)
        if status is None or os.environ.get("SOFTLAB_DEBUG", "") not in ("", "0"):
            raise
        print(f"{_command_name(args)}: error: {one_line(exc)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    raise SystemExit(main())
