"""Named parameter sets for the notebooks.

A parameter set is a YAML file ``params/<name>.yml`` holding a flat mapping of parameter
names to values. ``params/default.yml`` declares every parameter the notebooks read, with its
default (a notebook's cell tagged ``parameters`` holds only the set's name and its overrides,
:mod:`softlab.chapter`); a set may only name parameters that it declares, and each value must
have the type of that default (ints are accepted where floats are declared). Validation happens
before anything runs, and errors name the parameter.

Beyond the type, each parameter listed in :data:`RULES` must lie in its range (``seeds >= 1``,
``folds >= 2``, ``lr > 0``, ``arms`` a non-empty list of known arms, sizes ``>= 0`` with 0
meaning "all", ...), and the whole configuration must pass the checks the notebooks apply
when they build their configs (:func:`softlab.experiment.configs_from_params`). **To add a
parameter**: add it with its default to ``params/default.yml``, then add one line to
:data:`RULES` (parameters without a rule still get the type check).

Sets shipped: ``smoke`` (every notebook in seconds to a couple of minutes; used by the tests),
``default`` (the book), ``paper`` (the full grid, for a GPU).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from softlab.paths import PROJECT_ROOT

PARAMS_DIR = PROJECT_ROOT / "params"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


class ParameterError(ValueError):
    """A parameter set names an unknown parameter, or gives a value of the wrong type or range."""


# --------------------------------------------------------------------------- range rules

Choices = tuple[str, ...] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Rule:
    """What one parameter's value must be.

    ``kind``: ``int`` (not bool), ``float`` (int or float, finite), ``bool``, ``str``, ``list``
    (of strings) or ``dict`` (a mapping; its contents are checked by the notebooks' own config
    checks). ``low``/``high``: bounds, inclusive unless ``low_open``/``high_open``.
    ``choices``: the allowed values (for a list: the allowed items), or a function returning
    them (looked up when checked, so a new arm needs no edit here). ``non_empty``: a list or
    text needs at least one element. ``note``: what special values mean (``0 = all``).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Choices | None = None
    non_empty: bool = False
    note: str = ""

    def _choices(self) -> tuple[str, ...]:
        c = self.choices
        return tuple(c() if callable(c) else c or ())

    def describe(self) -> str:
        """The expectation in words: ``an integer >= 1``, ``a number in (0, 0.5)``, ..."""
        what = {
            "int": "an integer",
            "float": "a finite number",
            "bool": "true or false",
            "str": "text",
            "list": "a list",
            "dict": "a mapping",
        }[self.kind]
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {self.high:g}"
        if self.choices is not None:
            what += (" of " if self.kind == "list" else " among ") + ", ".join(self._choices())
        if self.non_empty:
            what = "a non-empty " + what.removeprefix("a ")
        return what + (f" ({self.note})" if self.note else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or None when it is fine."""
        kind = self.kind
        if kind == "dict":
            return None if isinstance(value, dict) else "not a mapping"
        if kind == "bool":
            return None if isinstance(value, bool) else "not true/false"
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return "not an integer"
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "not a number"
            if not math.isfinite(value):
                return "not finite"
        if kind == "str" and not isinstance(value, str):
            return "not text"
        if kind == "list":
            if not isinstance(value, (list, tuple)):
                return "not a list"
            if self.non_empty and not value:
                return "empty"
            if len(set(map(repr, value))) != len(value):
                return "has repeated entries"
            if self.choices is not None:
                unknown = [v for v in value if v not in self._choices()]
                if unknown:
                    return f"unknown {unknown}"
            return None
        if kind == "str":
            if self.non_empty and not value.strip():
                return "empty"
            if self.choices is not None and value not in self._choices():
                return "not one of them"
            return None
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return "too small"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return "too large"
        return None


def integer(low: float | None = None, high: float | None = None, note: str = "") -> Rule:
    return Rule("int", low, high, note=note)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> Rule:
    return Rule("float", low, high, low_open, high_open, note=note)


def flag() -> Rule:
    return Rule("bool")


def one_of(choices: Choices) -> Rule:
    return Rule("str", choices=choices)


def subset_of(choices: Choices, non_empty: bool = True) -> Rule:
    return Rule("list", choices=choices, non_empty=non_empty)


def _known_arms() -> tuple[str, ...]:
    from softlab.experiment import ARMS

    return tuple(ARMS)


def _resample_sources() -> tuple[str, ...]:
    from softlab.experiment import RESAMPLE_SOURCES

    return tuple(RESAMPLE_SOURCES)


def _known_conditions() -> tuple[str, ...]:
    import softlab.labels

    return tuple(getattr(softlab.labels, "ALL_CONDITIONS", softlab.labels.CONDITIONS))


MODEL_KINDS = ("mlp", "cnn")  # softlab.models.ModelConfig.kind (not imported here: that would load torch)

#: The range of every parameter that has one: name -> rule. One line per parameter; a
#: parameter without a line still gets the type check against its notebook default.
RULES: dict[str, Rule] = {
    "params_name": Rule("str", non_empty=True),
    "n_examples": integer(1),
    "arms": subset_of(_known_arms),
    "pool_size": integer(0, note="0 = the whole pool"),
    "mnist_pool_size": integer(0, note="0 = all test images"),
    "synthetic_items": integer(1),
    "folds": integer(2),
    "seeds": integer(1),
    "epochs": integer(1),
    "model": one_of(MODEL_KINDS),
    "hidden": integer(1),
    "batch_size": integer(1),
    "lr": number(0, low_open=True),
    "teacher_epochs": integer(1),
    "teacher_train_items": integer(0, 60000, note="0 = all"),
    "generator_epochs": integer(1),
    "generator_train_items": integer(0, 60000, note="0 = all"),
    "disjoint_size": integer(0, note="0 = the whole disjoint split"),
    "n_boot": integer(1),
    "progress": flag(),
    "synthetic_mode_shift": number(0, 0.5),
    "n_teachers": integer(1),
    "calibration_fraction": number(0, 0.5, low_open=True, high_open=True),
    "record_dynamics": flag(),
    "run_folds": integer(0, note="0 = all folds; at most folds"),
    "conditions": subset_of(_known_conditions, non_empty=False),
    "votes": Rule("dict", note="arm name -> votes table"),
    "resample": subset_of(_resample_sources, non_empty=True),  # 'init' required: configs_from_params
}


def check_ranges(params: dict[str, Any], rules: dict[str, Rule] | None = None) -> None:
    """Check every parameter that has a rule; one ParameterError naming each offending parameter."""
    rules = RULES if rules is None else rules
    problems = []
    for name, value in params.items():
        rule = rules.get(name)
        if rule is None:
            continue
        why = rule.problem(value)
        if why is not None:
            problems.append(f"parameter {name!r}: got {value!r} ({why}); expected {rule.describe()}")
    if problems:
        raise ParameterError("; ".join(problems))


# --------------------------------------------------------------------------- sets and notebooks

NOT_PARAMETER_SETS = ("claims",)  # params/claims.yml is the pre-registration, not a parameter set


def available_sets() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yml") if p.stem not in NOT_PARAMETER_SETS)


def params_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yml", ".yaml"):
        if p.is_file():
            return p
        if p.parent != Path("."):
            raise ParameterError(f"parameter set {str(name_or_path)!r}: no file {p}")
    candidate = PARAMS_DIR / (p.name if p.suffix in (".yml", ".yaml") else f"{name_or_path}.yml")
    if not candidate.is_file():
        raise ParameterError(f"parameter set {str(name_or_path)!r}: no file {candidate}; available: {available_sets()}")
    return candidate


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """(``line L, column C``, what is wrong) of a YAML error (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return where, f"{context} {problem}" if context else str(problem)


def load_params(name_or_path: str | Path) -> dict[str, Any]:
    """Read a parameter set; a YAML error names the file and line."""
    path = params_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{path}: cannot read the parameter set ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where, problem = _yaml_problem(exc)
        raise ParameterError(
            f"{path}{':' if where else ''}{' ' + where if where else ''}: invalid YAML: {problem}"
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values, got {type(data).__name__}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ParameterError(f"{path}: parameter names must be text, got {bad_keys}")
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


def check_config(values: dict[str, Any]) -> None:
    """The checks the notebooks apply when they build their configs: arms, folds, pool sizes,
    model and training settings (:func:`softlab.experiment.configs_from_params`), run on the
    parameter set merged over the notebook defaults. Errors become ParameterError."""
    from softlab.experiment import configs_from_params

    try:
        configs_from_params(values)
    except ValueError as exc:
        raise ParameterError(f"parameter set: {exc}") from None


def declared_parameters() -> dict[str, Any]:
    """Every parameter the notebooks read, with its default: ``params/default.yml`` (a notebook's
    ``parameters`` cell holds only the set's name and its overrides; see :mod:`softlab.chapter`)."""
    return load_params("default")


def validate(params: dict[str, Any], notebooks: list[Path]) -> dict[Path, dict[str, Any]]:
    """Check names, types, ranges (:data:`RULES`) and the whole configuration against the
    parameters the notebooks read (:func:`declared_parameters`); return each notebook's
    parameters. Nothing runs when this raises."""
    known = declared_parameters()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; the notebooks read: {sorted(known)}")
    for k, v in params.items():
        if not _type_ok(v, known[k]):
            raise ParameterError(
                f"parameter {k!r}: got {v!r} ({type(v).__name__}); params/default.yml declares it as "
                f"{type(known[k]).__name__} (default {known[k]!r})"
            )
    check_ranges(params)
    check_config({**known, **params})  # the notebooks run with the defaults overridden by the set
    return {nb: dict(params) for nb in notebooks}


def split_override(text: str) -> tuple[str, str]:
    """``--set KEY=VALUE`` → (key, value text); the value is parsed later by :func:`coerce_override`."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParameterError(f"--set {text!r}: expected KEY=VALUE (e.g. --set seeds=3)")
    return key, value


def coerce_override(value: str, key: str | None = None) -> Any:
    """Parse a ``--set KEY=VALUE`` value as YAML (``3`` → int, ``[1, 2]`` → list)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        where, problem = _yaml_problem(exc)
        raise ParameterError(
            f"--set {key or ''}={value}: invalid YAML value ({problem}{', ' + where if where else ''})"
        ) from None
