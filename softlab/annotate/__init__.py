"""Collect new human labels in the browser: ``softlab annotate``.

A *study* is a seeded subset of a dataset split (``stratified``, ``random``, most ``uncertain``
under a teacher, or cartography-``ambiguous``), shown one image at a time to each annotator
in an order seeded by (study seed, annotator id). Answers go to SQLite; ``softlab annotate
export`` writes the long-format table (``item, annotator, label, weight, ...``) that
:func:`softlab.data.annotations.validate_annotations` / ``to_counts`` read.

Command line (wired into ``softlab`` as ``softlab annotate``)::

    softlab annotate --dataset mnist --size 50 --strategy stratified --seed 0 --study-dir DIR
    softlab annotate --images imgs.npy --labels labels.npy --size 20 --study-dir DIR --port 0
    softlab annotate --study-dir DIR                       # resume serving an existing study
    softlab annotate links --study-dir DIR --annotator alice bob   # each annotator's personal link
    softlab annotate export --study-dir DIR --out answers.csv [--force]   (or .parquet)
    softlab annotate report --study-dir DIR                # progress and attention checks

Annotators are identified by their personal link (annotator id + an HMAC key made with the
study's secret; see :mod:`.study`): the study owner prints the links with ``softlab annotate
links`` and gives each annotator theirs. ``--offline`` (or ``SOFTLAB_OFFLINE=1``) creates a
study from local data only. Every user error is one line ``softlab annotate <cmd>: error: ...``
on stderr with exit status 2.

Modules: :mod:`.study` (subset, order, study folder), :mod:`.db` (SQLite store),
:mod:`.app` (FastAPI app, uvicorn server), :mod:`.export` (long table, attention report).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from softlab.annotate.study import (
    LOG_LEVELS,
    STRATEGIES,
    Study,
    StudyError,
    StudySettings,
    annotator_key,
    annotator_link,
    annotator_order,
    check_annotator_id,
    create_study,
    load_npy,
    load_source,
    open_study,
    select_attention_items,
    select_items,
)

__all__ = [
    "STRATEGIES",
    "Study",
    "StudyError",
    "StudySettings",
    "annotation_table",
    "annotator_key",
    "annotator_link",
    "annotator_order",
    "attention_report",
    "check_annotator_id",
    "create_app",
    "create_study",
    "export_annotations",
    "main_annotate",
    "open_study",
    "select_attention_items",
    "select_items",
    "serve",
]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``PROG: error: ...``, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def __getattr__(name: str) -> Any:
    """Import the web app and the exporter only when used (keeps ``import softlab.annotate`` light)."""
    if name in ("create_app", "serve"):
        from softlab.annotate import app

        return getattr(app, name)
    if name in ("export_annotations", "annotation_table", "attention_report"):
        from softlab.annotate import export

        return getattr(export, name)
    raise AttributeError(f"module 'softlab.annotate' has no attribute {name!r}")


def _confidence_scale(text: str) -> tuple[int | None, int | None]:
    """``"1-5"`` → (1, 5); ``"none"`` → (None, None)."""
    if text.strip().lower() == "none":
        return None, None
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise StudyError(f"--confidence-scale: expected MIN-MAX (e.g. 1-5 or 50-100) or 'none', got {text!r}") from None
    return lo, hi


def _port(text: str) -> int:
    """``--port``: an integer 0..65535 (``--port 99999`` was an OverflowError traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 0..65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected an integer 0..65535 (0 = any free port), got {port}")
    return port


def _serve_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="softlab annotate",
        description="Create (first time) and serve an annotation study in the browser. "
        "Subcommands: 'links' (personal annotator links), 'export' (write the answers table), "
        "'report' (progress, attention checks).",
    )
    g = p.add_argument_group("study (only when creating; must match when the study exists)")
    g.add_argument(
        "--study-dir", required=True, type=Path, help="folder holding study.json, images and the answer database"
    )
    g.add_argument(
        "--dataset",
        help="mnist or fashion-mnist (softlab.data.load_images), synthetic-mnist (softlab.generator); "
        "with --images: a name for the user array (default 'user')",
    )
    g.add_argument("--split", default=None, help="dataset split (default test)")
    g.add_argument("--images", type=Path, help="user images: .npy uint8 array (N, 28, 28); item = row index")
    g.add_argument("--labels", type=Path, help="official labels for --images: .npy int array (N,), -1 = unknown")
    g.add_argument("--classes", help="comma-separated class names (default: the dataset's, or 0..9)")
    g.add_argument("--size", type=int, default=None, help="number of items to annotate (default 50)")
    g.add_argument("--strategy", choices=STRATEGIES, default=None, help="subset choice (default stratified)")
    g.add_argument("--seed", type=int, default=None, help="seed of the subset and of the annotator orders (default 0)")
    g.add_argument("--probs", type=Path, help="teacher probabilities .npy (N, n_classes) for --strategy uncertain")
    g.add_argument("--variability", type=Path, help="cartography variability .npy (N,) for --strategy ambiguous")
    g.add_argument(
        "--attention-checks",
        type=int,
        default=None,
        help="easy known-label items added for every annotator (default 0)",
    )
    g.add_argument("--confidence-scale", default=None, help="integer confidence scale MIN-MAX or 'none' (default 1-5)")
    g.add_argument("--no-second-choice", action="store_true", default=None, help="do not offer a second-choice class")
    g.add_argument(
        "--allow-reannotation",
        action="store_true",
        default=None,
        help="let an annotator answer an item more than once (all answers are kept, numbered by 'attempt')",
    )
    s = p.add_argument_group("server")
    s.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; any other needs the token)"
    )
    s.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 = any free port)")
    s.add_argument("--require-token", action="store_true", help="demand the study token even on 127.0.0.1")
    s.add_argument("--no-token", action="store_true", help="do not demand the token (refused on a non-loopback host)")
    s.add_argument("--create-only", action="store_true", help="create the study and exit without serving")
    s.add_argument("--log-level", default="warning", choices=LOG_LEVELS, help="uvicorn log level (default warning)")
    s.add_argument(
        "--offline", action="store_true", help="use local data only, never the network (same as SOFTLAB_OFFLINE=1)"
    )
    return p


def _check_matches(study: Study, args: argparse.Namespace) -> None:
    """An existing study must agree with every study option given on the command line."""
    st = study.settings
    as_stored = {  # option -> (value given, value the study holds)
        "--dataset": (args.dataset, study.dataset),
        "--split": (args.split, study.split),
        "--size": (args.size, study.size),
        "--strategy": (args.strategy, study.strategy),
        "--seed": (args.seed, study.seed),
        "--attention-checks": (args.attention_checks, st.attention_checks),
    }
    given: dict[str, tuple[Any, Any]] = {opt: pair for opt, pair in as_stored.items() if pair[0] is not None}
    if args.confidence_scale is not None:
        given["--confidence-scale"] = (_confidence_scale(args.confidence_scale), (st.confidence_min, st.confidence_max))
    if args.no_second_choice:
        given["--no-second-choice"] = (False, st.second_choice)
    if args.allow_reannotation:
        given["--allow-reannotation"] = (True, st.allow_reannotation)
    if args.images is not None:
        from softlab.io import sha256_file

        given["--images"] = (
            sha256_file(args.images) if args.images.is_file() else str(args.images),
            study.source.get("images_sha256"),
        )
    bad = [f"{k} {v!r} (study has {s!r})" for k, (v, s) in given.items() if v != s]
    if bad:
        raise StudyError(
            f"--study-dir {study.study_dir} already holds a different study: "
            + "; ".join(bad)
            + ". Use a new --study-dir, or omit the study options to resume it."
        )


def _create_or_open(args: argparse.Namespace) -> Study:
    if (args.study_dir / "study.json").exists():
        study = open_study(args.study_dir)
        _check_matches(study, args)
        return study
    if args.dataset is None and args.images is None:
        raise StudyError(f"--study-dir {args.study_dir} holds no study yet: give --dataset or --images to create one")
    split = args.split or "test"
    images, labels, classes, dataset, source = load_source(args.dataset, split, args.images, args.labels, args.classes)
    probs = load_npy(args.probs, "--probs") if args.probs is not None else None
    variability = load_npy(args.variability, "--variability") if args.variability is not None else None
    lo, hi = _confidence_scale(args.confidence_scale or "1-5")
    settings = StudySettings(
        confidence_min=lo,
        confidence_max=hi,
        second_choice=not args.no_second_choice,
        allow_reannotation=bool(args.allow_reannotation),
        attention_checks=args.attention_checks or 0,
    )
    if args.probs is not None:
        source["probs"] = str(args.probs.resolve())
    if args.variability is not None:
        source["variability"] = str(args.variability.resolve())
    study = create_study(
        args.study_dir,
        images=images,
        labels=labels,
        classes=classes,
        dataset=dataset,
        split=split,
        strategy=args.strategy or "stratified",
        size=50 if args.size is None else args.size,
        seed=0 if args.seed is None else args.seed,
        probs=probs,
        variability=variability,
        settings=settings,
        source=source,
    )
    print(
        f"softlab annotate: created study {study.study_id} in {study.study_dir}: {len(study.items)} items "
        f"({study.strategy}, seed {study.seed}) + {len(study.attention_items)} attention checks",
        file=sys.stderr,
    )
    return study


def _serve_main(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)
    if args.offline:
        os.environ["SOFTLAB_OFFLINE"] = "1"
    study = _create_or_open(args)
    if args.create_only:
        return 0
    if args.require_token and args.no_token:
        raise StudyError("--require-token and --no-token contradict each other")
    require: bool | None = True if args.require_token else (False if args.no_token else None)
    from softlab.annotate.app import serve

    serve(study.study_dir, host=args.host, port=args.port, require_token=require, log_level=args.log_level)
    return 0


def _links_main(argv: list[str]) -> int:
    p = _Parser(
        prog="softlab annotate links",
        description="Print each annotator's personal link (annotator id + key signed with the study secret, "
        "plus the access token). Give each annotator only their own link: whoever holds it "
        "answers as that annotator.",
    )
    p.add_argument("--study-dir", required=True, type=Path)
    p.add_argument(
        "--annotator", required=True, nargs="+", help="annotator ids (1-64 letters, digits, spaces, _ . @ + -)"
    )
    p.add_argument(
        "--base-url",
        default="http://127.0.0.1:8765/",
        help="the address annotators open (default http://127.0.0.1:8765/)",
    )
    args = p.parse_args(argv)
    if not args.base_url.startswith(("http://", "https://")):
        raise StudyError(f"--base-url: expected an http:// or https:// address, got {args.base_url!r}")
    study = open_study(args.study_dir)
    ids = [check_annotator_id(a) for a in args.annotator]
    for a in ids:
        print(f"{a}\t{annotator_link(study, a, args.base_url)}")
    return 0


def _export_main(argv: list[str]) -> int:
    p = _Parser(
        prog="softlab annotate export",
        description="Write a study's answers as a long-format table (item, annotator, label, weight, ...).",
    )
    p.add_argument("--study-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="FILE.csv or FILE.parquet")
    p.add_argument("--include-attention", action="store_true", help="keep attention-check answers in the main table")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (and its .attention file)")
    args = p.parse_args(argv)
    from softlab.annotate.export import annotation_table, export_annotations

    out, report = export_annotations(
        args.study_dir, args.out, include_attention=args.include_attention, overwrite=args.force
    )
    n = len(annotation_table(args.study_dir, include_attention=args.include_attention))
    print(
        f"softlab annotate: wrote {n} answers to {out}"
        + (f"; attention checks per annotator in {report}" if report else "")
    )
    return 0


def _report_main(argv: list[str]) -> int:
    p = _Parser(prog="softlab annotate report", description="Progress and attention checks per annotator.")
    p.add_argument("--study-dir", required=True, type=Path)
    args = p.parse_args(argv)
    from softlab.annotate.export import attention_report

    study = open_study(args.study_dir)
    report = attention_report(args.study_dir)
    print(
        f"study {study.study_id}: {study.dataset}/{study.split}, {len(study.items)} items "
        f"({study.strategy}, seed {study.seed}), {len(study.attention_items)} attention checks"
    )
    if report.empty:
        print("no answers yet")
    else:
        print(report.to_string(index=False))
    return 0


def _one_line(exc: BaseException) -> str:
    """An exception as one line: an OSError as ``FILE: reason``, others their message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def main_annotate(argv: list[str] | None = None) -> int:
    """``softlab annotate [serve] ...`` | ``links`` | ``export`` | ``report``.

    Returns the exit status: 0 on success, 2 on a bad parameter or file (one line on stderr:
    ``softlab annotate <cmd>: error: ...``, no traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {"serve": _serve_main, "links": _links_main, "export": _export_main, "report": _report_main}
    command = argv[0] if argv and argv[0] in handlers else "serve"
    rest = argv[1:] if argv and argv[0] == command else argv
    try:
        return handlers[command](rest)
    except (StudyError, ValueError, OSError) as exc:  # user errors: bad option, file, folder or data
        prog = "softlab annotate" if command == "serve" else f"softlab annotate {command}"
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
