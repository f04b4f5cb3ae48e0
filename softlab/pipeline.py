"""Execute the notebooks with papermill into ``book/`` and build the HTML book.

``run_notebooks("smoke")`` validates the parameter set against every notebook's ``parameters``
cell *before* running anything, then executes ``notebooks/NN_*.ipynb`` in order into
``book/NN_*.ipynb`` (written atomically: a failed run leaves the previous copy untouched and
the failed copy beside it as ``book/failed-NN_*.ipynb``). ``build_book()`` runs Jupyter Book 1.x
with warnings as errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from softlab.params import NOTEBOOKS_DIR, coerce_override, load_params, validate
from softlab.paths import PROJECT_ROOT

BOOK_DIR = PROJECT_ROOT / "book"
KERNEL = "python3"


def notebook_paths(only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    paths = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
        if not paths:
            raise ValueError(f"only: no notebook matches {only}")
    return paths


def run_notebooks(params: str | dict[str, Any], only: list[str] | None = None, overrides: dict[str, str] | None = None,
                  out_dir: Path = BOOK_DIR, notebooks_dir: Path = NOTEBOOKS_DIR, progress: bool = True) -> list[Path]:
    import papermill as pm

    values = dict(load_params(params)) if isinstance(params, str) else dict(params)
    for k, v in (overrides or {}).items():
        values[k] = coerce_override(v)
    paths = notebook_paths(only, notebooks_dir)
    per_notebook = validate(values, paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in paths:
        dest = out_dir / src.name
        tmp = out_dir / f".{src.stem}.running.ipynb"
        start = time.time()
        print(f"[softlab run] {src.name} with {per_notebook[src]}", flush=True)
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=per_notebook[src], kernel_name=KERNEL,
                                cwd=str(notebooks_dir), progress_bar=progress)
        except Exception:
            if tmp.exists():
                os.replace(tmp, out_dir / f"failed-{src.name}")
            raise
        os.replace(tmp, dest)
        print(f"[softlab run] {src.name} done in {time.time() - start:.1f} s", flush=True)
        written.append(dest)
    return written


def build_book(strict: bool = True, root: Path = PROJECT_ROOT) -> int:
    """``jupyter-book build`` the project root (``_config.yml``/``_toc.yml``) into ``_build/html``."""
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe is None:
        raise RuntimeError("jupyter-book is not installed; run `make setup`")
    cmd = [exe, "build", str(root), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("[softlab book]", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)
