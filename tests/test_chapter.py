"""softlab.chapter: a notebook's one setup call, and the computations and display names the
chapters share (each checked against an independent reference)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from softlab import chapter as C
from softlab.params import ParameterError, load_params


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["smoke", "default", "stability"]),
    seeds=st.integers(1, 50),
    epochs=st.integers(1, 9),
    lr=st.floats(1e-5, 0.1),
    change=st.booleans(),
)
def test_what_softlab_run_injects_resolves_back_to_the_whole_set(name, seeds, epochs, lr, change):
    values = {**load_params("default"), **load_params(name)}
    if change:
        values.update(seeds=seeds, epochs=epochs, lr=lr)
    injected = C.injected_parameters(values)
    assert set(injected) == {"params_name", "overrides"}
    assert all(values[k] != {**load_params("default"), **load_params(name)}[k] for k in injected["overrides"])
    assert C.resolve_book_parameters(injected["params_name"], injected["overrides"]) == values


def test_a_set_given_as_a_file_travels_whole_and_unknown_names_are_refused():
    values = {**load_params("default"), **load_params("smoke"), "params_name": "my-set"}
    injected = C.injected_parameters(values)
    assert injected["params_name"] == "my-set" and injected["overrides"] == values
    assert C.resolve_book_parameters(**injected) == values
    with pytest.raises(ParameterError, match="no file"):
        C.resolve_book_parameters("my-set")
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['sedes'\]"):
        C.resolve_book_parameters("smoke", {"sedes": 3})


@pytest.mark.parametrize(
    ("condition", "reference", "shown"),
    [
        ("human/human", "generator", "generator/generator"),
        ("human/synthetic+ts", "generator", "generator/synthetic+ts"),
        ("original/human-shuffled", "generator", "original/generator-shuffled"),
        ("original/hard", "generator", "original/hard"),
        ("human/smooth-mass", "generator", "generator/smooth-mass"),
        ("human/human", "human", "human/human"),
    ],
)
def test_conditions_of_a_synthetic_arm_are_named_after_its_reference(condition, reference, shown):
    assert C.condition_label(condition, reference) == shown


def test_display_conditions_renames_per_row_and_keeps_other_columns():
    df = pd.DataFrame({"dataset": ["fashion-mnist", "synthetic-mnist"], "condition": ["human/human"] * 2, "v": [1, 2]})
    out = C.display_conditions(df)
    assert list(out["condition"]) == ["human/human", "generator/generator"] and list(out["v"]) == [1, 2]
    assert list(df["condition"]) == ["human/human"] * 2  # the internal ids are not touched


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=30))
def test_seed_interval_is_the_t_interval(values):
    got = C.seed_interval(values)
    v = np.asarray(values)
    if v.std(ddof=1) == 0:
        assert got["ci_low"] == pytest.approx(got["estimate"]) == pytest.approx(v.mean())
        return
    low, high = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert got["estimate"] == pytest.approx(v.mean())
    assert got["ci_low"] == pytest.approx(low) and got["ci_high"] == pytest.approx(high)


def test_seed_intervals_has_one_row_per_group():
    df = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "value": [1.0, 2.0, 3.0, 5.0, 5.0, 8.0]})
    out = C.seed_intervals(df, ["arm"]).set_index("arm")
    assert out.loc["a", "estimate"] == 2.0 and out.loc["b", "estimate"] == 6.0
    assert C.seed_interval([4.0])["ci_low"] != C.seed_interval([4.0])["ci_low"]  # one seed: no interval (NaN)


def test_soft_reliability_measures_agreement_with_the_soft_reference():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=(3, 40))  # 3 seeds, 40 items, 4 classes
    reference = rng.dirichlet(np.ones(4), size=40)
    hard = np.zeros(40, dtype=bool)
    hard[::2] = True
    preds = SimpleNamespace(probs={"a": probs}, reference=reference, strata={"hard": hard})
    bins = C.soft_reliability(preds, ["a", "missing"], stratum="hard", n_bins=5)
    assert set(bins["condition"]) == {"a"} and bins["count"].sum() == 3 * 20
    # independent reference: pandas cut of every (seed, item) pair of the stratum
    conf = probs[:, hard].max(-1).ravel()
    agree = np.array([reference[hard][i, probs[s, hard][i].argmax()] for s in range(3) for i in range(20)])
    cut = pd.cut(conf, np.linspace(0, 1, 6), include_lowest=True)
    expected = pd.Series(agree).groupby(cut, observed=False).mean().to_numpy()
    got = bins["accuracy"].to_numpy()
    assert np.allclose(np.nan_to_num(got, nan=-1), np.nan_to_num(expected, nan=-1))


def test_a_skipped_arms_notice_names_settings_not_machine_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTLAB_DATA_DIR", str(tmp_path / "data"))
    reason = f"cifar10 images not available: put it in {tmp_path}/data/cifar10 or extract it in /srv/x/y/ then run it"
    text = C.skip_notice("cifar10", reason)
    assert str(tmp_path) not in text and "/srv/x" not in text
    assert "$SOFTLAB_DATA_DIR/cifar10" in text and text.startswith("**The CIFAR-10H arm was skipped here:**")


def verdict_row(**kw) -> dict:
    row = {
        "claim": 1, "arm": "synthetic-mnist", "primary": True, "metric": "debiased_ce_soft", "kind": "paired",
        "condition": "human/human", "comparator": "human/hard+ts", "estimate": 0.0023, "ci_low": 0.001,
        "ci_high": 0.004, "relative": 0.8, "relative_ci_low": 0.3, "relative_ci_high": 1.2, "margin": 0.1,
        "margin_scale": "relative", "mean_condition": 0.0052, "mean_comparator": 0.0029, "p_adjusted": 0.01,
        "verdict": "refuted",
    }  # fmt: skip
    return {**row, **kw}


def test_key_results_show_both_means_and_the_difference_in_natural_units():
    table = C.key_results(pd.DataFrame([verdict_row(), verdict_row(primary=False)]))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["what is tested"] == "Calibration on hard items · synthetic MNIST"
    assert row["condition vs comparator (means)"] == "generator/generator 0.0052 vs generator/hard+ts 0.0029"
    assert row["difference [95% CI]"] == "+0.0023 [+0.001, +0.004] (+80% [+30%, +120%])"
    assert row["verdict"] == "refuted"


def test_forest_rows_are_in_percent_for_relative_margins_and_in_units_otherwise():
    rows = C.forest_rows(
        pd.DataFrame([verdict_row(), verdict_row(claim=3, margin_scale="absolute", margin=0.05, estimate=-0.03)]),
        url={1: "05_calibration.html#claim-1"},
    )
    assert list(rows["estimate"]) == pytest.approx([80.0, -0.03])
    assert list(rows["margin"]) == pytest.approx([10.0, 0.05])
    assert rows.loc[0, "url"] == "05_calibration.html#claim-1" and rows.loc[1, "url"] == ""
    assert "0.0052 vs generator/hard+ts 0.0029" in rows.loc[0, "tooltip"] and "refuted" in rows.loc[0, "tooltip"]
    assert rows.loc[0, "label"] == "synthetic MNIST: generator/generator vs generator/hard+ts"


def _accuracy_predictions(correct_per_seed, arm="fashion-mnist", n_items=20):
    """ArmPredictions whose seed s is right on the first ``correct_per_seed[s]`` items under
    ``human/human`` and, in reverse seed order, under ``human/synthetic``."""
    from softlab.inference import ArmPredictions

    official = np.arange(n_items) % 3
    probs = np.zeros((len(correct_per_seed), n_items, 3), dtype=np.float32)
    for s, k in enumerate(correct_per_seed):
        probs[s, np.arange(n_items), np.where(np.arange(n_items) < k, official, (official + 1) % 3)] = 1.0
    mask = np.ones(n_items, dtype=bool)
    return ArmPredictions(
        arm=arm, reference_name="human", seeds=np.arange(len(correct_per_seed)), official=official,
        reference=np.eye(3)[official] * 0.8 + 0.2 / 3, strata={"all": mask, "hard": mask},
        probs={"human/human": probs, "human/synthetic": probs[::-1].copy()},
    )  # fmt: skip


def test_the_stability_result_comes_from_the_cache_only(monkeypatch, tmp_path):
    import softlab.experiment as E
    import softlab.report as R

    monkeypatch.setenv("SOFTLAB_RECORDED_DIR", str(tmp_path / "none"))  # no recorded result either

    def never(*args, **kwargs):
        raise AssertionError("the stability set must not be trained or prepared by a chapter")

    for name in ("run_arm", "run_arms", "prepare_arm", "prepare_arms"):
        monkeypatch.setattr(E, name, never)
    monkeypatch.setattr(R, "compute_book", never)
    book = C.Book(C.resolve_book_parameters("smoke"))
    asked = []
    monkeypatch.setattr(R, "cached_book_results", lambda params: asked.append(params["seeds"]))
    assert book.stability() is None and asked == [load_params("stability")["seeds"]]
    correct = [10, 11, 10, 12, 9, 11, 10, 10]
    cached = SimpleNamespace(predictions={"fashion-mnist": _accuracy_predictions(correct)})
    monkeypatch.setattr(R, "cached_book_results", lambda params: cached)
    row = book.stability().iloc[0]
    x = np.array(correct) / 20
    assert row["variance_ratio"] == pytest.approx(x.var(ddof=1) / x[::-1].var(ddof=1))
    assert row["seeds"] == 8 and row["condition"] == "human/human" and row["comparator"] == "human/synthetic"
    assert row["source"] == "computed here"
    assert book.stability_hours() == pytest.approx(load_params("stability")["seeds"] * 1684 / 1100 / 3600)


def test_cached_book_results_is_none_for_a_set_never_computed(monkeypatch, tmp_path):
    import softlab.report as R

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(R, "compute_book", lambda *a, **k: pytest.fail("must not compute"))
    assert R.cached_book_results(C.resolve_book_parameters("stability")) is None


def test_for_display_names_arms_metrics_and_each_arms_conditions():
    df = pd.DataFrame(
        {
            "arm": ["fashion-mnist", "synthetic-mnist"],
            "condition": ["human/human", "human/human"],
            "comparator": ["human/synthetic", "human/synthetic+ts"],
            "metric": ["accuracy", "debiased_ce_soft"],
            "v": [1.0, 2.0],
        }
    )
    out = C.for_display(df)
    assert list(out["arm"]) == ["Fashion-MNIST-H", "synthetic MNIST"]
    assert list(out["condition"]) == ["human/human", "generator/generator"]
    assert list(out["comparator"]) == ["human/synthetic", "generator/synthetic+ts"]
    assert list(out["metric"]) == ["accuracy", C.metric_name("debiased_ce_soft")] and list(out["v"]) == [1.0, 2.0]
    assert list(df["arm"]) == ["fashion-mnist", "synthetic-mnist"]  # the ids in the data stay


def test_the_variance_decomposition_is_computed_once_then_read_from_the_cache(monkeypatch, tmp_path):
    """`softlab run` computes the nested designs' table before papermill starts; chapter 4 then
    reads it from the cache instead of loading the nested runs again."""
    import softlab.experiment as E
    import softlab.report as R

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    calls = []

    def nested(cfg, *args, **kwargs):
        calls.append(cfg.arm_name)
        return {"init": "grid"}

    monkeypatch.setattr(E, "run_nested_designs", nested)
    monkeypatch.setattr(R, "run_temperatures", lambda grid: None)
    monkeypatch.setattr(R, "arm_predictions", lambda grid, temps: grid)
    monkeypatch.setattr(E, "variance_decomposition", lambda preds: pd.DataFrame({"source": ["init"], "share": [1.0]}))
    params = C.resolve_book_parameters("smoke")
    first = C.Book(params).variance_decomposition()
    assert len(calls) >= 1 and list(first["source"]) == ["init"] * len(calls)
    n = len(calls)
    again = C.Book(params).variance_decomposition()
    assert len(calls) == n  # nothing trained or loaded the second time
    pd.testing.assert_frame_equal(again, first)
    other = C.Book({**params, "seeds": int(params["seeds"]) + 1}).variance_decomposition()
    assert len(calls) == 2 * n and len(other) == len(first)  # another configuration: computed afresh


def test_fitted_values_come_from_the_cached_results_when_computed(monkeypatch, tmp_path):
    import softlab.report as R

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    params = C.resolve_book_parameters("smoke")
    assert R.cached_book_table(params, "fitted") is None  # never computed here
    with pytest.raises(ValueError, match="unknown table"):
        R.cached_book_table(params, "nope")
    cached = pd.DataFrame({"arm": ["fashion-mnist"], "fold": [0]})
    monkeypatch.setattr(R, "cached_book_table", lambda p, name: cached if name == "fitted" else None)
    book = C.Book(params)
    book.__dict__["_arms"] = ({}, {})  # preparing an arm would fail: nothing is prepared
    assert book.fitted_table() is cached
    monkeypatch.setattr(R, "cached_book_table", lambda p, name: None)
    fake_arm = SimpleNamespace(fitted_table=lambda seeds: pd.DataFrame({"arm": ["a"] * len(seeds)}))
    book.__dict__["_arms"] = ({"a": fake_arm}, {})
    assert len(book.fitted_table()) == len(book.configs[2])


def test_a_recorded_stability_result_is_shown_with_its_provenance_when_the_cache_lacks_it(monkeypatch, tmp_path):
    import softlab.report as R

    monkeypatch.setenv("SOFTLAB_RECORDED_DIR", str(tmp_path))
    monkeypatch.setattr(R, "cached_book_results", lambda params: None)
    params = C.resolve_book_parameters("stability")
    correct = [10, 11, 10, 12, 9, 11, 10, 10]
    results = SimpleNamespace(predictions={"fashion-mnist": _accuracy_predictions(correct)})
    provenance = {"recorded_on": "2026-12-07", "commit": "abc1234", "command": "python x.py", "wall_seconds": 60.0,
                  "training": "trained by this invocation", "machine": "2 cores"}  # fmt: skip
    table = C.stability_table(results, params)
    with pytest.raises(ValueError, match="provenance lacks"):
        C.record_result("stability", table, {"commit": "x"})
    path = C.record_result("stability", table, provenance)
    assert path == tmp_path / "stability.csv"
    row = C.Book(C.resolve_book_parameters("smoke")).stability().iloc[0]
    x = np.array(correct) / 20
    assert row["source"] == "recorded" and row["commit"] == "abc1234" and row["seeds"] == 8
    assert row["variance_ratio"] == pytest.approx(x.var(ddof=1) / x[::-1].var(ddof=1))
    path.write_text("arm,seeds\nfashion-mnist,8\n")  # provenance columns missing: refused, naming the file
    with pytest.raises(ValueError, match=r"stability\.csv"):
        C.Book(params).stability()


def test_chapter_8_shows_the_full_grid_computed_here_else_the_recorded_one_else_its_own_slice(monkeypatch, tmp_path):
    import softlab.robustness as RB

    monkeypatch.setenv("SOFTLAB_RECORDED_DIR", str(tmp_path / "recorded"))
    monkeypatch.setenv("SOFTLAB_RESULTS_DIR", str(tmp_path / "results"))
    robust = C.resolve_book_parameters("robustness")
    names = [c.name for c in RB.grid_cells(RB.parse_grid(robust["robustness"]), robust)]
    n = len(names)
    rng = np.random.default_rng(0)
    full = pd.DataFrame({c: [f"{c}-{i}" for i in range(n)] for c in RB.COLUMNS})
    for c in ("estimate", "ci_low", "ci_high", "seconds"):
        full[c] = rng.random(n)
    full["cell"] = names
    full["claim"] = (["1", "2", "3a"] * n)[:n]
    full["epochs"] = 6
    slice_ = full.iloc[:1].assign(cell="slice")
    monkeypatch.setattr(RB, "robustness_results", lambda params, **kw: slice_)
    book = C.Book(C.resolve_book_parameters("smoke"))

    grid, name, where, origin = book.robustness_grid()  # nothing computed or recorded: this set's slice
    assert grid is slice_ and name == "smoke" and "slice" in where and origin == "this set's slice"

    provenance = {"recorded_on": "2026-12-07", "commit": "abc1234", "command": "softlab run --params robustness",
                  "wall_seconds": 6120.0, "training": "cold cache", "machine": "2 cores"}  # fmt: skip
    C.record_result("robustness", full.iloc[:-1], provenance)  # one cell short
    grid, name, where, origin = book.robustness_grid()
    assert name == "robustness" and "recorded on 2026-12-07 at commit `abc1234`" in where and "1 h 42 min" in where
    assert f"It holds {n - 1} of {n} cells; not yet computed: `{names[-1]}`." in where
    assert origin == f"recorded on 2026-12-07, {n - 1} of {n} cells"
    later = provenance | {"recorded_on": "2026-12-08", "commit": "def5678", "wall_seconds": 3000.0}
    kept = C.load_recorded("robustness").drop(columns="source")
    C.record_result("robustness", full.iloc[-1:], later, kept=kept, order=names)  # the missing cell, later
    grid, name, where, origin = book.robustness_grid()
    assert origin == "recorded on 2026-12-07, 2026-12-08" and "not yet computed" not in where
    assert f"from 2 runs: {n - 1} cells recorded on 2026-12-07 at commit `abc1234`" in where
    assert "; 1 cell recorded on 2026-12-08 at commit `def5678`" in where and "50 min 00 s" in where
    assert list(grid["cell"]) == names  # in the grid's order, not in the order recorded
    with pytest.raises(ValueError, match="also in the new rows"):
        C.record_result("robustness", full.iloc[-1:], later, kept=C.load_recorded("robustness").drop(columns="source"))
    C.record_result("robustness", full, provenance)
    grid, name, where, origin = book.robustness_grid()
    assert origin == "recorded on 2026-12-07" and "not yet computed" not in where
    pd.testing.assert_frame_equal(grid, full[list(RB.COLUMNS)].astype(dict.fromkeys(C.GRID_TEXT_COLUMNS, str)))
    assert list(grid["claim"][:3]) == ["1", "2", "3a"] and grid["epochs"].dtype.kind == "i"

    RB.write_robustness(full, RB.robustness_path("robustness"))  # computed here: wins over the record
    grid, name, where, origin = book.robustness_grid()
    assert name == "robustness" and "computed on this machine" in where and origin == "computed here"
    pd.testing.assert_frame_equal(grid, full)
    # the robustness set itself shows its own grid, not a copy of it
    own = C.Book(robust).robustness_grid()
    assert own[0] is slice_ and own[1] == "robustness" and "computed by this run" in own[2]


def test_durations_read_as_the_book_states_them():
    assert [C.fmt_duration(s) for s in (59.6, 95, 1684, 6120, 3600)] == [
        "60 s", "95 s", "28 min 04 s", "1 h 42 min", "1 h 00 min"
    ]  # fmt: skip


def test_the_setup_line_says_when_held_out_items_are_not_a_sample():
    """MNIST MTurk's held-out items are its 100 suspected label errors: their accuracy against the
    official label is low by design, so the line says so and adds ordinary test images' accuracy."""
    rows = []
    for arm, heldout, disjoint in (("fashion-mnist", 0.8, 0.79), ("mnist", 0.19, 0.86)):
        for split, value in (("heldout", heldout), ("disjoint", disjoint)):
            rows.append({"dataset": arm, "condition": "human/human", "split": split, "stratum": "all",
                         "metric": "accuracy", "value": value})  # fmt: skip
    book = C.Book({**C.resolve_book_parameters("smoke"), "arms": ["fashion-mnist", "mnist"]})
    book.__dict__["results"] = SimpleNamespace(metrics=pd.DataFrame(rows), meta={"skipped": {}})
    line = book.setup_line(accuracy=True)
    assert "MNIST MTurk 0.19–0.19 on its 100 suspected label errors (0.86–0.86 on ordinary test images" in line
    assert "Fashion-MNIST-H 0.8–0.8;" in line or "Fashion-MNIST-H 0.8–0.8," in line
    assert line.count("ordinary test images") == 1


def test_the_findings_sentence_on_the_stability_set_names_its_source_and_design(monkeypatch):
    book = C.Book(C.resolve_book_parameters("smoke"))
    monkeypatch.setattr(C.Book, "stability", lambda self, name="stability": None)
    assert book.stability_sentence() == ""
    row = {"seeds": 1100, "condition": "human/human", "comparator": "human/synthetic", "variance_ratio": 0.533,
           "ci_low": 0.476, "ci_high": 0.598, "p_value": 1e-26, "sd_condition": 0.008, "sd_comparator": 0.0109,
           "mean_condition": 0.74, "mean_comparator": 0.764, "source": "recorded", "recorded_on": "2026-12-07",
           "commit": "abc1234"}  # fmt: skip
    monkeypatch.setattr(C.Book, "stability", lambda self, name="stability": pd.DataFrame([row]))
    text = book.stability_sentence()
    assert (
        "0.53 times" in text and "95% CI 0.48 to 0.6" in text and "recorded on 2026-12-07 at commit `abc1234`" in text
    )
    assert "not in its family" in text


def test_the_grid_sentence_gives_the_smallest_matching_budget_per_claim_1_test():
    """At one vote per item the co-primary (both sides scaled) can match while the primary does
    not: a single budget "on claim 1" would hide which test it came from."""
    from softlab.robustness import COLUMNS

    def rows(cell, family, k, verdicts):
        base = {**dict.fromkeys(COLUMNS), "cell": cell, "family": family, "model": "mlp", "epochs": 6}
        base |= {"lr": 1e-3, "hidden": 128, "votes_per_item": k, "annotated_fraction": 1.0, "delivery": "soft"}
        return [{**base, "arm": "fashion-mnist", "claim": c, "test": t, "verdict": v} for (c, t), v in verdicts.items()]

    primary, co = ("1", "cal-vs-best-ts"), ("1", "cal-both-scaled")
    table = pd.DataFrame(
        rows("d", "default", 0, {primary: "inconclusive", co: "inconclusive"})
        + rows("k1", "budget", 1, {primary: "refuted", co: "equivalent"})
        + rows("k3", "budget", 3, {primary: "refuted", co: "refuted"}),
        columns=list(COLUMNS),
    )
    text = C.robustness_findings(table)
    assert "`cal-vs-best-ts`, at no budget tried" in text
    assert "`cal-both-scaled`, at 1 vote(s) per item on 100% of the training items (soft delivery)" in text
    assert text.startswith("This slice of the grid varies no model setting")
    assert C.robustness_findings(table.iloc[:0]) == "The robustness grid has not been run for this parameter set."
