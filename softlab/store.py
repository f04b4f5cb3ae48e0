"""Results cache for training runs, keyed by each run's full configuration.

A run's configuration is a JSON-able dict that the caller builds with *everything* that
determines its numbers — dataset and label-source versions, condition, seed, fold, model and
training hyper-parameters (``TrainConfig.key_dict()``). The store adds
``softlab.train.TRAINER_VERSION`` and hashes the result with ``softlab.io.config_key``:
re-running the same configuration loads the stored result instead of training.

Folder layout (``root`` defaults to ``softlab.paths.cache_dir() / "runs"``)::

    <root>/
      <key>/                 one COMPLETE run; the folder appears in one atomic rename
        config.json          the run configuration as given (+ "trainer_version")
        result.json          name, seed, meta, train config, diverged, diverged_epoch, message,
                             seconds, batch_members, array names and sizes
        arrays.npz           train_idx (int64), train_loss (float64, per epoch),
                             dynamics ((epochs, n_items, C), float16 unless configured),
                             eval__<set> ((n_eval, C) float32) for every evaluation set,
                             watch_idx / watch_dynamics / watch_probs when the run watched items
        COMPLETE             marker, written last inside the temporary folder
      .tmp/<key>.<pid>.<random>/
                             a run being written: never read; a killed writer leaves it
                             behind, ``clean_tmp`` removes stale ones
      runs.parquet           index, one row per stored run (``write_index``; the same table
                             as ``list_runs()``)

Atomicity: a run is written completely into ``.tmp/…`` (files fsynced, ``COMPLETE`` last),
then the folder is renamed to ``<root>/<key>`` (``os.rename``: atomic on POSIX, and it fails
rather than merge when another writer got there first). A process killed at any moment
therefore leaves either no ``<root>/<key>`` or a complete one. ``runs.parquet`` is replaced
atomically (``softlab.io.atomic_path``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softlab.io import atomic_path, config_key
from softlab.paths import cache_dir
from softlab.train import TRAINER_VERSION, MemberResult

COMPLETE_MARKER = "COMPLETE"
INDEX_FILE = "runs.parquet"
_EVAL_PREFIX = "eval__"

TrainFn = Callable[[list[dict[str, Any]]], Sequence[MemberResult]]


def _jsonable(obj: Any, where: str = "config") -> Any:
    """A JSON-ready copy of ``obj``; ValueError naming the offending entry otherwise."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"{where}: expected JSON-able values (dict, list, str, number, bool, None), "
                     f"got {type(obj).__name__}; store a version string or hash instead")


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON and fsync it (inside a run's temporary folder)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, allow_nan=True)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → flat ``a.b.c`` columns; lists become JSON strings (Parquet-safe)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{name}."))
        elif isinstance(v, list):
            out[name] = json.dumps(v)
        else:
            out[name] = v
    return out


class RunStore:
    """Cache of training runs under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_root = self.root / ".tmp"

    # ------------------------------------------------------------------ keys and paths
    @staticmethod
    def full_config(config: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration that is hashed and stored: ``config`` + ``trainer_version``."""
        cfg = _jsonable(dict(config))
        if "trainer_version" in cfg and cfg["trainer_version"] != TRAINER_VERSION:
            raise ValueError(f"config['trainer_version']: {cfg['trainer_version']!r} differs from this trainer's "
                             f"{TRAINER_VERSION!r}; leave it out, the store adds it")
        cfg["trainer_version"] = TRAINER_VERSION
        return cfg

    def key(self, config: Mapping[str, Any]) -> str:
        """The run's key: ``config_key(full_config(config))`` (16 hex digits)."""
        return config_key(self.full_config(config))

    def path(self, config: Mapping[str, Any]) -> Path:
        return self.root / self.key(config)

    def _is_complete(self, run_dir: Path) -> bool:
        return (run_dir / COMPLETE_MARKER).is_file()

    def has(self, config: Mapping[str, Any]) -> bool:
        return self._is_complete(self.path(config))

    def keys(self) -> list[str]:
        """Keys of every complete stored run (sorted)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and self._is_complete(p))

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, config: Mapping[str, Any]) -> bool:
        return self.has(config)

    # ------------------------------------------------------------------ write
    def save(self, config: Mapping[str, Any], result: MemberResult) -> Path:
        """Store ``result`` under ``config`` atomically; returns the run folder.

        If a complete run with the same key already exists it is kept and this one discarded.
        """
        full = self.full_config(config)
        key = config_key(full)
        dest = self.root / key
        if self._is_complete(dest):
            return dest
        arrays: dict[str, np.ndarray] = {
            "train_idx": np.asarray(result.train_idx, dtype=np.int64),
            "train_loss": np.asarray(result.train_loss, dtype=np.float64),
        }
        if result.dynamics is not None:
            arrays["dynamics"] = np.asarray(result.dynamics)
        for name in ("watch_idx", "watch_dynamics", "watch_probs"):
            value = getattr(result, name)
            if value is not None:
                arrays[name] = np.asarray(value)
        for name, probs in result.eval_probs.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"result.eval_probs: set names must be non-empty strings without '/', got {name!r}")
            arrays[_EVAL_PREFIX + name] = np.asarray(probs, dtype=np.float32)
        summary = {
            "key": key,
            "name": result.name,
            "seed": int(result.seed),
            "meta": _jsonable(result.meta, "result.meta"),
            "train_config": _jsonable(result.config, "result.config"),
            "diverged": bool(result.diverged),
            "diverged_epoch": result.diverged_epoch,
            "message": result.message,
            "seconds": float(result.seconds),
            "batch_members": int(result.batch_members),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "eval_sets": sorted(result.eval_probs),
            "trainer_version": TRAINER_VERSION,
            "created_unix": time.time(),
        }
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_root / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            with open(tmp / "arrays.npz", "wb") as fh:
                np.savez_compressed(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            _write_json(tmp / "config.json", full)
            _write_json(tmp / "result.json", summary)
            _write_json(tmp / COMPLETE_MARKER, {"key": key})
            _fsync_dir(tmp)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not self._is_complete(dest):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another writer finished the same run first
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    # ------------------------------------------------------------------ read
    def load_key(self, key: str) -> MemberResult:
        """The stored ``MemberResult`` of run ``key`` (KeyError if absent or incomplete)."""
        run_dir = self.root / key
        if not self._is_complete(run_dir):
            raise KeyError(f"run {key} is not in the store at {self.root}")
        summary = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        with np.load(run_dir / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return MemberResult(
            name=summary["name"], seed=summary["seed"], meta=summary["meta"], config=summary["train_config"],
            train_idx=arrays["train_idx"], train_loss=arrays["train_loss"], dynamics=arrays.get("dynamics"),
            eval_probs={k[len(_EVAL_PREFIX):]: v for k, v in arrays.items() if k.startswith(_EVAL_PREFIX)},
            diverged=summary["diverged"], diverged_epoch=summary["diverged_epoch"], message=summary["message"],
            seconds=summary["seconds"], batch_members=summary["batch_members"],
            watch_idx=arrays.get("watch_idx"), watch_dynamics=arrays.get("watch_dynamics"),
            watch_probs=arrays.get("watch_probs"))

    def load(self, config: Mapping[str, Any]) -> MemberResult:
        return self.load_key(self.key(config))

    def load_config(self, key: str) -> dict[str, Any]:
        """The stored full configuration of run ``key``."""
        return json.loads((self.root / key / "config.json").read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ train-or-load
    def get_or_train(self, run_configs: Sequence[Mapping[str, Any]], train_fn: TrainFn,
                     chunk_size: int | None = None, write_index: bool = True) -> list[MemberResult]:
        """Results for every configuration, training only those not stored yet.

        ``train_fn(configs)`` receives the missing configurations (duplicates removed, in
        order; at most ``chunk_size`` per call, all at once when None — one batched training
        call) and must return one ``MemberResult`` per configuration, in the same order. Each
        chunk is stored as soon as it returns, so an interrupted call keeps finished chunks.
        """
        configs = [dict(c) for c in run_configs]
        keys = [self.key(c) for c in configs]
        fresh: dict[str, MemberResult] = {}
        missing: list[int] = []
        seen: set[str] = set()
        for i, k in enumerate(keys):
            if k not in seen and not self._is_complete(self.root / k):
                missing.append(i)
            seen.add(k)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size: expected None or >= 1, got {chunk_size!r}")
        step = chunk_size or max(len(missing), 1)
        for a in range(0, len(missing), step):
            chunk = missing[a:a + step]
            results = list(train_fn([configs[i] for i in chunk]))
            if len(results) != len(chunk):
                raise ValueError(f"train_fn returned {len(results)} results for {len(chunk)} configurations")
            for i, res in zip(chunk, results):
                if not isinstance(res, MemberResult):
                    raise ValueError(f"train_fn must return MemberResult objects, got {type(res).__name__}")
                self.save(configs[i], res)
                fresh[keys[i]] = res
        if missing and write_index:
            self.write_index()
        return [fresh[k] if k in fresh else self.load_key(k) for k in keys]

    # ------------------------------------------------------------------ tables
    def list_runs(self) -> pd.DataFrame:
        """One row per complete stored run.

        Columns: ``run_key``, ``run_name``, ``run_diverged``, ``run_bytes`` (folder size),
        ``run_created`` (UTC timestamp), ``run_trainer_version``, then the configuration
        flattened to ``a.b`` columns (lists as JSON strings).
        """
        rows = []
        for key in self.keys():
            run_dir = self.root / key
            try:
                config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
                summary = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"run folder {run_dir} is marked complete but unreadable: {exc}") from exc
            row = {
                "run_key": key,
                "run_name": summary["name"],
                "run_diverged": summary["diverged"],
                "run_bytes": sum(f.stat().st_size for f in run_dir.iterdir() if f.is_file()),
                "run_created": pd.Timestamp(summary["created_unix"], unit="s", tz="UTC"),
                "run_trainer_version": summary["trainer_version"],
            }
            row.update(_flatten(config))
            rows.append(row)
        cols = ["run_key", "run_name", "run_diverged", "run_bytes", "run_created", "run_trainer_version"]
        return pd.DataFrame(rows, columns=None if rows else cols)

    def write_index(self) -> Path:
        """Write ``list_runs()`` to ``<root>/runs.parquet`` atomically; returns its path."""
        df = self.list_runs()
        dest = self.root / INDEX_FILE
        with atomic_path(dest) as tmp:
            df.to_parquet(tmp, index=False)
        return dest

    def epoch_table(self, keys: Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy per-epoch table: ``run_key``, ``epoch`` (0-based), ``train_loss`` (nats)."""
        frames = []
        for key in (self.keys() if keys is None else keys):
            run_dir = self.root / key
            if not self._is_complete(run_dir):
                raise KeyError(f"run {key} is not in the store at {self.root}")
            with np.load(run_dir / "arrays.npz", allow_pickle=False) as z:
                loss = z["train_loss"]
            frames.append(pd.DataFrame({"run_key": key, "epoch": np.arange(len(loss)), "train_loss": loss}))
        if not frames:
            return pd.DataFrame({"run_key": pd.Series(dtype=str), "epoch": pd.Series(dtype=int),
                                 "train_loss": pd.Series(dtype=float)})
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ housekeeping
    def tmp_dirs(self) -> list[Path]:
        """Temporary run folders (being written, or left by a killed writer)."""
        if not self.tmp_root.is_dir():
            return []
        return sorted(p for p in self.tmp_root.iterdir() if p.is_dir())

    def clean_tmp(self, max_age_s: float = 3600.0) -> int:
        """Remove temporary run folders older than ``max_age_s`` seconds; returns how many."""
        now = time.time()
        removed = 0
        for p in self.tmp_dirs():
            try:
                age = now - p.stat().st_mtime
            except OSError:
                continue
            if age >= max_age_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"
