"""The layer order holds at import time too: the layers that compute numbers from arrays import
neither torch nor a plotting library, and nothing imports a module above its own layer
(the full contract: ``lint-imports``, configured in pyproject.toml and run by ``make lint``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "matplotlib", "seaborn")
# every layer up to the torch-side models, and what each may not pull in from above
ARRAY_LAYERS = (
    "softlab.validation",
    "softlab.data",
    "softlab.labels",
    "softlab.metrics",
    "softlab.stats",
    "softlab.cartography",
    "softlab.posthoc",
    "softlab.evaluation",
    "softlab.inference",
)
ABOVE_THE_ANALYSIS = (
    "models",
    "train",
    "distributed",
    "store",
    "generator",
    "teachers",
    "experiment",
    "report",
    "plots",
)


@pytest.mark.parametrize("module", ARRAY_LAYERS)
def test_array_layers_import_no_torch_and_nothing_above_them(module):
    code = (
        f"import sys, {module}\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        f"names = {['softlab.' + a for a in ABOVE_THE_ANALYSIS]!r}\n"
        "above = sorted(m for m in sys.modules if '.'.join(m.split('.')[:2]) in names)\n"
        "assert not heavy and not above, (heavy, above)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
