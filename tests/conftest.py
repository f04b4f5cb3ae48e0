"""Fixtures shared by several test modules (one definition each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def use_cache(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """``use_cache(folder)`` points ``SOFTLAB_CACHE_DIR`` at ``folder`` for the rest of the test."""

    def _use(folder: Path) -> None:
        monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(folder))

    return _use


@pytest.fixture
def forbid(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, str, str], None]:
    """``forbid(module, "name", "why")`` replaces ``module.name`` by a function that fails the test
    with ``why`` when called (e.g. a trainer that must not run because its result is cached)."""

    def _forbid(module: object, name: str, why: str) -> None:
        def boom(*args: object, **kwargs: object) -> None:
            raise AssertionError(why)

        monkeypatch.setattr(module, name, boom)

    return _forbid
