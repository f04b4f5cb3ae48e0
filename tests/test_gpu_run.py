"""The prepared GPU run (benchmarks/gpu_run.sh) in its CPU mode: every step runs, every file and
figure it promises is there, and without CUDA a GPU run stops at once saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_run  # noqa: E402


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "SOFTLAB_CACHE_DIR": str(tmp_path / "cache"),
        "SOFTLAB_RESULTS_DIR": str(tmp_path / "results"),
        "SOFTLAB_TORCH_THREADS": "1",
    }


def _figures(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and " " not in line.split("=", 1)[0])


def test_tiny_cpu_run_writes_every_promised_file_and_figure(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = _figures(proc.stdout)
    assert figures == _figures((out / "figures.txt").read_text())
    # provenance
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__ and prov["git_commit"]
    assert figures["torch"] == torch.__version__
    # benchmarks: naive and batched for both models, bf16 checked against fp32
    for kind in ("mlp", "cnn"):
        for key in ("samples_per_s_1", "samples_per_s_2", "batched_over_naive_2", "samples_per_s_2_bf16"):
            assert float(figures[f"{kind}_{key}"]) > 0, (kind, key)
        assert 0 < float(figures[f"{kind}_bf16_max_abs_prob_diff_vs_fp32"]) < 0.1
        assert float(figures[f"{kind}_naive_samples_per_s"]) > 0
    assert (out / "bench_mlp_cnn.txt").read_text().count("cnn_samples_per_s=") == 1
    # the paper step (a tiny slice of the smoke set): runs, time, verdict table
    assert json.loads(figures["paper_slice"])["params_name"] == "gpu-run-tiny"
    from softlab.experiment import DEFAULT_CONDITIONS

    assert int(figures["paper_runs"]) == len(DEFAULT_CONDITIONS) * 2  # conditions x 2 folds x 1 seed
    assert float(figures["paper_train_s"]) > 0
    verdicts = pd.read_parquet(out / "verdicts.parquet")
    assert len(verdicts) == int(figures["paper_verdict_rows"]) > 0 and "verdict" in verdicts.columns
    assert (out / "verdicts.md").read_text().count("\n") == len(verdicts) + 2
    # timing log: one line per step, all ok; targets are not judged on a tiny run
    steps = [line.split("\t") for line in (out / "timing.log").read_text().splitlines()[1:]]
    assert [s[0] for s in steps] == ["provenance", "bench_mlp_cnn", "paper_train"] and all(s[2] == "ok" for s in steps)
    assert {figures[f"target_{k}"] for k, *_ in gpu_run.TARGETS} == {"tiny-run"}
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_a_gpu_run_without_cuda_stops_at_once_and_says_so(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out)],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "blocked=torch.cuda.is_available() is False" in proc.stdout
    assert "blocked: no CUDA device" in (out / "timing.log").read_text()
    assert json.loads((out / "provenance.json").read_text())["cuda_available"] is False
    assert not (out / "figures.txt").exists() and not list(out.glob("bench_*"))  # nothing measured, nothing guessed


@pytest.mark.parametrize(
    "figures, expected",
    [
        (
            {"cnn_batched_over_naive_64": "25", "cnn_samples_per_s_256": "1999999", "paper_train_s": "599.9"},
            ["met", "missed", "met"],
        ),
        ({"cnn_batched_over_naive_64": "19.99", "paper_train_s": "600"}, ["missed", "not-measured", "missed"]),
    ],
)
def test_targets_are_judged_against_issue_26s_thresholds(tmp_path, figures, expected):
    run = gpu_run.Run(tmp_path, budget_s=10)
    run.figures.update(figures)
    gpu_run.judge_targets(run, tiny=False)
    assert [run.figures[f"target_{k}"] for k, *_ in gpu_run.TARGETS] == expected
