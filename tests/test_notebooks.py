"""The committed expected notebooks (tests/expected/, the smoke run with outputs) stay in sync
with the sources, so nbval's comparison checks what the sources produce.

nbval itself (`--nbval` in the README's test command) re-executes every notebook in
tests/expected/ and compares its outputs, sanitised by tests/nbval_sanitize.cfg.
Regenerate after editing a notebook: `make expected`.
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from softlab.chapter import resolve_book_parameters
from softlab.params import load_params, notebook_parameters
from softlab.paths import PROJECT_ROOT
from softlab.pipeline import notebook_paths

EXPECTED = PROJECT_ROOT / "tests" / "expected"
SOURCES = notebook_paths()


def _code(nb) -> list[str]:
    return [
        c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def test_the_intro_six_chapters_the_findings_and_robustness_have_expected_copies():
    assert [p.name[:2] for p in SOURCES] == ["00", "01", "02", "03", "04", "05", "06", "07", "08"]
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
    namespace: dict = {}
    exec(injected[0].source, namespace)
    assert resolve_book_parameters(namespace["params_name"], namespace["overrides"]) == {
        **load_params("default"),
        **load_params("smoke"),
    }


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_parameter_cells_name_the_default_set_and_nothing_else(source):
    """Opening a notebook in JupyterLab and pressing Run All reproduces the book's chapter: its
    parameters cell (at most 6 lines) names the `default` set with no overrides, so every default
    comes from params/*.yml."""
    cell = next(c for c in nbformat.read(source, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assert len(cell.source.splitlines()) <= 6
    assert notebook_parameters(source) == {"params_name": "default", "overrides": {}}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebooks_import_no_private_names_from_softlab(source):
    """The notebooks narrate with the package's public API: no `from softlab.x import _y`, no
    `softlab.x._y`, no private module."""
    for cell in nbformat.read(source, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("softlab"):
                names = [(node.module or "").split("."), *[[a.name] for a in node.names]]
                private = [n for part in names for n in part if n.startswith("_")]
                assert not private, f"{source.name} imports {private} from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not any(p.startswith("_") for p in alias.name.split(".")), f"{source.name}: {alias.name}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                assert not (isinstance(root, ast.Name) and root.id in {"softlab", "plots"}), (
                    f"{source.name} uses the private softlab name {node.attr}"
                )


def test_the_private_name_check_catches_an_import():
    code = "from softlab.present import _pct, table"
    imported = [a.name for n in ast.walk(ast.parse(code)) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert [n for n in imported if n.startswith("_")] == ["_pct"]


def test_the_kernels_own_stderr_goes_to_a_log_file_not_the_terminal(monkeypatch, tmp_path):
    """Ctrl-C mid-notebook made the kernel log a zmq traceback on the user's terminal
    (benchmarks/faults.py); its process's stderr now goes to a file under the cache."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    import softlab.pipeline as P

    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path))
    got = {}

    async def launch(self, kernel_cmd, **kw):
        got.update(kw)
        kw["stderr"].write(b"kernel log line\n")

    monkeypatch.setattr(AsyncKernelManager, "_async_launch_kernel", launch)
    asyncio.run(P._IpcKernelManager()._async_launch_kernel(["python"], env={}))
    logs = list(P.kernel_log_dir().glob("*.log"))
    assert P.kernel_log_dir() == tmp_path / "kernel-logs" and len(logs) == 1
    assert logs[0].read_bytes() == b"kernel log line\n" and got["stderr"].name == str(logs[0])


def test_softlab_run_computes_the_robustness_cells_first_for_the_chapters_that_show_them():
    """`softlab run` trains what the notebooks read before executing them; a chapter reading the grid
    through a call the trigger does not know would train 30 cells silently inside its kernel."""
    from softlab.pipeline import ROBUSTNESS_CALLS, _uses

    readers = [p.name for p in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")) if _uses(p, ROBUSTNESS_CALLS)]
    assert readers == ["07_findings.ipynb", "08_robustness.ipynb"]
