"""The `stability` parameter set: its seed count follows from the power calculation stated in the
file, every seed re-draws the whole pipeline; its shape — only claim 2's two conditions, no
training dynamics — runs through every notebook (here at smoke size, so it takes about a minute): chapters
whose evidence needs other conditions or training dynamics say so instead of failing."""

from __future__ import annotations

import pandas as pd
import pytest

from softlab.params import load_params


def test_stability_seed_count_comes_from_the_stated_power_calculation():
    from softlab.experiment import RESAMPLE_SOURCES, configs_from_params
    from softlab.inference import seeds_for_power

    stability = load_params("stability")
    needed = seeds_for_power(0.85, 0.28)  # the between-seed correlation measured and stated in the file
    assert needed == 1099 and needed <= stability["seeds"] < needed + 100
    arms, _, _ = configs_from_params(stability)
    assert arms["fashion-mnist"].resample == RESAMPLE_SOURCES and arms["fashion-mnist"].folds_to_run() == [0, 1]


@pytest.mark.slow
def test_stability_shaped_set_runs_every_notebook(tmp_path, monkeypatch):
    from softlab.pipeline import run_notebooks

    stability = load_params("stability")
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOFTLAB_RESULTS_DIR", str(tmp_path / "results"))
    shape = {k: stability[k] for k in ("arms", "conditions", "run_folds", "record_dynamics")}
    assert shape["run_folds"] == 0 and shape["record_dynamics"] is False and len(shape["conditions"]) == 2
    overrides = {**shape, "seeds": 3}
    written = run_notebooks("smoke", overrides=overrides, out_dir=tmp_path / "book", progress=False)
    from softlab.params import NOTEBOOKS_DIR

    assert len(written) == len(sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")))  # every chapter ran
    verdicts = pd.read_parquet(tmp_path / "results" / "smoke" / "verdicts.parquet")
    claim2 = verdicts[verdicts["primary"] & (verdicts["claim"].astype(str) == "2")]
    assert list(claim2["arm"]) == ["fashion-mnist"] and int(claim2["seeds"].iloc[0]) == 3
    assert (claim2["verdict"] == "inconclusive").all()  # fewer than 10 seeds: never more than inconclusive
