"""Regression tests for the defects of issue 27 (hostile probes), one per defect, named after it,
and the fast profile of the fault-injection script (``benchmarks/faults.py --fast``)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softlab.io import DamagedCacheWarning, atomic_save_npz, intact_npz, load_cached_npz


def _npz(path: Path) -> dict[str, np.ndarray]:
    arrays = {"logits": np.arange(40, dtype=np.float32).reshape(4, 10), "idx": np.arange(7)}
    atomic_save_npz(path, **arrays)
    return arrays


# ------------------------------------------------ damaged teacher / generator / synthetic caches


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "directory", "missing-array"])
def test_damaged_cached_npz_is_quarantined_and_recomputed_not_a_traceback(tmp_path, damage):
    path = tmp_path / "cache" / "logits_test.npz"
    _npz(path)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        i = data.index(b"logits.npy") + 200  # inside the compressed array data
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    required = ("logits", "weights") if damage == "missing-array" else ("logits",)
    with pytest.warns(DamagedCacheWarning, match=r"logits_test.npz is damaged .*moved to .*\.quarantine"):
        assert load_cached_npz(path, required=required) is None
    assert not path.exists()  # moved aside, so the next call recomputes and rewrites it
    assert [p.name.split(".npz")[0] for p in (path.parent / ".quarantine").iterdir()] == ["logits_test"]
    _npz(path)  # recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cached_npz(path, required=("logits",)) is not None


def test_missing_cached_npz_is_none_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cached_npz(tmp_path / "none.npz") is None
        assert not intact_npz(tmp_path / "none.npz")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_a_flipped_byte_anywhere_in_a_cached_npz_never_gives_a_wrong_number(tmp_path_factory, position, mask):
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    original = _npz(path)
    data = path.read_bytes()
    i = int(position * len(data))
    path.write_bytes(data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedCacheWarning)
        got = load_cached_npz(path, required=tuple(original))
    if got is not None:  # a flip in zip metadata (a timestamp, ...) may leave the arrays intact
        for k, v in original.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype


def test_generator_and_synthetic_and_teacher_caches_load_through_the_quarantining_loader():
    import inspect

    import softlab.generator as generator
    import softlab.teachers as teachers

    assert "load_cached_npz(weights)" in inspect.getsource(generator._load_generator)
    assert "load_cached_npz(path, required=_ARRAYS)" in inspect.getsource(generator.generate_synthetic_mnist)
    assert "intact_npz(" in inspect.getsource(teachers._load_teacher)
    assert "intact_npz(" in inspect.getsource(teachers.teacher_logits)


# ------------------------------------------------ one line, bounded time (CLI, Dask, annotate)


def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err
    return lines[0]


def test_unwritable_run_cache_is_one_line_before_training_not_a_RunSaveError_traceback(tmp_path, monkeypatch, capsys):
    from softlab.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(blocker / "cache"))  # a folder inside a file: never writable
    assert main(["train", "--params", "smoke", "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err, "softlab train")
    assert "SOFTLAB_CACHE_DIR" in line and "cannot write there" in line
    out = tmp_path / "book"
    assert main(["run", "--params", "smoke", "--only", "01"]) == 2
    assert "cannot write there" in _one_error_line(capsys.readouterr().err, "softlab run")
    assert not out.exists()


def test_run_save_error_is_a_user_error_with_status_2():
    from softlab.cli import _failure
    from softlab.store import RunSaveError

    assert _failure(RunSaveError("2 of 2 trained runs could not be saved")) == 2


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dask_at_a_wrong_port_stops_in_bounded_time_with_one_line(monkeypatch):
    import time

    from softlab.distributed import DaskUnavailable, dask_environment

    monkeypatch.setenv("SOFTLAB_DASK_TIMEOUT", "1")
    start = time.monotonic()
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with (
        pytest.raises(DaskUnavailable, match=r"--dask tcp://127.0.0.1:\d+: no Dask scheduler answered within 1 s"),
        dask_environment(address),
    ):
        pytest.fail("the notebooks must not start")
    assert time.monotonic() - start < 20


def test_dask_at_an_http_responder_is_one_line_not_a_3_EiB_allocation(monkeypatch):
    import http.server
    import threading

    from softlab.distributed import DaskExecutor, DaskUnavailable

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def handle(self) -> None:  # answer whatever arrives with an HTTP reply
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SOFTLAB_DASK_TIMEOUT", "2")
    try:
        with pytest.raises(DaskUnavailable, match="no Dask scheduler answered"):
            DaskExecutor(address=f"tcp://127.0.0.1:{server.server_address[1]}").client  # noqa: B018
    finally:
        server.shutdown()


def test_dask_timeout_env_var_is_named_when_bad(monkeypatch):
    from softlab.distributed import dask_timeout

    for bad in ("abc", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("SOFTLAB_DASK_TIMEOUT", bad)
        with pytest.raises(ValueError, match=r"\$SOFTLAB_DASK_TIMEOUT: expected a number of seconds > 0"):
            dask_timeout()


def test_scheduler_with_no_workers_stops_after_a_bounded_wait_and_says_so(monkeypatch, capsys):
    from softlab.distributed import DaskExecutor, DaskUnavailable

    class NoWorkers:  # a connected client whose scheduler never gets a worker
        class scheduler:
            address = "tcp://10.0.0.1:8786"

        def scheduler_info(self, n_workers: int = -1) -> dict:
            return {"workers": {}}

        def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
            assert timeout is not None, "the wait must be bounded"
            raise TimeoutError

    monkeypatch.setenv("SOFTLAB_DASK_TIMEOUT", "1")
    ex = DaskExecutor(client=NoWorkers())
    x = np.zeros((4, 1, 28, 28), dtype=np.float32)
    with pytest.raises(DaskUnavailable, match=r"no Dask worker joined the scheduler within 10 s"):
        next(iter(ex.train(x, [_member()], _tiny_cfg())))
    assert "waiting up to 10 s for a Dask worker" in capsys.readouterr().err  # not silent without progress


def _member():
    from softlab.train import Member

    return Member(seed=0, targets=np.full((4, 10), 0.1, dtype=np.float32), train_idx=np.arange(4))


def _tiny_cfg():
    from softlab.models import ModelConfig
    from softlab.train import TrainConfig

    return TrainConfig(ModelConfig(kind="mlp", hidden=4), epochs=1, batch_size=4)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--port", "99999"], "argument --port: expected an integer 0..65535"),
        (["--port", "-1"], "argument --port: expected an integer 0..65535"),
        (["--log-level", "bogus"], "argument --log-level: invalid choice: 'bogus'"),
    ],
)
def test_annotate_bad_port_and_log_level_are_one_line_before_serving(tmp_path, capsys, argv, expected):
    from softlab.annotate import main_annotate

    with pytest.raises(SystemExit) as exit_info:  # argparse's one-line error, status 2
        main_annotate(["--study-dir", str(tmp_path / "s"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_annotate_serve_refuses_bad_port_and_log_level_from_python(tmp_path):
    from softlab.annotate.app import serve
    from softlab.annotate.study import StudyError

    with pytest.raises(StudyError, match="log_level: expected one of critical"):
        serve(tmp_path, log_level="bogus")
    with pytest.raises(StudyError, match=r"port: expected an integer 0\.\.65535"):
        serve(tmp_path, port=99999)


def test_ctrl_c_prints_one_line_and_no_ZMQError(tmp_path):
    """SIGINT to the real `softlab` command while it runs: 'interrupted' and nothing after it."""
    import signal
    import subprocess
    import sys
    import time

    from softlab.paths import PROJECT_ROOT

    script = (
        "import sys, time, softlab.cli as c\n"
        "def slow(args):\n"
        "    import atexit; atexit.register(lambda: print('Traceback (most recent call last): ZMQError', "
        "file=sys.stderr))\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "c._cmd_book = slow\n"
        "sys.argv = ['softlab', 'book']\n"
        "raise SystemExit(c.main())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["softlab book: interrupted"]


# ------------------------------------------------ votes tables: cells read as numbers only when they are


@pytest.mark.parametrize("cell", ["0_3", "1_000", "\uff13", "1e3", "3.0", " 3.5", "٣"])
def test_vote_cells_like_0_3_full_width_digits_and_1e3_are_refused_not_read_as_numbers(tmp_path, cell):
    from softlab.data.annotations import AnnotationError, read_annotations

    path = tmp_path / "votes.csv"
    path.write_text(f"item,annotator,label\n0,a,1\n1,a,{cell}\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"votes.csv: row 1, column 'label': .* is not an integer"):
        read_annotations(path)
    path.write_text(f"item,annotator,label\n{cell},a,1\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"row 0, column 'item': .* is not an integer"):
        read_annotations(path)


@pytest.mark.parametrize("cell", ["1_000", "\uff11", "0x10"])
def test_weight_cells_with_underscores_or_full_width_digits_are_refused(tmp_path, cell):
    from softlab.data.annotations import AnnotationError, read_annotations

    path = tmp_path / "votes.csv"
    path.write_text(f"item,annotator,label,weight\n0,a,1,{cell}\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"row 0, column 'weight': .* is not a number"):
        read_annotations(path)


def test_annotator_a_and_a_space_are_refused_not_counted_as_two(tmp_path):
    from softlab.data.annotations import AnnotationError, read_annotations, validate_annotations

    path = tmp_path / "votes.csv"
    path.write_text("item,annotator,label\n0,a,1\n0,a ,1\n", encoding="utf-8")
    table = read_annotations(path)  # read exactly as written ...
    assert table["annotator"].tolist() == ["a", "a "]
    with pytest.raises(AnnotationError, match=r"votes.csv: row 1, column 'annotator': 'a ' has leading or trailing"):
        validate_annotations(table, 10)  # ... but refused as votes


def test_weights_1e308_overflowing_to_inf_are_refused_naming_the_file(tmp_path):
    from softlab.data.annotations import AnnotationError
    from softlab.data.votes import load_votes

    path = tmp_path / "votes.csv"
    path.write_text("item,annotator,label,weight\n0,a,1,1e308\n0,b,1,1e308\n1,a,2,1\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"votes.csv: the weights of item 0 sum beyond the largest float"):
        load_votes(path, "mnist", "test")


# ------------------------------------------------ annotation studies: exports carry their images, damaged database


def _user_study(tmp_path: Path, dataset: str = "user"):
    from softlab.annotate.study import StudySettings, create_study

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    return create_study(
        tmp_path / "study",
        images=images,
        labels=np.arange(30, dtype=np.int64) % 10,
        classes=tuple(str(c) for c in range(10)),
        dataset=dataset,
        split="test",
        strategy="stratified",
        size=8,
        seed=0,
        settings=StudySettings(),
    )


def test_fashion_mnist_export_paired_with_mnist_images_is_refused(tmp_path):
    from softlab.annotate.db import AnnotationDB, Answer
    from softlab.annotate.export import export_annotations
    from softlab.data.annotations import AnnotationError
    from softlab.data.votes import load_votes

    study = _user_study(tmp_path, dataset="fashion-mnist")
    with AnnotationDB(study.db_path, study.study_id, False) as db:
        for item in study.items[:3]:
            db.add(Answer("alice", int(item), 1, None, None, 100.0, False))
    out, _ = export_annotations(study.study_dir, tmp_path / "answers.csv")
    assert "dataset,split" in out.read_text().splitlines()[0]  # the export names its images
    with pytest.raises(AnnotationError, match=r"answers.csv: row 0, column 'dataset': .*'fashion-mnist'.*mnist/test"):
        load_votes(out, "mnist", "test")
    assert len(load_votes(out, "fashion-mnist", "test").items) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_annotations_sqlite_is_one_line_not_a_DatabaseError_traceback(tmp_path, capsys, damage):
    from softlab.annotate import main_annotate
    from softlab.annotate.db import AnnotationDB

    study = _user_study(tmp_path)
    AnnotationDB(study.db_path, study.study_id, False).close()
    db = study.db_path
    data = db.read_bytes()
    db.write_bytes(b"this is not a database" * 200 if damage == "garbage" else data[:100])
    assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "annotations.sqlite: the answer database cannot be read" in err
    assert not (tmp_path / "a.csv").exists()


# ------------------------------------------------ data files (on a copy of the data folder, never the real one)


def _linked_data_dir(tmp_path: Path) -> Path:
    """A data folder whose files are symlinks to the verified ones (nothing real is touched)."""
    from softlab.paths import data_dir

    real = data_dir()
    copy = tmp_path / "data"
    for src in real.rglob("*"):
        if src.is_file():
            dest = copy / src.relative_to(real)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(src)
    return copy


def test_a_data_file_replaced_by_a_folder_does_not_abort_data_info_or_the_whole_fetch(tmp_path, monkeypatch, capsys):
    from softlab.cli import main

    data = _linked_data_dir(tmp_path)
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(data))
    target = data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    target.unlink()
    target.mkdir()
    assert main(["data", "info"]) == 1  # a MISMATCH row, not an IsADirectoryError
    out = capsys.readouterr().out
    assert "MISMATCH (a folder, not a file" in out
    assert "fashion-mnist" in out  # the rows after it are still listed
    status = main(["data", "fetch", "--dataset", "mnist", "fashion-mnist", "--sources", "cache", "--no-human"])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    assert "FAILED mnist" in captured.err and "ok  fashion-mnist" in captured.out  # the other set still fetched
    assert not target.exists() and list((target.parent / ".quarantine").iterdir())  # moved aside, not deleted


# ------------------------------------------------ parameter sets: strict YAML, names, ranges


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seeds: 2\nseeds: 3\n", r"duplicate"),
        ("a: &x [1]\nseeds: *x\n", r"alias|anchor"),
    ],
)
def test_params_duplicate_yaml_keys_and_aliases_are_refused_not_last_wins(tmp_path, text, expected):
    from softlab.params import ParameterError, load_params

    path = tmp_path / "mine.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError, match=rf"parameter set {re.escape(str(path))}, line \d+: .*({expected})"):
        load_params(path)


def test_params_non_utf8_byte_is_one_line_naming_the_file(tmp_path):
    from softlab.params import ParameterError, load_params

    path = tmp_path / "mine.yml"
    path.write_bytes(b"seeds: 2\nparams_name: caf\xe9\n")
    with pytest.raises(ParameterError, match=rf"{re.escape(str(path))}.*not UTF-8"):
        load_params(path)


def test_set_override_duplicate_keys_are_refused():
    from softlab.params import ParameterError, coerce_override

    with pytest.raises(ParameterError, match="duplicate"):
        coerce_override("{a: {path: x.csv, path: y.csv}}", "votes")


# ------------------------------------------------ a votes arm with one vote per item: empty hard stratum


def test_votes_arm_with_one_vote_per_item_empty_hard_stratum_gives_inconclusive_rows_not_a_shape_error():
    from softlab import inference as inf

    conditions = (
        "human/human",
        "original/hard+ts",
        "human/hard+ts",
        "human/smooth+ts",
        "human/synthetic+ts",
        "human/synthetic",
        "human/hard",
    )
    rng = np.random.default_rng(0)
    seeds, items, classes = 4, 60, 10
    votes = rng.integers(0, classes, items)
    ref = np.eye(classes)[votes]  # one vote per item: every item is "easy", no hard items
    strata = {
        "all": np.ones(items, bool),
        "easy": np.ones(items, bool),
        "medium": np.zeros(items, bool),
        "hard": np.zeros(items, bool),
        "mode-shifted": np.zeros(items, bool),
    }
    probs, arrays = {}, {}
    for c in conditions:
        p = rng.dirichlet(np.ones(classes), size=(seeds, items))
        probs[c] = p.astype(np.float32)
        arrays[c] = {
            "heldout_confidence": rng.random((seeds, items)),
            "heldout_variability": rng.random((seeds, items)),
        }
    arm = inf.ArmPredictions("my-votes", "human", np.arange(seeds), votes, ref, strata, probs, arrays)
    table = inf.verdict_table({"my-votes": arm})  # raised "probs ... shape (4, 0, 10)" before
    empty = table[table["stratum"].isin(["hard", "medium", "mode-shifted"])]
    assert len(empty), "the tests on empty strata stay in their family"
    assert (empty["n_items"] == 0).all() and (empty["verdict"] == "inconclusive").all()
    assert empty["estimate"].isna().all()


# ------------------------------------------------ a damaged book cache folder is healed


def _book_folder(root: Path, name: str) -> Path:
    import json

    import pandas as pd

    folder = root / name
    folder.mkdir(parents=True)
    pd.DataFrame({"x": np.arange(50.0)}).to_parquet(folder / "metrics.parquet")
    atomic_save_npz(folder / "predictions__mnist.npz", probs=np.random.default_rng(0).random((30, 10)))
    (folder / "meta.json").write_text(json.dumps({"params_name": "smoke", "arms": ["mnist"]}))
    return folder


@pytest.mark.parametrize("damage", ["meta-empty", "meta-missing", "parquet-truncated", "npz-flipped", "npz-missing"])
def test_damaged_book_cache_folder_is_quarantined_and_recomputed_not_failed_on_every_run(tmp_path, damage, capsys):
    from softlab.store import heal_result_folders

    intact = _book_folder(tmp_path, "aaaa")
    bad = _book_folder(tmp_path, "bbbb")
    if damage == "meta-empty":
        (bad / "meta.json").write_text("")
    elif damage == "meta-missing":
        (bad / "meta.json").unlink()
    elif damage == "parquet-truncated":
        data = (bad / "metrics.parquet").read_bytes()
        (bad / "metrics.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "npz-flipped":
        path = bad / "predictions__mnist.npz"
        data = path.read_bytes()
        i = len(data) // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1 :])
    else:
        (bad / "predictions__mnist.npz").unlink()
    moved = heal_result_folders(tmp_path)
    assert [p.name.split(".")[0] for p in moved] == ["bbbb"] and not bad.exists() and intact.exists()
    assert "cached results" in capsys.readouterr().out
    assert heal_result_folders(tmp_path) == []  # the intact one is never touched


@pytest.mark.parametrize("damage", ["empty", "truncated", "folder"])
def test_damaged_robustness_cell_cache_is_quarantined_and_recomputed_not_a_parquet_traceback(
    tmp_path, monkeypatch, damage
):
    """Found reading the caches for issue 25: a cached robustness cell was read with a bare
    ``pd.read_parquet``, so a damaged one stopped every later `softlab run` with an ArrowInvalid."""
    import pandas as pd

    import softlab.robustness as R
    from softlab.params import load_params

    params = load_params("smoke")
    cells = R.grid_cells(R.parse_grid(params["robustness"]), params)[:1]
    rows = pd.DataFrame({c: [f"{c}-value"] for c in R.COLUMNS})
    computed: list[str] = []
    monkeypatch.setattr(R, "run_cell", lambda cell, *a, **k: computed.append(cell.name) or rows)
    first = R.robustness_table(params, cells=cells, cache=tmp_path)
    (path,) = tmp_path.glob("*.parquet")
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    else:
        path.unlink()
        path.mkdir()
    with pytest.warns(DamagedCacheWarning, match=r"\.parquet is damaged .*moved to .*\.quarantine"):
        again = R.robustness_table(params, cells=cells, cache=tmp_path)
    pd.testing.assert_frame_equal(again, first)
    assert len(computed) == 2 and path.is_file() and len(list((tmp_path / ".quarantine").iterdir())) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(R.robustness_table(params, cells=cells, cache=tmp_path), first)
    assert len(computed) == 2  # the rewritten entry is loaded


# ------------------------------------------------ the fault-injection script, fast profile (issue 25)


def test_fault_injection_script_fast_profile_survives_everything():
    """``benchmarks/faults.py --fast``: kill -9 of a run-cache writer, two writers on one cache,
    damaged cache entries and data files, an unreachable scheduler, the annotation server killed
    mid-load under concurrent writers, a 50 MB body: every fault survived, nothing lost."""
    import subprocess
    import sys

    from softlab.paths import PROJECT_ROOT

    proc = subprocess.run(
        [
            sys.executable,
            str(
                PROJECT_ROOT / "benchmarks" / "faults.py",
            ),
            "--fast",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    line = proc.stdout.strip().splitlines()[-1]
    figures = dict(kv.split("=") for kv in line.split())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert figures["tracebacks"] == "0" and figures["answers_lost"] == "0" and figures["answers_duplicated"] == "0"
    assert figures["faults_survived"] == figures["faults_injected"] and int(figures["faults_injected"]) >= 20
    assert int(figures["refused_cleanly"]) + int(figures["round_trips_exact"]) == int(figures["inputs_tried"])


# ------------------------------------------------ a whole `softlab train` killed mid-run (issue 25; the long
# profile of benchmarks/faults.py interrupts whole `softlab run --params smoke` runs)

TINY_GRID = ("--set", "arms=[fashion-mnist]", "seeds=1", "folds=2", "epochs=1", "pool_size=200")


def _softlab_train(runs: Path, cache: Path, *extra: str):
    import os
    import subprocess
    import sys

    from softlab.paths import PROJECT_ROOT

    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "SOFTLAB_CACHE_DIR": str(cache),
        "SOFTLAB_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "softlab.cli", "train", "--params", "smoke", "--runs-dir", str(runs), "--no-progress"]
    return subprocess.Popen(
        [*cmd, *TINY_GRID, *extra], env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stored_runs(root: Path) -> dict[str, tuple]:
    """Every stored run's description and numbers (timing and batch size aside: a re-run trains
    what is missing in batches of its own)."""
    from softlab.store import RunStore

    store = RunStore(root)
    runs = {}
    for key in store:
        r = store.load_key(key)
        arrays = [r.train_idx, r.train_loss, r.dynamics, *(r.eval_probs[k] for k in sorted(r.eval_probs))]
        runs[key] = (
            r.name,
            r.seed,
            r.meta,
            r.config,
            r.diverged,
            sorted(r.eval_probs),
            [None if a is None else a.tobytes() for a in arrays],
        )
    return runs


@pytest.mark.slow  # three `softlab train` processes: 74 s on 2 shared, busy cores
def test_softlab_train_killed_mid_run_then_rerun_stores_exactly_the_uninterrupted_runs(tmp_path):
    """kill -9 of a real `softlab train` as soon as its first run is stored: every run folder it
    left is complete, the re-run trains only the missing runs, meets nothing damaged, and the
    store then holds the uninterrupted run's runs, number for number."""
    import shutil
    import signal
    import time

    from softlab.store import COMPLETE_MARKER, RunStore

    cache = tmp_path / "cache"  # the teachers are shared; each run store is its own
    proc = _softlab_train(tmp_path / "reference", cache)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    reference = _stored_runs(tmp_path / "reference")
    assert len(reference) >= 8

    root = tmp_path / "interrupted"
    proc = _softlab_train(root, cache, "--members-per-task", "1")  # a run stored at a time, so it dies mid-grid
    deadline = time.monotonic() + 300
    while not any(root.glob(f"*/{COMPLETE_MARKER}")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert 1 <= len(folders) < len(reference), "killed before or after the grid, not in the middle of it"
    inspect = shutil.copytree(root, tmp_path / "inspected")  # opening a store tidies it: look at a copy
    for folder in folders:  # nothing partial where a reader looks: each folder whole and the reference's
        assert (folder / COMPLETE_MARKER).is_file() and RunStore(inspect).verify(folder.name) is None
    before = _stored_runs(inspect)
    assert len(before) == len(folders) and all(before[k] == reference[k] for k in before)

    proc = _softlab_train(root, cache)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "damaged" not in (out + err).lower() and "Traceback" not in err
    summary = dict(re.findall(r"(\w+)=(\S+)", out.strip().splitlines()[-1]))
    assert (summary["loaded"], summary["trained"]) == (str(len(before)), str(len(reference) - len(before)))
    store = RunStore(root)
    assert store.tmp_dirs() == [] and store.quarantined() == []  # the killed writer's leftovers are gone
    assert _stored_runs(root) == reference


def test_two_runs_at_once_into_one_book_folder_each_write_a_temporary_notebook_of_their_own(tmp_path, monkeypatch):
    """Found by faults.py's long profile (two `softlab run` at once): both runs executed into the
    same ``book/.NN.running.ipynb``; the first to finish renamed it into place (perhaps half
    written by the other) and the second then failed on a missing file."""
    import threading
    import time

    import nbformat
    import papermill

    from softlab.params import load_params
    from softlab.pipeline import _execute

    src = tmp_path / "notebooks" / "01_x.ipynb"
    src.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), src)
    both_started = threading.Barrier(2, timeout=30)

    def execute_notebook(input_path, output_path, parameters, **kw):  # papermill writes as it goes
        nb = nbformat.read(input_path, as_version=4)
        nb.metadata["run"] = threading.current_thread().name
        nbformat.write(nb, output_path)
        both_started.wait()  # both runs are executing now
        time.sleep(0.2)
        nbformat.write(nb, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    values = dict(load_params("smoke"))
    failures: list[BaseException] = []

    def one_run() -> None:
        try:
            _execute([src], {src: values}, tmp_path / "book", src.parent, False, object)
        except BaseException as exc:
            failures.append(exc)

    (tmp_path / "book").mkdir()
    runs = [threading.Thread(target=one_run, name=f"run{k}") for k in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert failures == []
    assert nbformat.read(tmp_path / "book" / "01_x.ipynb", as_version=4).metadata["run"] in ("run0", "run1")
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == ["01_x.ipynb"]  # no temporary file left


def test_switching_the_data_folder_in_a_process_verifies_the_new_folders_files(tmp_path, monkeypatch):
    """Found by faults.py's long profile: the loaded-images memo ignored SOFTLAB_DATA_DIR."""
    from softlab.data.images import DataError, load_images

    load_images("mnist", "test")  # verified and remembered from the real folder
    data = _linked_data_dir(tmp_path)
    target = data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = target.read_bytes()
    target.unlink()  # the link only: the real file is never touched
    target.write_bytes(raw[:-10])
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
            load_images("mnist", "test", sources=("cache",))
