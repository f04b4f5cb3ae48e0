"""Debian Chromium for the browser tests (tests/test_annotate_browser.py, tests/test_book_browser.py):
where it lives, the flags that keep it off the network (this machine's closed network refuses
background connections), and the one skip policy when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip the calling test module when Debian's chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
            allow_module_level=True,
        )


def launch(playwright: Any) -> Any:
    """A headless Chromium browser with the project's flags."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
