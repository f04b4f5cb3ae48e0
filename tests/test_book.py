"""The Jupyter Book builds with warnings as errors (-W -n --keep-going), from the book's pages
and the executed smoke notebooks committed in tests/expected/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from softlab.paths import PROJECT_ROOT


def _toc_files() -> list[str]:
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def test_book_builds_strictly(tmp_path):
    # Build a copy so the test never touches the user's _build/ folder.
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "*.ipynb", ".*"))
    for nb in (PROJECT_ROOT / "tests" / "expected").glob("*.ipynb"):  # the executed smoke notebooks
        shutil.copy(nb, root / "book" / nb.name)
    missing = [f for f in _toc_files() if not any((root / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"chapters listed in _toc.yml but missing: {missing}"
    exe = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(exe), "build", str(root), "-W", "-n", "--keep-going"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (root / "_build" / "html" / "index.html").exists()
