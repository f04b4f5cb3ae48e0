"""The `stability` parameter set's shape — one fold, only claim 2's two conditions, no training
dynamics — runs through every notebook (here at smoke size, so it takes about a minute): chapters
whose evidence needs other conditions or training dynamics say so instead of failing."""

from __future__ import annotations

import pandas as pd
import pytest

from softlab.params import load_params

pytestmark = pytest.mark.slow


def test_stability_shaped_set_runs_every_notebook(tmp_path, monkeypatch):
    from softlab.pipeline import run_notebooks

    stability = load_params("stability")
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOFTLAB_RESULTS_DIR", str(tmp_path / "results"))
    shape = {k: stability[k] for k in ("arms", "conditions", "run_folds", "record_dynamics")}
    assert shape["run_folds"] == 1 and shape["record_dynamics"] is False and len(shape["conditions"]) == 2
    overrides = {**shape, "seeds": 3}
    written = run_notebooks("smoke", overrides=overrides, out_dir=tmp_path / "book", progress=False)
    assert len(written) == 8
    verdicts = pd.read_parquet(tmp_path / "results" / "smoke" / "verdicts.parquet")
    claim2 = verdicts[verdicts["primary"] & (verdicts["claim"].astype(str) == "2")]
    assert list(claim2["arm"]) == ["fashion-mnist"] and int(claim2["seeds"].iloc[0]) == 3
    assert (claim2["verdict"] == "inconclusive").all()  # fewer than 10 seeds: never more than inconclusive
