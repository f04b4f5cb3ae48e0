"""Hypothesis budgets of the fault-and-fuzz suite (issue 25).

Fast profile (default, what ``make test`` runs: the whole suite adds well under a minute on two
cores); long profile on demand: ``SOFTLAB_FUZZ=long`` (every example count x 25) for example
``SOFTLAB_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz_*.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings

LONG = os.environ.get("SOFTLAB_FUZZ", "").strip().lower() == "long"


def fuzz(examples: int, shrink: bool = True) -> Callable[[Any], Any]:
    """``@fuzz(n)``: ``n`` examples in the fast profile, ``25 n`` in the long one; no deadline.
    ``shrink=False`` for a test expected to fail for now (xfail): shrinking would cost minutes."""
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(
        phases=phases,
        max_examples=examples * 25 if LONG else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=not LONG,  # CI sees the same examples every run; the long profile explores
    )


def one_line(message: str) -> bool:
    """A refusal a person can read: one line, no traceback."""
    return "\n" not in message.strip() and "Traceback" not in message
