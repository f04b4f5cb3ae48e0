"""The robustness grid: cells around the default, budgets, the sampled delivery, the table, the
findings sentence and the figures (a smoke-sized end-to-end run on real Fashion-MNIST-H votes)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from softlab.params import load_params
from softlab.robustness import (
    COLUMNS,
    Cell,
    findings_sentence,
    grid_cells,
    parse_grid,
    robustness_table,
    smallest_matching_budget,
    write_robustness,
)


def test_full_grid_is_one_factor_at_a_time_plus_the_budgets():
    params = load_params("robustness")
    spec = parse_grid(params["robustness"])
    cells = grid_cells(spec, params)
    default = cells[0]
    assert default.family == "default"
    assert (default.model, default.epochs, default.lr, default.hidden) == ("mlp", 6, 1e-3, 128)
    assert (default.votes_per_item, default.annotated_fraction, default.delivery) == (0, 1.0, "soft")
    assert len({c.settings() for c in cells}) == len(cells)  # no cell twice
    spec_cells = [c for c in cells if c.family == "specification"]
    for c in spec_cells:  # one factor away from the default, or from the other model's default
        changed = [a != b for a, b in zip(c.settings()[1:4], default.settings()[1:4])]
        assert sum(changed) <= 1
        assert (c.votes_per_item, c.annotated_fraction, c.delivery) == (0, 1.0, "soft")
    assert {c.model for c in spec_cells} == {"mlp", "cnn"}
    assert all(c.hidden == 128 for c in spec_cells if c.model == "cnn")  # width is an MLP factor
    budget = [c for c in cells if c.family == "budget"]
    assert {c.votes_per_item for c in budget} == {0, 1, 3, 5, 10, 20}
    assert {c.annotated_fraction for c in budget} == {0.1, 0.25, 0.5, 1.0}
    for k in (1, 3, 5, 10, 20):  # soft and sampled at every k
        assert {c.delivery for c in budget if c.votes_per_item == k and c.annotated_fraction == 1.0} == {
            "soft",
            "sampled",
        }
    assert all(c.model == "mlp" and c.epochs == 6 for c in budget)
    assert len(cells) == 30


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": [1]}, "unknown key"),
        ({"models": ["rnn"]}, "robustness.models"),
        ({"votes_per_item": [0.5]}, "robustness.votes_per_item"),
        ({"annotated_fraction": [0]}, "robustness.annotated_fraction"),
        ({"delivery": ["hard"]}, "robustness.delivery"),
        ({"epochs": 6}, "expected a list"),
    ],
)
def test_bad_grid_is_named(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(raw)


def test_budgets_are_validated_with_the_parameter_set():
    from softlab.params import ParameterError, check_ranges

    with pytest.raises(ParameterError, match="annotated_fraction"):
        check_ranges({"annotated_fraction": 1.5})
    with pytest.raises(ParameterError, match="votes_per_item"):
        check_ranges({"votes_per_item": -2})


def _rows(cell: str, family: str, k: int, f: float, delivery: str, verdicts: dict[str, str]) -> list[dict]:
    base = dict.fromkeys(COLUMNS, np.nan)
    out = []
    for test, verdict in verdicts.items():
        claim = test.split("-")[0]
        out.append(
            {
                **base,
                "cell": cell,
                "family": family,
                "model": "mlp",
                "epochs": 6,
                "lr": 1e-3,
                "hidden": 128,
                "votes_per_item": k,
                "annotated_fraction": f,
                "delivery": delivery,
                "arm": "fashion-mnist",
                "claim": claim,
                "test": test,
                "verdict": verdict,
            }
        )
    return out


def test_findings_sentence_names_changed_verdicts_and_the_smallest_matching_budget():
    table = pd.DataFrame(
        _rows("d", "default", 0, 1.0, "soft", {"1-cal": "refuted", "3-corr": "negligible"})
        + _rows("cnn", "specification", 0, 1.0, "soft", {"1-cal": "refuted", "3-corr": "confirmed"})
        + _rows("k1", "budget", 1, 1.0, "soft", {"1-cal": "refuted", "3-corr": "confirmed"})
        + _rows("k3", "budget", 3, 1.0, "sampled", {"1-cal": "equivalent", "3-corr": "confirmed"})
        + _rows("k10f", "budget", 10, 0.25, "soft", {"1-cal": "confirmed", "3-corr": "confirmed"}),
        columns=list(COLUMNS),
    )
    best = smallest_matching_budget(table)
    assert best is not None and (best.votes_per_item, best.annotated_fraction, best.delivery) == (10, 0.25, "soft")
    text = findings_sentence(table)
    assert "changes for 1 primary test(s): 3-corr (fashion-mnist)" in text
    assert "10 vote(s) per item on 25% of the training items (soft delivery)" in text
    held = table[~((table["cell"] == "cnn") & (table["test"] == "3-corr"))]
    assert findings_sentence(held).startswith("Every default primary verdict holds in all 1 specification cells")
    none = table[table["cell"].isin(["d", "cnn", "k1"])]
    assert "at no annotation budget tried" in findings_sentence(none)


def test_table_columns_are_checked_before_writing(tmp_path):
    with pytest.raises(ValueError, match="expected the columns"):
        write_robustness(pd.DataFrame({"cell": ["a"]}), tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


# --------------------------------------------------------------------------- end to end (smoke size)


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    from softlab.store import RunStore

    params = load_params("smoke")
    spec = parse_grid(params["robustness"])
    cells = grid_cells(spec, params)
    store = RunStore(tmp_path_factory.mktemp("runs"))
    cache = tmp_path_factory.mktemp("robustness")
    return params, cells, robustness_table(params, store=store, cells=cells, cache=cache), store, cache


def test_smoke_grid_has_one_row_per_cell_and_primary_test(smoke_grid):
    from softlab.inference import load_claims

    _, cells, table, _, _ = smoke_grid
    assert list(table.columns) == list(COLUMNS)
    n_primary = sum(t.primary for t in load_claims().tests_for("fashion-mnist")[1])  # the latest version's
    assert len(table) == len(cells) * n_primary
    assert set(table["cell"]) == {c.name for c in cells}
    assert table["heldout_accuracy"].between(0, 1).all()
    has = table["ci_low"].notna()  # a variance ratio at 2 seeds has no interval
    assert has.any()
    assert (table.loc[has, "ci_low"] <= table.loc[has, "estimate"]).all()
    assert (table.loc[has, "estimate"] <= table.loc[has, "ci_high"]).all()


def test_budget_and_delivery_change_the_numbers(smoke_grid):
    _, _, table, _, _ = smoke_grid
    by = table.sort_values("test").set_index(["votes_per_item", "annotated_fraction", "delivery", "test"])
    by = by.sort_index()["mean_condition"]
    default = by.loc[(0, 1.0, "soft")]
    assert not np.allclose(by.loc[(1, 1.0, "soft")], default)
    # one vote per item: the sampled vote is that vote every epoch, so both deliveries train alike
    np.testing.assert_allclose(by.loc[(1, 1.0, "sampled")], by.loc[(1, 1.0, "soft")], rtol=1e-6)
    # all votes on half the items: one drawn vote per epoch is not the soft distribution
    assert not np.allclose(by.loc[(0, 0.5, "sampled")], by.loc[(0, 0.5, "soft")])


def test_default_cell_matches_the_full_condition_grid(smoke_grid):
    """Training only the conditions the primary tests name changes none of their numbers."""
    from softlab.experiment import configs_from_params, prepare_arm, run_arm
    from softlab.inference import load_claims, verdict_table
    from softlab.report import arm_predictions, run_temperatures

    params, _, table, store, _ = smoke_grid
    arms, train_cfg, seeds = configs_from_params(params)
    grid = run_arm(prepare_arm(arms["fashion-mnist"]), train_cfg, seeds, store=store)
    preds = arm_predictions(grid, run_temperatures(grid))
    full = verdict_table({"fashion-mnist": preds}, load_claims())
    full = full[full["family"] == "primary"].set_index("test")
    cell = table[table["family"] == "default"].set_index("test")
    for col in ("estimate", "ci_low", "ci_high", "mean_condition", "mean_comparator"):
        np.testing.assert_allclose(cell[col], full.loc[cell.index, col], rtol=1e-12)


def test_cached_cells_are_loaded_not_recomputed(smoke_grid, monkeypatch):
    import softlab.robustness as R

    params, cells, table, store, cache = smoke_grid

    def fail(*args, **kwargs):
        raise AssertionError("a cached cell was recomputed")

    monkeypatch.setattr(R, "run_cell", fail)
    again = robustness_table(params, store=store, cells=cells, cache=cache)
    pd.testing.assert_frame_equal(again, table)


def test_figures_draw_from_the_table(smoke_grid):
    from softlab.plots_robustness import plot_budget_curves, plot_specification_curve

    _, _, table, _, _ = smoke_grid
    fig = plot_specification_curve(table)
    assert len(fig.axes) == 2 * table["test"].nunique()  # a curve and a settings strip per test
    fig = plot_budget_curves(table)
    assert len(fig.axes) == 6
    phone = plot_budget_curves(table, columns=1)  # the same six panels, one to a row
    assert [ax.get_xlabel() for ax in phone.axes] == [ax.get_xlabel() for ax in fig.axes]
    assert [ax.get_ylabel() for ax in phone.axes] == [ax.get_ylabel() for ax in fig.axes]
    assert {ax.get_subplotspec().colspan.start for ax in phone.axes} == {0}
    assert phone.get_size_inches()[0] <= 4.1 < fig.get_size_inches()[0]
    four = plot_budget_curves(table, columns=4)  # a last row with spare places: they stay empty
    assert sum(ax.get_visible() for ax in four.axes) == 6 and len(four.axes) == 8
    with pytest.raises(ValueError, match="columns"):
        plot_budget_curves(table, columns=0)
    one_cell = table[table["family"] == "default"]
    plot_budget_curves(one_cell)  # a table with no budget cells still draws (empty panels say so)


def test_specification_curve_shows_every_cell_and_marks_its_differences(smoke_grid):
    """Each panel draws one finite point per cell (the bound test on its own scale, not a blank
    panel of undefined relative effects); each strip puts one dot per setting in which a cell
    differs from the default cell; the figure stays the width of a book column, however many tests."""
    from softlab.plots_robustness import _SETTINGS, plot_specification_curve

    _, cells, table, _, _ = smoke_grid
    fig = plot_specification_curve(table)
    assert fig.get_size_inches()[0] <= 8.5
    default = table[table["family"] == "default"].iloc[0]
    differing = sum(
        int((table[table["cell"] == c.name].iloc[0][list(_SETTINGS)] != default[list(_SETTINGS)]).sum()) for c in cells
    )
    curves, strips = fig.axes[0::2], fig.axes[1::2]
    assert len(curves) == table["test"].nunique()
    assert table.loc[table["kind"] == "bound", "estimate"].notna().any()  # the case a relative scale blanked
    for ax, strip in zip(curves, strips, strict=True):
        ys = np.array([float(c.lines[0].get_ydata()[0]) for c in ax.containers])
        part = table[table["test"] == ax.get_title()]
        bound = part["kind"].iloc[0] == "bound"
        shown = part["estimate"].to_numpy(float) if bound else 100 * part["relative"].to_numpy(float)  # percent
        assert len(ys) == len(cells), ax.get_title()
        np.testing.assert_array_equal(np.sort(ys[np.isfinite(ys)]), np.sort(shown[np.isfinite(shown)]))
        if not np.isfinite(ys).any():  # e.g. a variance ratio at 2 seeds: the panel says why it is empty
            assert any("no estimate" in t.get_text() for t in ax.texts), ax.get_title()
        dots = sum(len(line.get_xdata()) for line in strip.lines if line.get_marker() == "o")
        assert dots == differing, ax.get_title()
    phone = plot_specification_curve(table, columns=1)
    assert phone.get_size_inches()[0] <= 4.1
    phone.draw_without_rendering()  # lays it out, as saving does
    drawn = phone.get_tightbbox().width  # what the book shows (savefig.bbox "tight"), in inches
    assert drawn <= 4.2, f"the one-column curve is drawn {drawn:.2f} in wide: the legend widens it"
    with pytest.raises(ValueError, match="columns"):
        plot_specification_curve(table, columns=0)


def _recorded_grid() -> pd.DataFrame:
    from softlab.chapter import GRID_TEXT_COLUMNS, load_recorded

    recorded = load_recorded("robustness")
    if recorded is None:
        pytest.skip("recorded/robustness.csv is not in this checkout")
    text = [c for c in COLUMNS if c in GRID_TEXT_COLUMNS]
    return recorded[list(COLUMNS)].astype(dict.fromkeys(text, str))


def test_budget_curves_join_one_point_per_budget_in_budget_order(smoke_grid):
    """Every line runs left to right with one point per budget: one claim-1 test per panel (the
    grid has two claim-1 primaries: mixing them zigzagged), k = all drawn last, not first, and the
    fraction curves one line per k the grid varies f at."""
    from matplotlib.lines import Line2D

    from softlab.plots_robustness import plot_budget_curves

    for table in (smoke_grid[2], _recorded_grid()):
        fig = plot_budget_curves(table)
        for ax in fig.axes:
            for line in ax.get_lines():
                x = np.asarray(line.get_xdata(), float)
                if isinstance(line, Line2D) and len(x) > 1 and line.get_linestyle() != "None":
                    assert (np.diff(x) > 0).all(), (ax.get_xlabel(), line.get_label(), x)
    grid = _recorded_grid()
    fig = plot_budget_curves(grid)
    bottom_left = fig.axes[3]
    labels = {t.get_text() for t in bottom_left.get_legend().get_texts()}
    assert {"soft, k=all", "soft, k=3", "sampled, k=all", "sampled, k=3"} <= labels
    assert fig.axes[0].get_title() == "soft-calibration-hard-vs-best-ts"


def test_cells_are_named_by_their_settings():
    c = Cell("", "budget", "mlp", 6, 1e-3, 128, 3, 0.25, "sampled")
    params = {"model": "mlp", "epochs": 6, "lr": 1e-3, "hidden": 128}
    names = {
        x.name
        for x in grid_cells(
            parse_grid(
                {"votes_per_item": [3], "annotated_fraction": [0.25], "fraction_votes": [3], "delivery": ["sampled"]}
            ),
            params,
        )
    }
    assert "mlp e6 lr0.001 h128 k=3 f=0.25 sampled" in names
    assert replace(c, name="x").settings() == c.settings()


def test_robustness_set_is_the_default_set_plus_the_full_grid():
    """The grid is centred on the book's own settings: the two sets differ only in name and grid."""
    default, full = load_params("default"), load_params("robustness")
    drop = ("params_name", "robustness")
    assert {k: v for k, v in full.items() if k not in drop} == {k: v for k, v in default.items() if k not in drop}


def test_record_robustness_keep_recorded_adds_only_new_cells_and_keeps_their_provenance(monkeypatch, tmp_path):
    """`record_robustness.py --partial --keep-recorded`: cells already recorded keep their rows and
    provenance even when the cache holds them too; only cells not yet recorded get the new run's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import record_robustness as RR

    from softlab.chapter import load_recorded, record_result

    monkeypatch.setenv("SOFTLAB_RECORDED_DIR", str(tmp_path))
    rows = pd.DataFrame({c: ["x", "x"] for c in COLUMNS}).assign(cell=["old cell", "new cell"])
    old = {"recorded_on": "2026-12-07", "commit": "aaa", "command": "c", "wall_seconds": 1.0}
    old |= {"training": "t", "machine": "m"}
    record_result("robustness", rows.iloc[:1], old)
    monkeypatch.setattr(RR, "cached_cells", lambda name: (rows, []))  # the cache holds both cells
    argv = ["--partial", "--keep-recorded", "--wall-seconds", "2", "--training", "t2", "--commit", "bbb"]
    assert RR.main(argv) == 0
    got = load_recorded("robustness").set_index("cell")
    assert sorted(got.index) == ["new cell", "old cell"]
    assert got.loc["old cell", "commit"] == "aaa" and got.loc["new cell", "commit"] == "bbb"
