"""Train a grid's members group by group — in this process or as tasks on a Dask cluster —
and hand back each group's results as soon as it finishes.

Definitions
-----------
* **Group**: the members ``softlab.train.train_members`` trains as one batched computation:
  ``plan_groups(members, cfg, device)`` is ``softlab.train.plan_batches`` with the trainer's
  own default group size for ``device`` (``TrainConfig.max_members_per_batch`` when set, else
  32 CNN / 128 MLP members on CPU, 256 on GPU). Each group is trained by ``train_members`` with
  that group size pinned, so it is exactly one batched computation wherever it runs.
* **Executor**: where groups run. ``InProcessExecutor`` trains them one after another here;
  ``DaskExecutor`` submits one task per group to a Dask scheduler (a whole group per task, so
  a GPU worker stays busy) and yields groups in the order they complete
  (``distributed.as_completed``). Both have ``train(x, members, cfg, eval_sets)``, an iterator
  of ``(member positions, results)`` — the chunk protocol of ``RunStore.get_or_train``.
* **Address** (``open_executor(spec)``, ``softlab run/train --dask``, ``$SOFTLAB_DASK``):
  ``None`` → ``$SOFTLAB_DASK`` if set, else in-process; ``"inprocess"`` → in-process;
  ``"local:N"`` → a ``distributed.LocalCluster`` of N worker processes on 127.0.0.1 with one
  thread each (``"local"``: one per core); ``"tcp://host:port"`` (any ``scheme://``, or a bare
  ``host:port``) → an existing scheduler; a ``distributed.Client`` → used as is.

Cluster behaviour
-----------------
* **What a worker needs**: the ``softlab`` package at the same version (and the same torch
  build, for identical numbers) — nothing else: no data, no shared filesystem. The client
  prepares the arm and sends each shared array once — the images, the evaluation sets and each
  distinct target/index array, each as the argument of a small holding task whose result the
  training tasks depend on (workers then copy it from one another; if its holder dies the
  scheduler recomputes it from the graph); a task returns its ``MemberResult`` objects to the
  client, which alone writes the run cache (atomically, one run at a time, as results arrive).
* **Faults**: a worker that dies mid-task has its task rescheduled by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` deaths per task); a task that raises is retried
  ``retries`` times. A task's results reach the client only when its whole group has
  finished, so no partial run exists to be stored, and each group's results are taken once.
* **Torch threads** per task: ``torch_threads`` given to ``DaskExecutor``, else the worker's
  ``$SOFTLAB_TORCH_THREADS``, else the worker's CPUs divided by its Dask thread count
  (``local:N`` workers are started with ``SOFTLAB_TORCH_THREADS=1``). In-process training uses
  ``softlab.runtime.torch_threads()`` (``$SOFTLAB_TORCH_THREADS`` or torch's own setting).
* **GPUs**: a task asks for ``resources={"GPU": 1}`` when the cluster's workers declare a
  ``GPU`` resource (``dask worker --resources GPU=1``), so each GPU trains one group at a time;
  ``dask_cuda.LocalCUDACluster`` starts one single-threaded worker per GPU. With
  ``TrainConfig.device="auto"`` groups are planned for CUDA when every worker has it.
* **Determinism**: a group's numbers depend only on its members, the configuration, the
  device and the torch thread count; with the same thread count (and device) results on the
  cluster are bit-identical to in-process ones (tested in ``tests/test_distributed.py``). Both
  executors hand the trainer 64-byte-aligned image arrays (``aligned``): CPU kernels can round
  differently depending on where a buffer starts, and deserialised arrays start anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from softlab.runtime import resolve_device, torch_threads
from softlab.train import (
    Member,
    MemberResult,
    TrainConfig,
    _check_inputs,
    _default_max_members,
    plan_batches,
    train_members,
)

ENV_VAR = "SOFTLAB_DASK"
"""Environment variable naming the executor when none is passed (see the module docstring)."""
TASK_PREFIX = "softlab-train"
"""Every training task's Dask key starts with this (``softlab-train-<call id>-<group>``)."""
DATA_PREFIX = "softlab-data"
"""Keys of the tasks holding the shared arrays (images, evaluation sets, targets, indices)."""
INPROCESS = "inprocess"

TIMEOUT_ENV_VAR = "SOFTLAB_DASK_TIMEOUT"
"""Seconds to wait for a scheduler to answer, and (ten times as long) for a first worker to
join; default :data:`DEFAULT_TIMEOUT_S`. A wrong address then stops with one line instead of
hanging (or, at an HTTP server, a 3 EiB allocation traceback)."""
DEFAULT_TIMEOUT_S = 30.0


class DaskUnavailable(ValueError):
    """No Dask scheduler answered at the address, or no worker joined it in time (one line)."""


def dask_timeout() -> float:
    """``$SOFTLAB_DASK_TIMEOUT`` (seconds, > 0) or :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"${TIMEOUT_ENV_VAR}: expected a number of seconds > 0, got {text!r}")
    return value


Chunk = tuple[list[int], list[MemberResult]]


# ----------------------------------------------------------------------------- planning


def plan_groups(members: Sequence[Member], cfg: TrainConfig, device: Any = None) -> list[list[int]]:
    """Member positions of each batched computation, as ``train_members`` would plan them on
    ``device`` (default: ``cfg.device`` resolved here)."""
    import torch

    dev = torch.device(device) if device is not None else resolve_device(cfg.device)
    return plan_batches(members, _default_max_members(cfg, dev))


ALIGNMENT = 64
"""Byte alignment of the image arrays handed to the trainer (see ``aligned``)."""


def aligned(a: np.ndarray, alignment: int = ALIGNMENT) -> np.ndarray:
    """``a`` as a C-contiguous array whose data starts at a multiple of ``alignment`` bytes
    (itself when it already does, else a copy).

    The trainer predicts shared evaluation images straight from the caller's buffer, and
    vectorised CPU kernels can round differently at different start offsets (observed with
    torch on x86-64: buffers at offsets 4 or 8 mod 16 change the last bit of some probabilities). Arrays a Dask
    worker deserialises may start at any offset, so both executors align their inputs: the
    numbers then do not depend on where the bytes happen to lie.
    """
    c = np.ascontiguousarray(a)
    if c.ctypes.data % alignment == 0:
        return c
    buf = np.empty(c.nbytes + alignment, dtype=np.uint8)
    start = (-buf.ctypes.data) % alignment
    out = buf[start : start + c.nbytes].view(c.dtype).reshape(c.shape)
    out[...] = c
    return out


def _pinned(cfg: TrainConfig, group: Sequence[int]) -> TrainConfig:
    """``cfg`` with the group size pinned, so ``train_members`` trains ``group`` as one batch."""
    return replace(cfg, max_members_per_batch=max(len(group), 1))


# ----------------------------------------------------------------------------- in-process


def _checked_inputs(
    x: np.ndarray, members: Sequence[Member], cfg: TrainConfig, eval_sets: Mapping[str, np.ndarray] | None
) -> tuple[np.ndarray, list[Member], dict[str, np.ndarray]]:
    """A train call's images, members and evaluation sets, checked as ``softlab.train`` checks them."""
    member_list, sets = list(members), dict(eval_sets or {})
    return _check_inputs(x, member_list, cfg, sets), member_list, sets


class InProcessExecutor:
    """Train groups one after another in this process (the behaviour without a cluster).

    ``submitted_tasks`` / ``submitted_members``: groups and members trained so far."""

    address = INPROCESS

    def __init__(self) -> None:
        self.submitted_tasks = 0
        self.submitted_members = 0

    def train(
        self,
        x: np.ndarray,
        members: Sequence[Member],
        cfg: TrainConfig,
        eval_sets: Mapping[str, np.ndarray] | None = None,
        progress: bool = False,
    ) -> Iterator[Chunk]:
        """Yield ``(positions, results)`` for each group, in plan order."""
        x, members, eval_sets = _checked_inputs(x, members, cfg, eval_sets)
        x = aligned(x)
        eval_sets = {k: aligned(v) for k, v in eval_sets.items()}
        for group in plan_groups(members, cfg):
            self.submitted_tasks += 1
            self.submitted_members += len(group)
            with torch_threads():
                results = train_members(
                    x, [members[i] for i in group], _pinned(cfg, group), eval_sets, progress=progress
                )
            yield list(group), results

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "InProcessExecutor()"


# ----------------------------------------------------------------------------- Dask


def _worker_torch_threads(explicit: int | None) -> int:
    """Torch threads for a task on this worker (see the module docstring)."""
    if explicit is not None:
        return max(1, int(explicit))
    env = os.environ.get("SOFTLAB_TORCH_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, cpus // max(1, slots))


@dataclass(frozen=True)
class _ArrayRef:
    """Stands for the ``index``-th array a task receives (in a member's field)."""

    index: int


def _train_group_task(
    x: np.ndarray,
    eval_sets: dict[str, np.ndarray],
    arrays: list[np.ndarray],
    specs: list[dict[str, Any]],
    cfg: TrainConfig,
    threads: int | None,
) -> list[MemberResult]:
    """Runs on a worker: rebuild the group's members (every ``Member`` field, arrays from
    ``arrays``) and train them as one batch."""

    def field_values(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: arrays[v.index] if isinstance(v, _ArrayRef) else v for k, v in spec.items()}

    members = [Member(**field_values(spec)) for spec in specs]
    with torch_threads(_worker_torch_threads(threads)):
        return train_members(aligned(x), members, cfg, {k: aligned(v) for k, v in eval_sets.items()}, progress=False)


def _identity(a: np.ndarray) -> np.ndarray:
    """The task that holds a shared array on the cluster (see ``DaskExecutor.train``)."""
    return a


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class DaskExecutor:
    """Submit one task per group to a Dask scheduler; see the module docstring.

    address: ``"local:N"`` / ``"local"`` (start a LocalCluster, closed by ``close``) or a
    scheduler address; or pass ``client`` (a ``distributed.Client``, left open by ``close``).
    The connection is made on the first ``train`` call. ``retries``: re-runs of a task that
    raised. ``resources``: Dask resources per task (default: ``{"GPU": 1}`` when workers
    declare GPUs). ``torch_threads``: torch threads per task (default: see module docstring).
    ``submitted_tasks`` / ``submitted_members`` count what this executor has submitted.
    """

    def __init__(
        self,
        address: str | None = None,
        client: Any = None,
        retries: int = 2,
        resources: dict[str, float] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        if (address is None) == (client is None):
            raise ValueError("DaskExecutor: give exactly one of address or client")
        self.address = address if address is not None else str(client.scheduler.address)
        self._client = client
        self._own_client = client is None
        self._cluster: Any = None
        self.retries = retries
        self.resources = resources
        self.torch_threads = torch_threads
        self.submitted_tasks = 0
        self.submitted_members = 0

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (connects, or starts the LocalCluster, on first use)."""
        if self._client is None:
            from distributed import Client, LocalCluster

            n_local = _local_workers(self.address)
            if n_local is not None:
                self._cluster = LocalCluster(
                    n_workers=n_local,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # its HTTP endpoints (health, metrics) on a free loopback port
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    env={"SOFTLAB_TORCH_THREADS": "1"},
                    silence_logs=logging.ERROR,
                )
                self._client = Client(self._cluster)
            else:
                self._client = _connect(Client, self.address)
        return self._client

    @property
    def scheduler_address(self) -> str:
        return str(self.client.scheduler.address)

    def _plan_device(self, cfg: TrainConfig) -> Any:
        import torch

        if cfg.device != "auto":
            return torch.device(cfg.device)
        answers = self.client.run(_cuda_available)
        return torch.device("cuda" if answers and all(answers.values()) else "cpu")

    def _task_resources(self) -> dict[str, float] | None:
        if self.resources is not None:
            return self.resources or None
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
            return {"GPU": 1}
        return None

    def train(
        self,
        x: np.ndarray,
        members: Sequence[Member],
        cfg: TrainConfig,
        eval_sets: Mapping[str, np.ndarray] | None = None,
        progress: bool = False,
    ) -> Iterator[Chunk]:
        """Submit every group, then yield ``(positions, results)`` as tasks complete."""
        import dask
        from distributed import as_completed

        x, members, eval_sets = _checked_inputs(x, members, cfg, eval_sets)
        client = self.client
        if not client.scheduler_info(n_workers=-1).get("workers"):
            wait = 10 * dask_timeout()
            print(  # also without progress bars: a silent wait looked like a hang
                f"[softlab] waiting up to {wait:g} s for a Dask worker to join {self.scheduler_address}",
                file=sys.stderr,
                flush=True,
            )
            try:
                client.wait_for_workers(1, timeout=wait)
            except TimeoutError:
                raise DaskUnavailable(
                    f"--dask {self.address}: no Dask worker joined the scheduler within {wait:g} s "
                    f"(start one with `dask worker {self.scheduler_address}`; ${TIMEOUT_ENV_VAR} sets the wait)"
                ) from None
        groups = plan_groups(members, cfg, self._plan_device(cfg))
        resources = self._task_resources()

        # every distinct member array (targets per condition, indices per fold) is sent once
        by_id: dict[int, int] = {}
        by_content: dict[tuple[Any, ...], int] = {}
        arrays: list[np.ndarray] = []

        def ref(a: np.ndarray) -> int:
            if id(a) not in by_id:
                c = np.ascontiguousarray(a)
                content = (c.dtype.str, c.shape, hashlib.blake2b(c.data.cast("B"), digest_size=16).digest())
                if content not in by_content:
                    by_content[content] = len(arrays)
                    arrays.append(c)
                by_id[id(a)] = by_content[content]
            return by_id[id(a)]

        # each member as {field: value} — every Member field travels — with arrays as references
        specs = [
            {f.name: _ArrayRef(ref(v)) if isinstance(v := getattr(m, f.name), np.ndarray) else v for f in fields(m)}
            for m in members
        ]
        shared: list[Any] = []
        pending: dict[Any, list[int]] = {}
        call = uuid.uuid4().hex[:12]

        def source(a: np.ndarray) -> Any:
            # Shared data enters the graph once, as the argument of a task that returns it: workers
            # fetch it from whichever worker holds it, and if that worker dies the scheduler
            # recomputes the task from its spec. (client.scatter would be lost with its last
            # holder: the active memory manager drops "unneeded" broadcast replicas.)
            with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}):
                future = client.submit(_identity, a, key=f"{DATA_PREFIX}-{call}-{len(shared)}", pure=False)
            shared.append(future)
            return future

        try:
            x_f = source(np.ascontiguousarray(x))
            eval_f = {k: source(np.ascontiguousarray(v)) for k, v in eval_sets.items()}
            arrays_f = [source(a) for a in arrays]
            for g, group in enumerate(groups):
                local: dict[int, int] = {}  # this task's arrays: index in `arrays` → position in its list
                group_specs = [
                    {
                        k: _ArrayRef(local.setdefault(v.index, len(local))) if isinstance(v, _ArrayRef) else v
                        for k, v in specs[i].items()
                    }
                    for i in group
                ]
                group_arrays = [arrays_f[a] for a in sorted(local, key=local.__getitem__)]
                future = client.submit(
                    _train_group_task,
                    x_f,
                    eval_f,
                    group_arrays,
                    group_specs,
                    _pinned(cfg, group),
                    self.torch_threads,
                    key=f"{TASK_PREFIX}-{call}-{g}",
                    retries=self.retries,
                    resources=resources,
                    pure=False,
                )
                pending[future] = list(group)
                self.submitted_tasks += 1
                self.submitted_members += len(group)
            if progress:
                print(
                    f"[softlab] {len(groups)} tasks ({len(members)} runs) submitted to {self.scheduler_address}",
                    flush=True,
                )
            for future in as_completed(list(pending)):
                group = pending.pop(future)
                results = future.result()
                future.release()
                if len(results) != len(group):
                    raise RuntimeError(f"task {future.key} returned {len(results)} results for {len(group)} members")
                yield group, list(results)
        finally:
            if pending:
                client.cancel(list(pending), force=True)
            for f in shared:
                f.release()

    def close(self) -> None:
        """Close the client and the LocalCluster this executor started (not a given client)."""
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r})"


Executor = InProcessExecutor | DaskExecutor


def _connect(client_class: Any, address: str) -> Any:
    """A ``distributed.Client`` of ``address`` within :func:`dask_timeout` seconds, else
    :class:`DaskUnavailable` in one line: a closed port, a host that never answers, or a server
    that speaks something else (an HTTP server's reply read as a frame length asked numpy for
    3 EiB)."""
    timeout = dask_timeout()
    try:
        return client_class(address, timeout=timeout)
    except (OSError, TimeoutError, MemoryError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DaskUnavailable(
            f"--dask {address}: no Dask scheduler answered within {timeout:g} s ({type(exc).__name__}: {reason}); "
            f"check the address and port (${TIMEOUT_ENV_VAR} sets the wait)"
        ) from None


# ----------------------------------------------------------------------------- addresses

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$")


def _local_workers(spec: str) -> int | None:
    """N of ``"local:N"`` (``"local"``: this machine's CPUs); None for other addresses."""
    m = _LOCAL.match(spec.strip())
    if m is None:
        return None
    if m.group(1) is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:
            return os.cpu_count() or 1
    return int(m.group(1))


def check_address(spec: str) -> str:
    """``spec`` stripped if it is a valid executor address, else ValueError saying what is expected."""
    s = spec.strip()
    n = _local_workers(s)
    if n is not None:
        if n >= 1:
            return s
    elif s in ("", INPROCESS) or "://" in s or _HOST_PORT.match(s):
        return s
    raise ValueError(
        f"--dask / ${ENV_VAR}: expected 'local:N' (N >= 1 worker processes), a scheduler address "
        f"like 'tcp://host:8786', or '{INPROCESS}'; got {spec!r}"
    )


def make_executor(spec: Any = None) -> tuple[Executor, bool]:
    """The executor for ``spec`` (see the module docstring) and whether the caller owns it
    (must ``close`` it)."""
    if isinstance(spec, (InProcessExecutor, DaskExecutor)):
        return spec, False
    if spec is None:
        spec = os.environ.get(ENV_VAR, "")
    if isinstance(spec, str):
        s = check_address(spec)
        if s in ("", INPROCESS):
            return InProcessExecutor(), True
        return DaskExecutor(address=s), True
    from distributed import Client

    if isinstance(spec, Client):
        return DaskExecutor(client=spec), True
    raise ValueError(
        f"executor: expected None, an address string, a distributed.Client or an executor, got {type(spec).__name__}"
    )


@contextmanager
def open_executor(spec: Any = None) -> Iterator[Executor]:
    """``with open_executor("local:2") as ex: ex.train(...)``; closes what it opened."""
    executor, owned = make_executor(spec)
    try:
        yield executor
    finally:
        if owned:
            executor.close()


@contextmanager
def dask_environment(spec: str | None) -> Iterator[str | None]:
    """For the duration, ``$SOFTLAB_DASK`` names ``spec`` for child processes (the notebook
    kernels of ``softlab run``). ``"local:N"`` starts the LocalCluster here, once, and exports
    its scheduler address, so every notebook shares it. ``None``: the environment is unchanged."""
    if spec is None:
        yield os.environ.get(ENV_VAR)
        return
    s = check_address(spec)
    old = os.environ.get(ENV_VAR)
    executor: DaskExecutor | None = None
    try:
        if _local_workers(s) is not None:
            executor = DaskExecutor(address=s)
            s = executor.scheduler_address
        elif s not in ("", INPROCESS):  # a remote scheduler: fail now, in one line, not in a notebook
            probe = DaskExecutor(address=s)
            try:
                probe.client  # noqa: B018 - connects, or raises DaskUnavailable
            finally:
                probe.close()
        os.environ[ENV_VAR] = s or INPROCESS
        yield os.environ[ENV_VAR]
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old
        if executor is not None:
            executor.close()


def train_stream(
    x: np.ndarray,
    members: Sequence[Member],
    cfg: TrainConfig,
    eval_sets: Mapping[str, np.ndarray] | None = None,
    executor: Any = None,
    progress: bool = False,
) -> Iterator[Chunk]:
    """Train ``members`` on ``executor`` (default in-process; an address opens one for the
    call), yielding ``(member positions, results)`` per finished group."""
    with open_executor(INPROCESS if executor is None else executor) as ex:
        yield from ex.train(x, members, cfg, eval_sets, progress=progress)
