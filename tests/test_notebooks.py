"""The committed expected notebooks (tests/expected/, the smoke run with outputs) stay in sync
with the sources, so nbval's comparison checks what the sources produce.

nbval itself (`--nbval` in the README's test command) re-executes every notebook in
tests/expected/ and compares its outputs, sanitised by tests/nbval_sanitize.cfg.
Regenerate after editing a notebook: `make expected`.
"""

from __future__ import annotations

import nbformat
import pytest

from softlab.params import load_params, notebook_parameters
from softlab.paths import PROJECT_ROOT
from softlab.pipeline import notebook_paths

EXPECTED = PROJECT_ROOT / "tests" / "expected"
SOURCES = notebook_paths()


def _code(nb) -> list[str]:
    return [
        c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def test_the_intro_six_chapters_and_the_findings_have_expected_copies():
    assert [p.name[:2] for p in SOURCES] == ["00", "01", "02", "03", "04", "05", "06", "07"]
    assert sorted(p.name for p in EXPECTED.glob("*.ipynb")) == [p.name for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_sources_are_clean_and_parameterised(source):
    nb = nbformat.read(source, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit sources without outputs"
    assert notebook_parameters(source), "needs a cell tagged 'parameters'"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_expected_matches_source_and_smoke_parameters(source):
    expected = nbformat.read(EXPECTED / source.name, as_version=4)
    assert _code(expected) == _code(nbformat.read(source, as_version=4)), (
        f"run `make expected` after editing {source.name}"
    )
    injected = [c for c in expected.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    smoke = load_params("smoke")
    namespace: dict = {}
    exec(injected[0].source, namespace)
    declared = notebook_parameters(source)
    assert {k: namespace[k] for k in declared if k in namespace} == {k: v for k, v in smoke.items() if k in declared}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_parameter_cells_equal_the_default_set(source):
    """Opening a notebook in JupyterLab and pressing Run All reproduces the book's chapter: its
    parameters cell holds exactly the values of params/default.yml."""
    default = load_params("default")
    declared = notebook_parameters(source)
    assert declared == {k: v for k, v in default.items() if k in declared}
    assert set(declared) == set(default), f"{source.name} declares {sorted(set(declared) ^ set(default))} differently"
