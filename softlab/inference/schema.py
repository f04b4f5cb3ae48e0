"""The schema of ``params/claims.yml`` as strict pydantic models (``extra="forbid"``, strict types).

Only the shape and the values of single fields and tests are checked here (unknown keys, wrong
types, unknown metrics, strata and conditions, margins, the bound kind's rules, amendments);
:mod:`softlab.inference.claims` turns a validated :class:`ClaimsFile` into the tests per arm, checks
what spans tests (one primary test per claim and arm, unique names, arm rules) and words errors.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from softlab import labels
from softlab.inference.registry import METRICS, OFFICIAL_LABEL_METRICS
from softlab.stats import STRATA

__all__ = [
    "KINDS",
    "POST_HOC_SUFFIX",
    "VERSIONS",
    "AmendmentModel",
    "ArmRuleModel",
    "BestOfModel",
    "ClaimArmModel",
    "ClaimModel",
    "ClaimsFile",
    "MarginModel",
    "SettingsModel",
    "TestModel",
    "known_conditions",
]

KINDS: tuple[str, ...] = ("difference", "variance_ratio", "bound")
VERSIONS: tuple[int, ...] = (1, 2)
"""Pre-registration versions this code reads (the file's ``version`` is the latest it holds)."""
POST_HOC_SUFFIX = "+ts"


def known_conditions() -> tuple[str, ...]:
    """Every condition name a test may use: the label conditions of :mod:`softlab.labels` (read
    when called, so conditions added there are known here) and their temperature-scaled ``+ts``
    variants."""
    base = tuple(getattr(labels, "ALL_CONDITIONS", labels.CONDITIONS))
    return base + tuple(c + POST_HOC_SUFFIX for c in base)


def _check_condition(name: str) -> str:
    if name not in known_conditions():
        raise ValueError(
            f"unknown condition {name!r}; expected a label condition of softlab.labels or its '+ts' variant"
        )
    return name


# ----------------------------------------------------------------------------------------------
# The file's schema
# ----------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SettingsModel(_Strict):
    """``settings:`` — the decision rule's constants."""

    alpha: float = 0.05
    confidence: float = 0.95
    equivalence_confidence: float = 0.90
    min_seeds: int = Field(default=10, ge=0)
    power: float = 0.8
    item_groups: int = Field(default=20, ge=0)
    item_group_seed: int = Field(default=0, ge=0)

    @field_validator("alpha", "confidence", "equivalence_confidence", "power")
    @classmethod
    def _probability(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"expected a number in (0, 1), got {v!r}")
        return v

    @field_validator("item_groups")
    @classmethod
    def _groups(cls, v: int) -> int:
        if v == 1:
            raise ValueError("expected 0 (no item jackknife) or at least 2, got 1")
        return v


class ArmRuleModel(_Strict):
    """``arms: <arm>:`` — whether the arm gets verdicts, and whose tests it runs."""

    role: Literal["verdict", "descriptive"]
    tests_of: str | None = None


class MarginModel(_Strict):
    """``margin:`` — the smallest effect of interest (equivalence margin)."""

    value: float
    scale: Literal["absolute", "relative"]

    @field_validator("value")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"expected a positive finite number, got {v!r}")
        return v


class BestOfModel(_Strict):
    """``comparator: {best_of: [...]}`` — the best of several baselines."""

    best_of: list[str] = Field(min_length=1)

    @field_validator("best_of")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        for c in v:
            _check_condition(c)
        if len(set(v)) != len(v):
            raise ValueError(f"a comparator is listed twice in {v}")
        return v


class TestModel(_Strict):
    """One test: ``name, kind, metric, stratum, condition, comparator, direction, margin, rationale``."""

    __test__ = False  # not a pytest test class

    name: str = Field(min_length=1)
    kind: Literal["difference", "variance_ratio", "bound"] = "difference"
    metric: str
    stratum: str
    split: Literal["heldout", "disjoint"] = "heldout"
    condition: str
    comparator: str | BestOfModel | None = None
    direction: Literal["lower", "higher", "within"]
    margin: MarginModel
    rationale: str = ""
    registered: int = Field(default=1, ge=1)
    superseded: int | None = Field(default=None, ge=2)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; known: {sorted(METRICS)}")
        return v

    @field_validator("stratum")
    @classmethod
    def _stratum(cls, v: str) -> str:
        if v not in STRATA:
            raise ValueError(f"expected one of {STRATA}, got {v!r}")
        return v

    @field_validator("condition")
    @classmethod
    def _condition(cls, v: str) -> str:
        return _check_condition(v)

    @field_validator("comparator")
    @classmethod
    def _comparator(cls, v: str | BestOfModel) -> str | BestOfModel:
        return _check_condition(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> TestModel:
        if self.kind == "bound":
            if self.comparator is not None or self.direction != "within" or self.margin.scale != "absolute":
                raise ValueError(
                    "field 'kind': a bound test has no comparator, direction 'within' and an absolute margin "
                    "(the bound on |value|)"
                )
        elif self.comparator is None:
            raise ValueError("field 'comparator' is missing")
        elif self.direction == "within":
            raise ValueError("field 'direction': 'within' is only defined for kind 'bound'")
        if self.split == "disjoint" and (self.stratum != "all" or self.metric not in OFFICIAL_LABEL_METRICS):
            raise ValueError(
                f"field 'split': the disjoint sample has official labels only: stratum 'all' and a metric of "
                f"{list(OFFICIAL_LABEL_METRICS)}"
            )
        if self.superseded is not None and self.superseded <= self.registered:
            raise ValueError(f"field 'superseded': expected a version after 'registered' ({self.registered})")
        comparators = self.comparators
        if self.condition in comparators:
            raise ValueError(f"field 'comparator': the condition {self.condition!r} cannot be its own comparator")
        if isinstance(self.comparator, BestOfModel) and self.kind != "difference":
            raise ValueError("field 'comparator': best_of is only defined for kind 'difference'")
        if self.margin.scale == "relative" and not self.margin.value < 1:
            raise ValueError(
                f"field 'margin': a relative margin must be below 1 (100% of the comparator), got {self.margin.value!r}"
            )
        if self.kind == "variance_ratio" and self.margin.scale != "relative":
            raise ValueError("field 'margin': a variance ratio needs a relative margin below 1")
        return self

    @property
    def comparators(self) -> tuple[str, ...]:
        if self.comparator is None:
            return ()
        return (self.comparator,) if isinstance(self.comparator, str) else tuple(self.comparator.best_of)


class ClaimArmModel(_Strict):
    """``claims: <id>: arms: <arm>:`` — the primary test(s) and the exploratory ones.

    In a version-1 file ``primary`` is one test; from version 2 it is a list whose tests say when
    they became primary (``registered``) and, once an amendment replaced them, from which version
    on they are not (``superseded``; they then run as exploratory tests)."""

    primary: list[TestModel] = Field(min_length=1)
    exploratory: list[TestModel] = []

    @field_validator("primary", mode="before")
    @classmethod
    def _one_as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @property
    def primaries(self) -> list[TestModel]:
        return self.primary

    @model_validator(mode="after")
    def _rationale(self) -> ClaimArmModel:
        for test in self.primaries:
            if not test.rationale.strip():
                raise ValueError(f"test {test.name!r}: field 'rationale': a primary test needs a one-line rationale")
        for test in self.exploratory:
            if test.superseded is not None or test.registered != 1:
                raise ValueError(f"test {test.name!r}: fields 'registered'/'superseded' belong to primary tests only")
        return self


class AmendmentModel(_Strict):
    """``amendments:`` — one dated entry per version after the first: what changed and why."""

    version: int = Field(ge=2)
    date: date
    changed: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class ClaimModel(_Strict):
    """``claims: <id>:`` — the claim in words and its tests per arm."""

    statement: str = Field(min_length=1)
    arms: dict[str, ClaimArmModel] = Field(min_length=1)


class ClaimsFile(_Strict):
    """The whole file."""

    version: int
    amendments: list[AmendmentModel] = []
    settings: SettingsModel = SettingsModel()
    arms: dict[str, ArmRuleModel] = Field(min_length=1)
    claims: dict[str, ClaimModel] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in VERSIONS:
            raise ValueError(f"expected one of {list(VERSIONS)}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _amended(self) -> ClaimsFile:
        versions = [a.version for a in self.amendments]
        if versions != list(range(2, self.version + 1)):
            raise ValueError(
                f"field 'amendments': expected one dated amendment for each version 2..{self.version} in order, "
                f"got versions {versions}"
            )
        for cid, claim in self.claims.items():
            for arm, block in claim.arms.items():
                for test in [*block.primaries, *block.exploratory]:
                    if test.registered > self.version or (test.superseded or 0) > self.version:
                        raise ValueError(
                            f"claim {cid}, arm {arm!r}, test {test.name!r}: field 'registered'/'superseded': "
                            f"the file is version {self.version}"
                        )
        return self

    @field_validator("claims", mode="before")
    @classmethod
    def _claim_ids_as_text(cls, v: Any) -> Any:
        return {str(k): c for k, c in v.items()} if isinstance(v, dict) else v
