"""Parameter sets: unknown names and wrong types fail before anything runs."""

from __future__ import annotations

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
