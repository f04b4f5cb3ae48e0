"""Where softlab keeps things. Every location can be overridden by an environment variable.

- ``SOFTLAB_DATA_DIR``: verified image files (default ``~/.cache/softlab/data``).
- ``SOFTLAB_HUMAN_DIR``: a local folder with the public human-label files (checked before
  the project's sibling ``../shared/data/human``).
- ``SOFTLAB_CACHE_DIR``: cached expensive results: teachers, generators, training runs
  (default ``~/.cache/softlab/cache``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "softlab"


def data_dir() -> Path:
    env = os.environ.get("SOFTLAB_DATA_DIR")
    return Path(env).expanduser() if env else _user_cache() / "data"


def cache_dir() -> Path:
    env = os.environ.get("SOFTLAB_CACHE_DIR")
    return Path(env).expanduser() if env else _user_cache() / "cache"


def human_dirs() -> list[Path]:
    """Local folders searched for human-label files, in order."""
    dirs: list[Path] = []
    env = os.environ.get("SOFTLAB_HUMAN_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(data_dir() / "human")
    dirs.append(PROJECT_ROOT.parent / "shared" / "data" / "human")
    return dirs


def recorded_dir() -> Path:
    """Results of long runs recorded with their provenance and tracked in git (``recorded/``):
    a chapter shows one where this machine's cache does not hold the run (the 1,100-seed
    ``stability`` set takes about an hour on 2 cores, too long for the book's 20 minutes)."""
    env = os.environ.get("SOFTLAB_RECORDED_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / "recorded"


def results_dir() -> Path:
    env = os.environ.get("SOFTLAB_RESULTS_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / "results"


def check_writable(folder: Path, name: str) -> Path:
    """``folder`` after checking that files can be created in it (creating it if needed); else
    a one-line :class:`ValueError` naming ``name`` (the environment
    variable that sets it), so an unwritable cache is refused before anything trains instead of
    failing when the first trained run is saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".softlab-write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{name} {folder}: cannot write there ({reason}); point {name} at a writable folder") from None
    return folder
