"""Parameter sets: unknown names and wrong types fail before anything runs."""

from __future__ import annotations

import re

import pytest

from softlab.params import ParameterError, available_sets, load_params, validate
from softlab.pipeline import notebook_paths, run_notebooks


def test_shipped_sets_validate_against_the_notebooks():
    assert {"smoke", "default", "paper"} <= set(available_sets())
    for name in ("smoke", "default", "paper"):
        per_notebook = validate(load_params(name), notebook_paths())
        assert all(per_notebook.values())


def test_unknown_parameter_is_named():
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['sedes'\]"):
        validate({**load_params("smoke"), "sedes": 3}, notebook_paths())


def test_wrong_type_is_named():
    with pytest.raises(ParameterError, match=r"parameter 'seeds': got 'three' \(str\)"):
        validate({**load_params("smoke"), "seeds": "three"}, notebook_paths())


def test_unknown_set_lists_the_available_ones():
    with pytest.raises(ParameterError, match="available"):
        load_params("nope")


def test_run_fails_before_executing_anything(tmp_path):
    with pytest.raises(ParameterError, match="epochs"):
        run_notebooks("smoke", overrides={"epochs": "[1, 2]"}, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------- ranges and the whole configuration (issue 13)

from softlab.params import RULES, Rule, check_ranges, split_override  # noqa: E402


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("seeds", 0, "an integer in [1, 10000]"),
        ("seeds", -1, "an integer in [1, 10000]"),
        ("folds", 1, "an integer in [2, 100]"),
        ("arms", [], "a non-empty list of fashion-mnist, mnist, synthetic-mnist"),
        ("arms", ["fashion-mnist", "cifar"], "unknown ['cifar']"),
        ("arms", ["mnist", "mnist"], "repeated entries"),
        ("disjoint_size", -1, "an integer in [0, 10000000] (0 = the whole disjoint split)"),
        ("pool_size", -5, "an integer in [0, 10000000]"),
        ("teacher_epochs", -1, "an integer in [1, 10000]"),
        ("teacher_train_items", 70000, "an integer in [0, 60000]"),
        ("epochs", 0, "an integer in [1, 10000]"),
        ("lr", 0.0, "a finite number in (0, 10]"),
        ("lr", float("nan"), "not finite"),
        ("batch_size", 0, "an integer in [1, 10000000]"),
        ("model", "resnet", "text among mlp, cnn"),
        ("n_boot", 0, "an integer in [1, 1000000]"),
        # issue 27: huge counts are typos, refused in one line (seeds=1000000000 was a MemoryError)
        ("seeds", 1_000_000_000, "an integer in [1, 10000]"),
        ("n_boot", 10**12, "an integer in [1, 1000000]"),
        # issue 27: names that become paths must be plain names (params_name=../x wrote outside results/)
        ("params_name", "../x", "a plain name"),
        ("params_name", "/tmp/abs", "a plain name"),
        ("votes", {"../../x": "votes.csv"}, "keys are plain names"),
    ],
)
def test_parameter_ranges_are_checked_before_anything_runs(tmp_path, name, value, expected):
    with pytest.raises(ParameterError, match=rf"parameter '{name}': got .*{re.escape(expected)}"):
        validate({**load_params("smoke"), name: value}, notebook_paths())
    with pytest.raises(ParameterError):
        run_notebooks("smoke", overrides={name: value}, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # papermill never started


def test_range_rules_are_one_extensible_table():
    for name in ("seeds", "folds", "arms", "disjoint_size", "epochs", "teacher_epochs", "lr", "pool_size"):
        assert isinstance(RULES[name], Rule)
    # announced parameters are already in the table, in their stated ranges
    check_ranges(
        {
            "synthetic_mode_shift": 0.5,
            "n_teachers": 1,
            "calibration_fraction": 0.25,
            "record_dynamics": True,
            "run_folds": 0,
            "conditions": [],
            "votes": {},
        }
    )
    for bad in (
        {"synthetic_mode_shift": 0.6},
        {"n_teachers": 0},
        {"calibration_fraction": 0.5},
        {"calibration_fraction": 0.0},
        {"record_dynamics": 1},
        {"run_folds": -1},
        {"conditions": ["human/nonsense"]},
        {"votes": ["a.csv"]},
    ):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            check_ranges(bad)
    # a parameter without a rule still gets the notebooks' type check
    assert "n_examples" in RULES and "unlisted" not in RULES
    check_ranges({"unlisted": -1})
    # several problems are reported together, each named
    with pytest.raises(ParameterError, match=r"'seeds'.*; parameter 'folds'"):
        check_ranges({"seeds": 0, "folds": 0})


def test_whole_configuration_is_checked_like_the_notebooks_do(monkeypatch):
    import softlab.experiment

    def strict(p):  # stands for a check only configs_from_params knows
        raise ValueError("pool_size: 3 items cannot fill 5 folds")

    monkeypatch.setattr(softlab.experiment, "configs_from_params", strict)
    with pytest.raises(ParameterError, match="parameter set: pool_size: 3 items cannot fill 5 folds"):
        validate(load_params("smoke"), notebook_paths())


def test_set_without_equals_is_a_clear_error():
    with pytest.raises(ParameterError, match=r"--set 'seeds': expected KEY=VALUE \(e.g. --set seeds=3\)"):
        split_override("seeds")
    with pytest.raises(ParameterError, match="expected KEY=VALUE"):
        split_override("=3")
    assert split_override("arms=[mnist]") == ("arms", "[mnist]")


def test_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "broken.yml"
    bad.write_text("seeds: 3\nfolds: [2, 3\nepochs: 1\n")
    with pytest.raises(ParameterError, match=rf"{re.escape(str(bad))}, line \d+: invalid YAML") as err:
        load_params(bad)
    assert "<unicode string>" not in str(err.value)
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match=r"list\.yml: expected a mapping"):
        load_params(tmp_path / "list.yml")
    with pytest.raises(ParameterError, match=r"--set seeds=\[1,: invalid YAML value"):
        run_notebooks("smoke", overrides={"seeds": "[1,"}, out_dir=tmp_path / "out")


def test_only_one_notebook_accepts_a_set_written_for_all(tmp_path):
    from softlab.chapter import injected_parameters
    from softlab.params import notebook_parameters
    from softlab.pipeline import resolve_parameters

    paths, per_notebook = resolve_parameters("smoke", {"seeds": "3"}, only=["01"])
    assert [p.name for p in paths] == ["01_data_annotation.ipynb"]
    assert per_notebook[paths[0]] == {**load_params("smoke"), "seeds": 3}
    # what reaches the notebook: the set's name and the override, which open_book resolves back
    assert injected_parameters(per_notebook[paths[0]]) == {"params_name": "smoke", "overrides": {"seeds": 3}}
    assert set(notebook_parameters(paths[0])) == {"params_name", "overrides"}
    with pytest.raises(ParameterError, match="'seeds'"):
        resolve_parameters("smoke", {"seeds": "0"}, only=["01"])  # still checked, though 01 does not read it
