"""The book, built once per test session from executed smoke notebooks, for tests/test_book.py
and tests/test_book_browser.py.

The notebooks come from ``tests/expected/`` (the committed smoke run), or from the folder named
by ``SOFTLAB_BOOK_NOTEBOOKS`` (e.g. a fresh ``run_notebooks('smoke', out_dir=...)`` while the
committed copies are being regenerated). The strict build (``-W -n --keep-going``) runs in a
temporary copy of the project's book files, never in the user's ``_build/``. Under pytest-xdist
both test modules may run on different workers: the first to arrive builds, under a file lock in
the session's shared temporary folder, and the other reuses that build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from softlab.paths import PROJECT_ROOT

BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")


def notebooks_dir() -> Path:
    env = os.environ.get("SOFTLAB_BOOK_NOTEBOOKS")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "tests" / "expected"


def toc_files() -> list[str]:
    """Every document of ``_toc.yml``, root first (paths without suffix, e.g. ``book/04_training``)."""
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict] | None) -> None:
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def _inputs() -> list[Path]:
    book = PROJECT_ROOT / "book"
    pages = [
        p
        for p in sorted(book.rglob("*"))
        if p.is_file()
        and "_build" not in p.parts
        and p.suffix != ".ipynb"
        and not any(part.startswith(".") for part in p.relative_to(book).parts)
    ]
    sources = sorted((PROJECT_ROOT / "softlab").rglob("*.py"))  # the API page documents them
    return [PROJECT_ROOT / f for f in BOOK_FILES] + pages + sorted(notebooks_dir().glob("*.ipynb")) + sources


def _fingerprint() -> str:
    h = hashlib.sha256()
    for path in _inputs():
        h.update(str(path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltBook:
    root: Path  # the temporary project copy
    returncode: int
    log: str
    missing: list[str]  # documents of _toc.yml with no page or notebook

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"


def build_book(root: Path) -> BuiltBook:
    """Copy the book's files and the executed notebooks into ``root`` and build it strictly."""
    root.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(
        PROJECT_ROOT / "book",
        root / "book",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("_build", "*.ipynb", ".*", "__pycache__"),
    )
    for nb in notebooks_dir().glob("*.ipynb"):
        shutil.copy(nb, root / "book" / nb.name)
    missing = [f for f in toc_files() if not any((root / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    exe = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(exe), "build", str(root), "-W", "-n", "--keep-going"], capture_output=True, text=True, check=False
    )
    return BuiltBook(root, proc.returncode, proc.stdout[-6000:] + proc.stderr[-6000:], missing)


def shared_book(tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    """One strict build per session and input fingerprint, shared between xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, common to all workers
    root = base / f"book-{_fingerprint()}"
    done = root.with_suffix(".json")
    with open(base / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return BuiltBook(root=root, **json.loads(done.read_text()))
        if root.exists():
            shutil.rmtree(root)
        book = build_book(root)
        done.write_text(json.dumps({"returncode": book.returncode, "log": book.log, "missing": book.missing}))
        return book


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    return shared_book(tmp_path_factory)
