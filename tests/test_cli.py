"""The console script: data info and fetch."""

from __future__ import annotations

import subprocess
import sys

from softlab.cli import main


def test_data_info_lists_cached_files_origin_and_checksum_status(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "train-images-idx3-ubyte" in out and "fmh_counts.csv" in out
    lines = [line.split() for line in out.splitlines() if "t10k-labels-idx1-ubyte" in line]
    assert [cols[:3] for cols in lines] == [["mnist", "t10k-labels-idx1-ubyte", "ok"],
                                            ["fashion-mnist", "t10k-labels-idx1-ubyte", "ok"]]
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
