"""The pre-registration file ``params/claims.yml``, read: the tests of every arm and version.

:func:`load_claims` reads the file with the strict YAML loader (:mod:`softlab.yamlio`),
validates it against the pydantic models of :mod:`softlab.inference.schema` (unknown keys, wrong
types — ``version: true`` is not ``1`` — and missing fields are refused) and returns
:class:`Claims`, the parsed tests per arm.
Every error is one :class:`ClaimsError` line naming the file, the claim/arm/test and the field::

    params/claims.yml: claim 1, arm 'fashion-mnist', test 'x': field 'margin.value': expected a positive
    finite number, got -1   (one line; wrapped here)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from softlab.inference.schema import (
    KINDS,
    POST_HOC_SUFFIX,
    VERSIONS,
    ClaimsFile,
    TestModel,
    known_conditions,
)
from softlab.paths import PROJECT_ROOT
from softlab.yamlio import YamlError, load_yaml

__all__ = [
    "CLAIMS_PATH",
    "KINDS",
    "VERSIONS",
    "Amendment",
    "ArmRule",
    "Claims",
    "ClaimsError",
    "ClaimsFile",
    "Settings",
    "TestSpec",
    "known_conditions",
    "load_claims",
    "validate_claims_for",
]


CLAIMS_PATH: Path = PROJECT_ROOT / "params" / "claims.yml"


class ClaimsError(ValueError):
    """``claims.yml`` is malformed; the message names the file, the test and the field."""


# ----------------------------------------------------------------------------------------------
# What the rest of the package reads
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSpec:
    """One pre-registered test (a row of the verdict table)."""

    __test__ = False  # not a pytest test class

    claim: str
    name: str
    primary: bool
    kind: str
    metric: str
    stratum: str
    condition: str
    comparators: tuple[str, ...]
    comparator_rule: str  # "single" or "best"
    direction: str
    margin: float
    margin_scale: str  # "absolute" or "relative"
    rationale: str
    split: str = "heldout"  # "heldout" (pooled out-of-fold) or "disjoint" (the evaluation sample)
    primary_versions: tuple[int, ...] = ()  # the pre-registration versions in which it is primary
    registered: int = 1  # the version that made it primary (1 for exploratory tests)

    def primary_in(self, version: int) -> bool:
        return version in self.primary_versions


@dataclass(frozen=True)
class Amendment:
    """One dated change of the pre-registration."""

    version: int
    date: date
    changed: str
    reason: str


@dataclass(frozen=True)
class ArmRule:
    role: str  # "verdict" or "descriptive"
    tests_of: str


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    confidence: float = 0.95
    equivalence_confidence: float = 0.90
    min_seeds: int = 10
    power: float = 0.8
    item_groups: int = 20
    item_group_seed: int = 0


@dataclass(frozen=True)
class Claims:
    """The parsed pre-registration: settings, arm rules and, per arm, its tests."""

    path: Path
    settings: Settings
    statements: Mapping[str, str]
    arms: Mapping[str, ArmRule]
    tests: Mapping[str, tuple[TestSpec, ...]]  # arm name -> its tests (primary and exploratory)
    version: int = 1  # the latest version; ``TestSpec.primary`` means primary in this version
    amendments: tuple[Amendment, ...] = ()

    def rule(self, arm: str) -> ArmRule:
        if arm in self.arms:
            return self.arms[arm]
        if "*" in self.arms:
            return self.arms["*"]
        raise ClaimsError(f"{self.path}: arm {arm!r} is not listed under 'arms' and there is no '*' rule")

    def tests_for(self, arm: str) -> tuple[ArmRule, tuple[TestSpec, ...]]:
        rule = self.rule(arm)
        return rule, self.tests[rule.tests_of]

    def primary_only(self) -> Claims:
        """The same claims with the exploratory tests dropped."""
        tests = {a: tuple(t for t in ts if t.primary_versions) for a, ts in self.tests.items()}
        return Claims(self.path, self.settings, self.statements, self.arms, tests, self.version, self.amendments)


def _spec(test: TestModel, claim: str, versions: tuple[int, ...], latest: int) -> TestSpec:
    return TestSpec(
        claim=claim,
        name=test.name,
        primary=latest in versions,
        kind=test.kind,
        metric=test.metric,
        stratum=test.stratum,
        condition=test.condition,
        comparators=test.comparators,
        comparator_rule="single" if isinstance(test.comparator, str) else "best",
        direction=test.direction,
        margin=float(test.margin.value),
        margin_scale=test.margin.scale,
        rationale=" ".join(test.rationale.split()),
        split=test.split,
        primary_versions=versions,
        registered=test.registered if versions else 1,
    )


# ----------------------------------------------------------------------------------------------
# Errors in words
# ----------------------------------------------------------------------------------------------


_UNION_TAGS = frozenset({"str", "BestOfModel"})


def _where(loc: tuple[Any, ...], raw: Any) -> tuple[str, str]:
    """(``claim 1, arm 'x', test 'y'``, dotted field) for a pydantic error location in ``raw``."""
    parts: list[str] = []
    field: list[str] = []
    node = raw
    i = 0
    while i < len(loc):
        key = loc[i]
        nxt = (
            node.get(key)
            if isinstance(node, dict)
            else (node[key] if isinstance(node, list) and isinstance(key, int) and key < len(node) else None)
        )
        if not field and i == 0 and key == "claims" and i + 1 < len(loc):
            parts.append(f"claim {loc[i + 1]}")
            node = nxt.get(loc[i + 1]) if isinstance(nxt, dict) else None
            i += 2
            continue
        if not field and parts and key == "arms" and i + 1 < len(loc):
            parts.append(f"arm {loc[i + 1]!r}")
            node = nxt.get(loc[i + 1]) if isinstance(nxt, dict) else None
            i += 2
            continue
        if not field and i == 0 and key == "arms" and i + 1 < len(loc):
            parts.append(f"arms, arm {loc[i + 1]!r}")
            node = nxt.get(loc[i + 1]) if isinstance(nxt, dict) else None
            i += 2
            continue
        if not field and key in ("primary", "exploratory") and isinstance(nxt, dict):
            nxt = [nxt]  # a version-1 primary: one test, read as a list of one
        if not field and key in ("primary", "exploratory") and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            test = nxt[loc[i + 1]] if isinstance(nxt, list) and loc[i + 1] < len(nxt) else None
            name = test.get("name") if isinstance(test, dict) else None
            parts.append(f"test {name!r}" if name else f"{key} test {loc[i + 1] + 1}")
            node = test
            i += 2
            continue
        if isinstance(key, str) and key not in _UNION_TAGS and not key.startswith("function-"):
            field.append(key)
        node = nxt
        i += 1
    return ", ".join(parts), ".".join(field)


def _message(exc: ValidationError, raw: Any, path: Path) -> str:
    errors = exc.errors(include_url=False)
    # a value that fits neither branch of ``str | {best_of: ...}``: report the branch its type chose
    errors = [
        e for e in errors if not (isinstance(e.get("input"), dict) and "str" in e["loc"] and len(errors) > 1)
    ] or errors
    err = errors[0]
    where, field = _where(tuple(err["loc"]), raw)
    msg = re.sub(r" or instance of \w+", "", str(err["msg"]).removeprefix("Value error, "))
    if err["type"] == "extra_forbidden":
        msg = f"unknown field {field.rsplit('.', 1)[-1]!r}"
        field = field.rsplit(".", 1)[0] if "." in field else ""
    elif err["type"] == "missing":
        return f"{path}: " + (f"{where}: " if where else "") + f"field {field!r} is missing"
    elif "input" in err and err["type"] not in ("value_error",):
        msg = f"{msg}, got {err['input']!r}"
    head = f"{path}: " + (f"{where}: " if where else "")
    if field and not msg.startswith(("field ", "test ")):
        return f"{head}field {field!r}: {msg}"
    return f"{head}{msg}"


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def load_claims(path: str | Path | None = None) -> Claims:
    """Read and validate the pre-registration file (default ``params/claims.yml``).

    Raises :class:`ClaimsError` naming the file, the claim/arm/test and the field for anything
    malformed: strict-YAML violations (duplicated keys, anchors, non-UTF-8), unknown fields,
    wrong types, unknown metrics, strata, conditions, comparators or directions, margins that
    are not positive and finite (or relative margins of 1 and more), missing rationale, not exactly
    one primary test per claim and verdict arm, an arm rule pointing at an arm without tests.
    """
    p = Path(path) if path is not None else CLAIMS_PATH
    try:
        raw = load_yaml(p, what="claims file")
    except YamlError as exc:
        raise ClaimsError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ClaimsError(f"{p}: expected a mapping with 'version', 'settings', 'arms' and 'claims'")
    try:
        model = ClaimsFile.model_validate(raw)
    except ValidationError as exc:
        raise ClaimsError(_message(exc, raw, p)) from None

    statements = {cid: " ".join(c.statement.split()) for cid, c in model.claims.items()}
    tests: dict[str, list[TestSpec]] = {}
    for cid, c in model.claims.items():
        for arm, block in c.arms.items():
            arm_tests = tests.setdefault(arm, [])
            for pt in block.primaries:
                until = pt.superseded if pt.superseded is not None else model.version + 1
                arm_tests.append(_spec(pt, cid, tuple(range(pt.registered, until)), model.version))
            arm_tests.extend(_spec(et, cid, (), model.version) for et in block.exploratory)
    for arm, ts in tests.items():
        seen: set[str] = set()
        for t in ts:
            if t.name in seen:
                raise ClaimsError(
                    f"{p}: arm {arm!r}, test {t.name!r}: field 'name': test names must be unique within an arm"
                )
            seen.add(t.name)
    arms: dict[str, ArmRule] = {}
    for arm, rule in model.arms.items():
        tests_of = rule.tests_of if rule.tests_of is not None else arm
        if tests_of not in tests:
            raise ClaimsError(f"{p}: arms, arm {arm!r}: field 'tests_of': no tests are declared for arm {tests_of!r}")
        arms[arm] = ArmRule(rule.role, tests_of)
    for arm in tests:
        if arm not in arms:
            raise ClaimsError(f"{p}: arm {arm!r} has tests under 'claims' but no rule under 'arms'")
        if arms[arm].role != "verdict":
            continue
        for claim in statements:
            of_claim = [t for t in tests[arm] if t.claim == claim]
            registered_v1 = any(t.claim == claim and t.primary_in(1) for ts in tests.values() for t in ts)
            if registered_v1 and sum(t.primary_in(1) for t in of_claim) != 1:
                raise ClaimsError(f"{p}: claim {claim}, arm {arm!r}: expected exactly one primary test in version 1")
            if not any(t.primary for t in of_claim):
                raise ClaimsError(
                    f"{p}: claim {claim}, arm {arm!r}: expected exactly one primary test (at least one from "
                    f"version 2 on) in version {model.version}"
                )
    s = model.settings
    settings = Settings(
        s.alpha, s.confidence, s.equivalence_confidence, s.min_seeds, s.power, s.item_groups, s.item_group_seed
    )
    amendments = tuple(
        Amendment(a.version, a.date, " ".join(a.changed.split()), " ".join(a.reason.split())) for a in model.amendments
    )
    return Claims(p, settings, statements, arms, {a: tuple(ts) for a, ts in tests.items()}, model.version, amendments)


def validate_claims_for(
    arm_conditions: Mapping[str, Sequence[str]], claims: Claims | str | Path | None = None
) -> Claims:
    """Check, before anything trains, that the claims file is valid and that every primary test of
    every verdict arm can run with the conditions a parameter set trains.

    ``arm_conditions`` maps each arm the set will build to the label conditions it trains (every
    condition also gets its ``+ts`` twin). ``claims`` is a parsed :class:`Claims` or a path
    (default ``params/claims.yml``, read with :func:`load_claims`). Raises :class:`ClaimsError`
    (one line) for an arm without a rule (and no ``'*'`` rule) or a primary test whose condition
    or any comparator is not trained — such a test would silently not run and the family would
    shrink. Exploratory tests may be missing. Returns the parsed claims.
    """
    parsed = claims if isinstance(claims, Claims) else load_claims(claims)
    for arm, conditions in arm_conditions.items():
        rule, tests = parsed.tests_for(arm)
        if rule.role != "verdict":
            continue
        available = set(conditions) | {c + POST_HOC_SUFFIX for c in conditions}
        for test in tests:
            missing = [c for c in (test.condition, *test.comparators) if c not in available]
            if test.primary and missing:
                raise ClaimsError(
                    f"{parsed.path}: arm {arm!r}, primary test {test.name!r}: condition(s) {missing} are not "
                    f"trained by this parameter set (it trains {sorted(conditions)}); add them to "
                    "`conditions` or amend the claims file"
                )
    return parsed
