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


def test_the_stability_result_read_in_chunks_of_seeds_equals_the_whole_pool(tmp_path, monkeypatch):
    """The 1,100-seed set is read a chunk of seeds at a time (all at once outgrew 24 GB); the
    per-seed values, and so the summary, must equal those of one pool of every seed."""
    from softlab.chapter import resolve_book_parameters
    from softlab.experiment import configs_from_params, prepare_arm, run_arm, stability_summary
    from softlab.report import arm_predictions, chunked_predictions, run_temperatures, stability_from_runs

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    stability = load_params("stability")
    shape = {k: stability[k] for k in ("arms", "conditions", "run_folds", "record_dynamics", "folds")}
    params = resolve_book_parameters("smoke", {**shape, "seeds": 5})
    arm_cfgs, train_cfg, seeds = configs_from_params(params)
    cfg = arm_cfgs["fashion-mnist"]
    grid = run_arm(prepare_arm(cfg, seeds=seeds), train_cfg, seeds)
    whole = stability_summary(arm_predictions(grid, run_temperatures(grid)))
    chunked = stability_from_runs(params, chunk=2)  # chunks of 2, 2 and 1 seeds, runs loaded from the cache
    pd.testing.assert_frame_equal(chunked, whole)
    assert int(chunked["seeds"].iloc[0]) == 5
    from dataclasses import replace

    with pytest.raises(ValueError, match="record_dynamics"):
        next(chunked_predictions(cfg, replace(train_cfg, record_dynamics=True), seeds))
