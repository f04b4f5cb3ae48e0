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
from softlab.validation import check_plain_name
from softlab.yamlio import YamlError, load_yaml

PARAMS_DIR = PROJECT_ROOT / "params"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


class ParameterError(ValueError):
    """A parameter set names an unknown parameter, or gives a value of the wrong type or range."""


# --------------------------------------------------------------------------- range rules

Choices = tuple[str, ...] | Callable[[], Sequence[str]]


def _bound(x: float) -> str:
    """A bound as written in a parameter set: ``10000000``, not ``1e+07``; ``0.5`` as is."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Rule:
    """What one parameter's value must be.

    ``kind``: ``int`` (not bool), ``float`` (int or float, finite), ``bool``, ``str``, ``list``
    (of strings) or ``dict`` (a mapping; its contents are checked by the notebooks' own config
    checks). ``low``/``high``: bounds, inclusive unless ``low_open``/``high_open``.
    ``choices``: the allowed values (for a list: the allowed items), or a function returning
    them (looked up when checked, so a new arm needs no edit here). ``non_empty``: a list or
    text needs at least one element. ``note``: what special values mean (``0 = all``).
    ``plain_names``: the text (for a mapping: every key) becomes a file or folder name, so it
    must be a plain name (:func:`softlab.validation.check_plain_name`).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Choices | None = None
    non_empty: bool = False
    note: str = ""
    plain_names: bool = False

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
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            what += f" in {left}{_bound(self.low)}, {_bound(self.high)}{right}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {_bound(self.low)}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {_bound(self.high)}"
        if self.choices is not None:
            what += (" of " if self.kind == "list" else " among ") + ", ".join(self._choices())
        if self.non_empty:
            what = "a non-empty " + what.removeprefix("a ")
        if self.plain_names:
            what += " whose keys are plain names" if self.kind == "dict" else ", a plain name"
            what += " (letters, digits, _ - .)"
        return what + (f" ({self.note})" if self.note else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or None when it is fine."""
        kind = self.kind
        if kind == "dict":
            if not isinstance(value, dict):
                return "not a mapping"
            return self._name_problem(value) if self.plain_names else None
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
            return self._name_problem([value]) if self.plain_names else None
        return self._range_problem(value)

    def _range_problem(self, value: float) -> str | None:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return "too small"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return "too large"
        return None

    @staticmethod
    def _name_problem(names: Any) -> str | None:
        for name in names:
            try:
                check_plain_name(name, "name")
            except ValueError:
                return f"{name!r} is not a plain name: it becomes a file name, so no '/', '..' or absolute path"
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
    from softlab.arms import known_arms

    return known_arms()


def _resample_sources() -> tuple[str, ...]:
    from softlab.experiment import RESAMPLE_SOURCES

    return tuple(RESAMPLE_SOURCES)


def _known_conditions() -> tuple[str, ...]:
    import softlab.labels

    return tuple(getattr(softlab.labels, "TRAINABLE_CONDITIONS", softlab.labels.ALL_CONDITIONS))


MODEL_KINDS = ("mlp", "cnn")  # softlab.models.ModelConfig.kind (not imported here: that would load torch)
# softlab.train.PRECISIONS / COMPILE_MODES (not imported: torch); tests/test_train.py checks they agree
TRAIN_PRECISIONS = ("float32", "bfloat16")
TRAIN_COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
TRAIN_DEVICES = ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(16)))  # softlab.runtime.resolve_device

#: Every count has an upper bound too: a huge value (``seeds=1000000000``) is a typo, refused
#: in one line instead of a MemoryError after minutes. Sizes: at most this many items.
MAX_ITEMS = 10_000_000

#: The range of every parameter that has one: name -> rule. One line per parameter; a
#: parameter without a line still gets the type check against its notebook default.
RULES: dict[str, Rule] = {
    "params_name": Rule("str", non_empty=True, plain_names=True, note="results/<params_name>/ is its folder"),
    "n_examples": integer(1, MAX_ITEMS),
    "arms": subset_of(_known_arms),
    "pool_size": integer(0, MAX_ITEMS, note="0 = the whole pool"),
    "mnist_pool_size": integer(0, MAX_ITEMS, note="0 = all test images"),
    "synthetic_items": integer(1, MAX_ITEMS),
    "folds": integer(2, 100),
    "seeds": integer(1, 10_000),
    "epochs": integer(1, 10_000),
    "model": one_of(MODEL_KINDS),
    "hidden": integer(1, 65_536),
    "batch_size": integer(1, MAX_ITEMS),
    "lr": number(0, 10, low_open=True),
    "teacher_epochs": integer(1, 10_000),
    "teacher_train_items": integer(0, 60000, note="0 = all"),
    "generator_epochs": integer(1, 10_000),
    "generator_train_items": integer(0, 60000, note="0 = all"),
    "disjoint_size": integer(0, MAX_ITEMS, note="0 = the whole disjoint split"),
    "n_boot": integer(1, 1_000_000),
    "progress": flag(),
    "synthetic_mode_shift": number(0, 0.5),
    "n_teachers": integer(1, 100),
    "calibration_fraction": number(0, 0.5, low_open=True, high_open=True),
    "record_dynamics": flag(),
    "run_folds": integer(0, 100, note="0 = all folds; at most folds"),
    "conditions": subset_of(_known_conditions, non_empty=False),
    "votes": Rule("dict", plain_names=True, note="arm name -> votes table"),
    "device": one_of(TRAIN_DEVICES),
    "precision": one_of(TRAIN_PRECISIONS),
    "compile_mode": one_of(TRAIN_COMPILE_MODES),
    # annotation budgets and the robustness grid (softlab.budgets, softlab.robustness)
    "votes_per_item": integer(0, 100_000, note="0 = all votes of every item"),
    "annotated_fraction": number(0, 1, low_open=True),
    "robustness": Rule("dict", note="the robustness grid: models, epochs, lr, hidden, votes_per_item, ..."),
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
    """Read a parameter set (strict YAML, :func:`softlab.yamlio.load_yaml`: duplicated keys,
    aliases and non-UTF-8 bytes are refused); an error names the file and line."""
    path = params_path(name_or_path)
    try:  # strict: a duplicated key (seeds twice) is refused instead of silently last-wins
        data = load_yaml(Path(path), what="parameter set")
    except YamlError as exc:
        raise ParameterError(str(exc)) from None
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


def check_votes_tables(values: dict[str, Any]) -> None:
    """Read and check every votes table of the ``votes`` parameter now, as its arm will read it
    (:func:`softlab.data.votes.load_votes` on the test split), so that a bad file is refused
    before any training rather than after all other runs trained. Errors become ParameterError."""
    from softlab.data.annotations import AnnotationError
    from softlab.data.votes import load_votes

    for name, spec in (values.get("votes") or {}).items():
        entry = {"path": spec} if isinstance(spec, (str, Path)) else spec
        if not isinstance(entry, dict) or not Path(str(entry.get("path", ""))).expanduser().is_file():
            continue  # check_config has reported a bad entry or a missing file with its own message
        path = Path(str(entry["path"])).expanduser()
        images = str(entry.get("images", entry.get("dataset", "mnist")))  # as experiment.votes_arm_config
        try:
            load_votes(path, images, "test")
        except (AnnotationError, ValueError, OSError) as exc:
            raise ParameterError(f"parameter 'votes': arm {name!r}: {' '.join(str(exc).split())}") from None


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
    check_votes_tables(params)
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
        return load_yaml(value, what="--set", name=f"{key or ''}={value}")
    except YamlError as exc:  # "--set KEY=VALUE, line 1: invalid YAML: ..." -> the old one-line form
        head = f"--set {key or ''}={value}"
        problem = str(exc).removeprefix(head).removeprefix(", line 1").removeprefix(": ").removeprefix("invalid YAML: ")
        raise ParameterError(f"{head}: invalid YAML value ({problem})") from None
    except yaml.YAMLError as exc:
        where, problem = _yaml_problem(exc)
        raise ParameterError(
            f"--set {key or ''}={value}: invalid YAML value ({problem}{', ' + where if where else ''})"
        ) from None
