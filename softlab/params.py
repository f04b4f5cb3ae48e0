"""Named parameter sets for the notebooks.

A parameter set is a YAML file ``params/<name>.yml`` holding a flat mapping of parameter
names to values. Each notebook declares the parameters it reads, with defaults, in its cell
tagged ``parameters``; a set may only name parameters that some notebook declares, and each
value must have the type of that notebook default (ints are accepted where floats are
declared). Validation happens before anything runs, and errors name the parameter.

Sets shipped: ``smoke`` (every notebook in seconds to a couple of minutes; used by the tests),
``default`` (the book), ``paper`` (the full grid, for a GPU).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from softlab.paths import PROJECT_ROOT

PARAMS_DIR = PROJECT_ROOT / "params"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


class ParameterError(ValueError):
    """A parameter set names an unknown parameter, or gives a value of the wrong type."""


def available_sets() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yml"))


def params_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yml", ".yaml") and p.exists():
        return p
    candidate = PARAMS_DIR / f"{name_or_path}.yml"
    if not candidate.exists():
        raise ParameterError(f"parameter set {str(name_or_path)!r}: no file {candidate}; available: {available_sets()}")
    return candidate


def load_params(name_or_path: str | Path) -> dict[str, Any]:
    path = params_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    data.setdefault("params_name", Path(path).stem)
    return data


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters a notebook declares (name -> default value), from its tagged cell."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            out: dict[str, Any] = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = ast.literal_eval(node.value) if node.value is not None else None
                    for t in targets:
                        if isinstance(t, ast.Name):
                            out[t.id] = value
            return out
    raise ParameterError(f"{notebook}: no code cell tagged 'parameters'")


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def validate(params: dict[str, Any], notebooks: list[Path]) -> dict[Path, dict[str, Any]]:
    """Check names and types against the notebooks; return each notebook's parameters."""
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    known: dict[str, Any] = {}
    for decl in declared.values():
        for k, v in decl.items():
            known.setdefault(k, v)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; the notebooks declare: {sorted(known)}")
    for k, v in params.items():
        for nb, decl in declared.items():
            if k in decl and not _type_ok(v, decl[k]):
                raise ParameterError(
                    f"parameter {k!r}: got {v!r} ({type(v).__name__}); {nb.name} declares it as "
                    f"{type(decl[k]).__name__} (default {decl[k]!r})")
    return {nb: {k: v for k, v in params.items() if k in decl} for nb, decl in declared.items()}


def coerce_override(value: str) -> Any:
    """Parse a ``--set KEY=VALUE`` value as YAML (``3`` → int, ``[1, 2]`` → list)."""
    return yaml.safe_load(value)
