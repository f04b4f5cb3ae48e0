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
        COMPLETE             written last inside the temporary folder: JSON with ``format`` (2),
                             ``key``, ``files`` (SHA-256 of arrays.npz, config.json, result.json)
                             and ``arrays`` (name → shape and dtype of every array)
      .tmp/<key>.<host>.<pid>.<random>/
                             a run being written: never read; a killed writer leaves it
                             behind, ``clean_tmp`` (called when a ``RunStore`` opens) removes it
      .quarantine/<key>.<UTC time>/
                             a damaged run folder moved aside (never deleted), with
                             ``QUARANTINED.txt`` saying why
      runs.parquet           index, one row per stored run (``write_index``; the same table
                             as ``list_runs()``)

Atomicity: a run is written completely into ``.tmp/…`` (files fsynced, ``COMPLETE`` last),
then the folder is renamed to ``<root>/<key>`` (``os.rename``: atomic on POSIX, and it fails
rather than merge when another writer got there first). A process killed at any moment
therefore leaves either no ``<root>/<key>`` or a complete one. ``runs.parquet`` is replaced
atomically (``softlab.io.atomic_path``).

Healing: a run is *verified* whenever it is read — ``COMPLETE`` must be the current format,
every file must match its recorded SHA-256, ``config.json`` must hash to the folder's key and
``arrays.npz`` must hold exactly the recorded arrays. A folder that fails (no ``COMPLETE``, a
truncated or edited file, arrays swapped in from another run, a ``COMPLETE`` written by an
older softlab without checksums) is *damaged*: it is moved to ``.quarantine/`` with a
one-line ``DamagedRunWarning`` naming the run (runs that are only outdated get one summary line
per call instead of one each), and ``get_or_train`` trains it again. Parser
errors (``BadZipFile``, ``JSONDecodeError`` …) never escape raw: reading a damaged run through
``load``/``load_key`` raises ``DamagedRunError`` (a ``KeyError``) naming it. A leftover folder at
a run's destination never blocks a save: it is quarantined first.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softlab.io import atomic_path, config_key, sha256_bytes
from softlab.paths import cache_dir
from softlab.train import TRAINER_VERSION, MemberResult

COMPLETE_MARKER = "COMPLETE"
COMPLETE_FORMAT = 2
"""Version of the ``COMPLETE`` record; runs written with another (older) format are re-verified
as damaged and retrained (their cache key is unchanged)."""
INDEX_FILE = "runs.parquet"
QUARANTINE_DIR = ".quarantine"
QUARANTINE_NOTE = "QUARANTINED.txt"
RUN_FILES = ("arrays.npz", "config.json", "result.json")
_EVAL_PREFIX = "eval__"

Chunk = tuple[Sequence[int], Sequence[MemberResult]]
TrainFn = Callable[[list[dict[str, Any]]], Sequence[MemberResult] | Iterable[Chunk]]
"""``train_fn(configs)`` returns one result per configuration (a list, in order), or an
iterable of ``(positions, results)`` chunks: positions index ``configs``, each exactly once."""


class DamagedRunWarning(UserWarning):
    """A stored run failed verification; it was moved to quarantine (and will be retrained)."""


class DamagedRunError(KeyError):
    """Reading a run that failed verification (it has been moved to quarantine)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class RunSaveError(RuntimeError):
    """Some trained runs could not be saved (every other run of the call was saved)."""


class _Damage(Exception):
    """Internal: why a run folder failed verification (``outdated``: only because an older
    softlab wrote it, without checksums)."""

    def __init__(self, reason: str, outdated: bool = False) -> None:
        super().__init__(reason)
        self.outdated = outdated


def _describe(config: Mapping[str, Any] | None) -> str:
    """A short human name for a run configuration (dataset, condition, seed, fold when present)."""
    if not config:
        return ""
    arm = config.get("arm")
    dataset = config.get("dataset") or (arm.get("dataset") if isinstance(arm, Mapping) else None)
    parts = [f"{k}={config[k]}" for k in ("condition", "seed", "fold") if k in config]
    if dataset:
        parts.insert(0, str(dataset))
    return f" ({', '.join(parts)})" if parts else ""


def _host_tag() -> str:
    """This host's name, made safe for a folder name (no dots, no separators)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


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
    raise ValueError(
        f"{where}: expected JSON-able values (dict, list, str, number, bool, None), "
        f"got {type(obj).__name__}; store a version string or hash instead"
    )


def _write_bytes(path: Path, data: bytes) -> str:
    """Write ``data``, fsync it (inside a run's temporary folder); returns its SHA-256."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return sha256_bytes(data)


def _write_json(path: Path, obj: Any) -> str:
    """Write JSON and fsync it (inside a run's temporary folder); returns its SHA-256."""
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=True)
    return _write_bytes(path, text.encode("utf-8"))


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
    """Cache of training runs under ``root`` (see the module docstring for the layout).

    Opening a store removes stale temporary folders (``clean_tmp``).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_root = self.root / ".tmp"
        self.quarantine_root = self.root / QUARANTINE_DIR
        self.clean_tmp()

    # ------------------------------------------------------------------ keys and paths
    @staticmethod
    def full_config(config: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration that is hashed and stored: ``config`` + ``trainer_version``."""
        cfg = _jsonable(dict(config))
        if "trainer_version" in cfg and cfg["trainer_version"] != TRAINER_VERSION:
            raise ValueError(
                f"config['trainer_version']: {cfg['trainer_version']!r} differs from this trainer's "
                f"{TRAINER_VERSION!r}; leave it out, the store adds it"
            )
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
        """Whether the run's folder is marked complete (its files are verified when read)."""
        return self._is_complete(self.path(config))

    def keys(self) -> list[str]:
        """Keys of every stored run marked complete (sorted)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and self._is_complete(p)
        )

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, config: Mapping[str, Any]) -> bool:
        return self.has(config)

    # ------------------------------------------------------------------ verification and quarantine
    def _read_verified(
        self, key: str, with_arrays: bool = True
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
        """(config, summary, arrays) of run ``key`` after checking it; ``_Damage`` if it fails.

        ``with_arrays=False`` skips reading (and hashing) ``arrays.npz`` and returns no arrays.
        """
        run_dir = self.root / key
        try:
            marker = json.loads((run_dir / COMPLETE_MARKER).read_bytes())
        except FileNotFoundError:
            raise _Damage("no COMPLETE marker: an incomplete run folder") from None
        except (OSError, ValueError) as exc:
            raise _Damage(f"COMPLETE unreadable ({type(exc).__name__}: {exc})") from None
        if isinstance(marker, dict) and "format" not in marker and marker.get("key") == key:
            raise _Damage("COMPLETE records no checksums (written by an older softlab)", outdated=True)
        if not isinstance(marker, dict) or marker.get("format") != COMPLETE_FORMAT:
            raise _Damage(f"COMPLETE is not a format-{COMPLETE_FORMAT} record (edited or damaged)")
        files, recorded = marker.get("files"), marker.get("arrays")
        if marker.get("key") != key:
            raise _Damage(f"COMPLETE names run {marker.get('key')!r}: the folder holds another run")
        if not isinstance(files, dict) or not isinstance(recorded, dict):
            raise _Damage("COMPLETE lacks its file checksums or array list")
        raw: dict[str, bytes] = {}
        for name in RUN_FILES:
            if name == "arrays.npz" and not with_arrays:
                continue
            try:
                data = (run_dir / name).read_bytes()
            except OSError as exc:
                raise _Damage(f"{name} unreadable ({exc.strerror or type(exc).__name__})") from None
            if sha256_bytes(data) != files.get(name):
                raise _Damage(f"{name} does not match the SHA-256 recorded in COMPLETE")
            raw[name] = data
        try:
            config = json.loads(raw["config.json"])
            summary = json.loads(raw["result.json"])
        except ValueError as exc:
            raise _Damage(f"invalid JSON ({exc})") from None
        if not isinstance(config, dict) or config_key(config) != key:
            raise _Damage("config.json does not hash to the folder's key: the folder holds another run")
        if not isinstance(summary, dict):
            raise _Damage("result.json is not a JSON object")
        arrays: dict[str, np.ndarray] = {}
        if with_arrays:
            try:
                with np.load(io.BytesIO(raw["arrays.npz"]), allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
                raise _Damage(f"arrays.npz unreadable ({type(exc).__name__}: {exc})") from None
            found = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
            if found != recorded:
                raise _Damage(f"arrays.npz holds {sorted(found)} with other names/shapes than COMPLETE records")
        return config, summary, arrays

    def verify(self, key: str) -> str | None:
        """Why run ``key`` is damaged (one line), or None when it passes every check."""
        try:
            self._read_verified(key)
        except _Damage as damage:
            return str(damage)
        return None

    def quarantine(
        self, key: str, reason: str, config: Mapping[str, Any] | None = None, warn: bool = True
    ) -> Path | None:
        """Move folder ``<root>/<key>`` to ``<root>/.quarantine/<key>.<UTC time>`` (never deleted),
        note ``reason`` in it and (``warn``) emit a one-line ``DamagedRunWarning``. Returns the
        new path (None if the folder had already gone, e.g. moved by another process)."""
        src = self.root / key
        self.quarantine_root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.quarantine_root / f"{key}.{stamp}"
        n = 1
        while os.path.lexists(dest):
            dest = self.quarantine_root / f"{key}.{stamp}.{n}"
            n += 1
        try:
            os.rename(src, dest)
        except FileNotFoundError:
            return None
        try:
            (dest / QUARANTINE_NOTE).write_text(
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} run {key}: {reason}\n", encoding="utf-8"
            )
        except OSError:
            pass  # the folder is kept either way; the warning says why
        if warn:
            warnings.warn(
                f"run {key}{_describe(config)} is damaged: {reason}; moved to {dest} and will be retrained",
                DamagedRunWarning,
                stacklevel=3,
            )
        return dest

    def _set_aside(self, key: str, damage: _Damage, config: Mapping[str, Any] | None, outdated: list[str]) -> None:
        """Quarantine a damaged run: a warning per run, except runs that are only outdated
        (collected in ``outdated`` for one summary line, ``_warn_outdated``)."""
        self.quarantine(key, str(damage), config, warn=not damage.outdated)
        if damage.outdated:
            outdated.append(key)

    def _warn_outdated(self, outdated: list[str]) -> None:
        if outdated:
            warnings.warn(
                f"{len(outdated)} run(s) in {self.root} were written by an older softlab (COMPLETE "
                f"without checksums), e.g. {outdated[0]}: moved to {self.quarantine_root} and retrained "
                "when needed; delete that folder once you no longer want them",
                DamagedRunWarning,
                stacklevel=3,
            )

    def quarantined(self) -> list[Path]:
        """Folders moved to quarantine (sorted)."""
        if not self.quarantine_root.is_dir():
            return []
        return sorted(p for p in self.quarantine_root.iterdir() if p.is_dir())

    # ------------------------------------------------------------------ write
    def save(self, config: Mapping[str, Any], result: MemberResult) -> Path:
        """Store ``result`` under ``config`` atomically; returns the run folder.

        If a verified run with the same key already exists it is kept and this one discarded;
        anything else at the destination (an incomplete or damaged folder) is quarantined first.
        """
        full = self.full_config(config)
        key = config_key(full)
        dest = self.root / key
        if os.path.lexists(dest):
            reason = self.verify(key)
            if reason is None:
                return dest
            self.quarantine(key, reason, full)
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
        shapes = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
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
            "arrays": shapes,
            "eval_sets": sorted(result.eval_probs),
            "trainer_version": TRAINER_VERSION,
            "created_unix": time.time(),
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_root / f"{key}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            files = {
                "arrays.npz": _write_bytes(tmp / "arrays.npz", buffer.getvalue()),
                "config.json": _write_json(tmp / "config.json", full),
                "result.json": _write_json(tmp / "result.json", summary),
            }
            _write_json(
                tmp / COMPLETE_MARKER, {"format": COMPLETE_FORMAT, "key": key, "files": files, "arrays": shapes}
            )
            _fsync_dir(tmp)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not os.path.lexists(dest):
                    raise
                reason = self.verify(key)
                if reason is None:
                    shutil.rmtree(tmp, ignore_errors=True)  # another writer finished the same run first
                else:  # something appeared at the destination meanwhile: move it aside, try once more
                    self.quarantine(key, reason, full)
                    os.rename(tmp, dest)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    # ------------------------------------------------------------------ read
    @staticmethod
    def _result(summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> MemberResult:
        return MemberResult(
            name=summary["name"],
            seed=summary["seed"],
            meta=summary["meta"],
            config=summary["train_config"],
            train_idx=arrays["train_idx"],
            train_loss=arrays["train_loss"],
            dynamics=arrays.get("dynamics"),
            eval_probs={k[len(_EVAL_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_EVAL_PREFIX)},
            diverged=summary["diverged"],
            diverged_epoch=summary["diverged_epoch"],
            message=summary["message"],
            seconds=summary["seconds"],
            batch_members=summary["batch_members"],
            watch_idx=arrays.get("watch_idx"),
            watch_dynamics=arrays.get("watch_dynamics"),
            watch_probs=arrays.get("watch_probs"),
        )

    def _load_verified(self, key: str) -> MemberResult:
        """The run's result after verification; ``_Damage`` when the folder fails it."""
        _, summary, arrays = self._read_verified(key)
        try:
            return self._result(summary, arrays)
        except (KeyError, TypeError) as exc:
            raise _Damage(f"result.json or arrays.npz lacks {exc}") from None

    def _damaged(self, key: str, damage: _Damage, config: Mapping[str, Any] | None = None) -> DamagedRunError:
        where = self.quarantine(key, str(damage), config)
        return DamagedRunError(
            f"run {key}{_describe(config)} in {self.root} is damaged ({damage}); "
            f"moved to {where}; train it again (get_or_train does)"
        )

    def load_key(self, key: str) -> MemberResult:
        """The stored ``MemberResult`` of run ``key``, verified (KeyError if absent;
        ``DamagedRunError``, a KeyError, after quarantining a damaged run)."""
        if not os.path.lexists(self.root / key):
            raise KeyError(f"run {key} is not in the store at {self.root}")
        try:
            return self._load_verified(key)
        except _Damage as damage:
            raise self._damaged(key, damage) from None

    def load(self, config: Mapping[str, Any]) -> MemberResult:
        return self.load_key(self.key(config))

    def load_config(self, key: str) -> dict[str, Any]:
        """The stored full configuration of run ``key`` (verified like ``load_key``)."""
        if not os.path.lexists(self.root / key):
            raise KeyError(f"run {key} is not in the store at {self.root}")
        try:
            return self._read_verified(key, with_arrays=False)[0]
        except _Damage as damage:
            raise self._damaged(key, damage) from None

    # ------------------------------------------------------------------ train-or-load
    def get_or_train(
        self,
        run_configs: Sequence[Mapping[str, Any]],
        train_fn: TrainFn,
        chunk_size: int | None = None,
        write_index: bool = True,
        progress: bool = False,
    ) -> list[MemberResult]:
        """Results for every configuration, training only those not stored (or damaged).

        ``train_fn(configs)`` receives the missing configurations (duplicates removed, in
        order; at most ``chunk_size`` per call, all at once when None) and returns either one
        ``MemberResult`` per configuration, in the same order, or an iterable of
        ``(positions, results)`` chunks (positions index ``configs``; each position exactly
        once overall). Every run is saved as soon as it arrives, independently of the others:
        an interrupted call keeps what finished, and a run that cannot be saved does not stop
        the rest (``RunSaveError`` at the end names those that failed). Stored runs are
        verified as they are loaded; a damaged one is quarantined and trained again.
        ``progress``: a bar of runs done / total with an ETA.
        """
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size: expected None or >= 1, got {chunk_size!r}")
        configs = [dict(c) for c in run_configs]
        keys = [self.key(c) for c in configs]
        results: dict[str, MemberResult] = {}
        missing: list[int] = []
        seen: set[str] = set()
        outdated: list[str] = []
        for i, k in enumerate(keys):
            if k in seen:
                continue
            seen.add(k)
            if os.path.lexists(self.root / k):
                try:
                    results[k] = self._load_verified(k)
                    continue
                except _Damage as damage:
                    self._set_aside(k, damage, configs[i], outdated)
            missing.append(i)
        self._warn_outdated(outdated)
        failed: list[str] = []
        if missing:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(missing), desc="runs", unit="run")
            try:
                step = chunk_size or len(missing)
                for a in range(0, len(missing), step):
                    chunk = missing[a : a + step]
                    delivered: set[int] = set()
                    for positions, chunk_results in _chunks(train_fn([configs[i] for i in chunk]), len(chunk)):
                        for pos, res in zip(positions, chunk_results):
                            if pos in delivered:
                                raise ValueError(f"train_fn delivered configuration {pos} twice")
                            delivered.add(pos)
                            i = chunk[pos]
                            try:
                                self.save(configs[i], res)
                            except Exception as exc:
                                failed.append(f"{keys[i]}{_describe(configs[i])}: {type(exc).__name__}: {exc}")
                            results[keys[i]] = res
                            if bar is not None:
                                bar.update(1)
                    if len(delivered) != len(chunk):
                        lost = [keys[chunk[p]] for p in range(len(chunk)) if p not in delivered]
                        raise ValueError(
                            f"train_fn delivered {len(delivered)} of {len(chunk)} results; "
                            f"missing runs {lost[:5]}{' …' if len(lost) > 5 else ''}"
                        )
            finally:
                if bar is not None:
                    bar.close()
            if write_index:
                self.write_index()
        if failed:
            raise RunSaveError(
                f"{len(failed)} of {len(missing)} trained runs could not be saved to {self.root} "
                f"(the others were; these are trained again next time): " + "; ".join(failed)
            )
        return [results[k] for k in keys]

    # ------------------------------------------------------------------ tables
    def list_runs(self) -> pd.DataFrame:
        """One row per complete stored run (damaged runs are quarantined and left out).

        Columns: ``run_key``, ``run_name``, ``run_diverged``, ``run_bytes`` (folder size),
        ``run_created`` (UTC timestamp), ``run_trainer_version``, then the configuration
        flattened to ``a.b`` columns (lists as JSON strings). Checks ``COMPLETE``,
        ``config.json`` and ``result.json`` (the arrays are verified when loaded).
        """
        rows = []
        outdated: list[str] = []
        for key in self.keys():
            run_dir = self.root / key
            try:
                config, summary, _ = self._read_verified(key, with_arrays=False)
                row = {
                    "run_key": key,
                    "run_name": summary["name"],
                    "run_diverged": summary["diverged"],
                    "run_bytes": sum(f.stat().st_size for f in run_dir.iterdir() if f.is_file()),
                    "run_created": pd.Timestamp(summary["created_unix"], unit="s", tz="UTC"),
                    "run_trainer_version": summary["trainer_version"],
                }
            except _Damage as damage:
                self._set_aside(key, damage, None, outdated)
                continue
            except (KeyError, TypeError, ValueError) as exc:
                self.quarantine(key, f"result.json lacks or mistypes {exc}")
                continue
            row.update(_flatten(config))
            rows.append(row)
        self._warn_outdated(outdated)
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
        for key in self.keys() if keys is None else keys:
            loss = self.load_key(key).train_loss
            frames.append(pd.DataFrame({"run_key": key, "epoch": np.arange(len(loss)), "train_loss": loss}))
        if not frames:
            return pd.DataFrame(
                {"run_key": pd.Series(dtype=str), "epoch": pd.Series(dtype=int), "train_loss": pd.Series(dtype=float)}
            )
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ housekeeping
    def tmp_dirs(self) -> list[Path]:
        """Temporary run folders (being written, or left by a killed writer)."""
        if not self.tmp_root.is_dir():
            return []
        return sorted(p for p in self.tmp_root.iterdir() if p.is_dir())

    def clean_tmp(self, max_age_s: float = 3600.0) -> int:
        """Remove stale temporary run folders; returns how many.

        Stale: older than ``max_age_s`` seconds, or written by a process of this host that no
        longer runs (the folder name ``<key>.<host>.<pid>.<random>`` says which).
        """
        now = time.time()
        host = _host_tag()
        removed = 0
        for p in self.tmp_dirs():
            try:
                age = now - p.stat().st_mtime
            except OSError:
                continue
            parts = p.name.split(".")
            dead_writer = (
                len(parts) == 4
                and parts[1] == host
                and parts[2].isdigit()
                and int(parts[2]) != os.getpid()
                and not _pid_alive(int(parts[2]))
            )
            if age >= max_age_s or dead_writer:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"


def _chunks(out: Any, n: int) -> Iterator[tuple[list[int], list[MemberResult]]]:
    """Normalise what a ``train_fn`` returned for ``n`` configurations into checked chunks."""
    if isinstance(out, Sequence) and not isinstance(out, (str, bytes)):
        results = list(out)
        if len(results) != n:
            raise ValueError(f"train_fn returned {len(results)} results for {n} configurations")
        out = [(range(n), results)]
    for item in out:
        try:
            positions, results = item
        except (TypeError, ValueError):
            raise ValueError(
                "train_fn must return a list of results or yield (positions, results) chunks, "
                f"got a {type(item).__name__}"
            ) from None
        positions, results = [int(p) for p in positions], list(results)
        if len(positions) != len(results):
            raise ValueError(f"train_fn yielded {len(results)} results for {len(positions)} positions")
        for p, r in zip(positions, results):
            if not 0 <= p < n:
                raise ValueError(f"train_fn yielded position {p}; expected 0 <= position < {n}")
            if not isinstance(r, MemberResult):
                raise TypeError(f"train_fn must return MemberResult objects, got {type(r).__name__}")
        yield positions, results


# --------------------------------------------------------------------------- other cached result folders


def _folder_damage(folder: Path) -> str | None:
    """Why a cached result folder (``cache_dir()/book/<key>``: ``meta.json``, ``*.parquet``
    tables, ``predictions__<arm>.npz``) cannot be read back, or None when it is intact. Every
    file is read in full (zip CRCs included), so a flipped byte is found, not only truncation."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no meta.json (left incomplete)"
    except (OSError, ValueError) as exc:
        return f"meta.json unreadable ({' '.join(str(exc).split())[:120]})"
    if not isinstance(meta, dict):
        return "meta.json is not a mapping"
    for arm in meta.get("arms", []) or []:
        if not (folder / f"predictions__{arm}.npz").is_file():
            return f"predictions__{arm}.npz missing"
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".parquet":
                pd.read_parquet(path)
            elif path.suffix == ".npz":
                with zipfile.ZipFile(path) as z:
                    bad = z.testzip()
                if bad is not None:
                    return f"{path.name}: member {bad} fails its CRC"
        except Exception as exc:  # any reader error means the folder cannot be used
            return f"{path.name} unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    return None


def heal_result_folders(root: str | os.PathLike[str]) -> list[Path]:
    """Quarantine every damaged result folder under ``root`` (default use: ``cache_dir()/book``),
    moving it to ``root/.quarantine/<name>.<UTC time>`` with a one-line warning, so the next run
    recomputes it instead of failing on it every time until it is deleted by hand. Temporary
    folders of writers still at work (``*.tmp*``) are left alone. Returns the new paths."""
    from softlab.io import DamagedCacheWarning, quarantine_file

    root = Path(root)
    if not root.is_dir():
        return []
    moved = []
    for folder in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and ".tmp" not in p.name
    ):
        why = _folder_damage(folder)
        if why is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedCacheWarning)
            dest = quarantine_file(folder, why)
        if dest is not None:
            print(f"[softlab] cached results {folder} were damaged ({why}): moved to {dest}; recomputed", flush=True)
            moved.append(dest)
    return moved
