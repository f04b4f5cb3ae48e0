"""Run a real annotation server in a subprocess (for tests, benchmarks and demos).

:func:`running_server` starts ``python -m softlab.annotate --study-dir DIR --port 0`` (uvicorn
on a free port of 127.0.0.1), reads the URL it prints, waits until ``/api/health`` answers,
yields the base URL, and stops the server with SIGTERM (graceful) when the block ends.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from softlab.paths import PROJECT_ROOT


class ServerStartError(RuntimeError):
    """The annotation server did not start within the time limit."""


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                return proc.stdout.readline()
            if proc.poll() is not None:
                return ""
        return ""
    finally:
        sel.close()


@contextmanager
def running_server(
    study_dir: str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    start_timeout_s: float = 60.0,
    stop_timeout_s: float = 15.0,
) -> Iterator[str]:
    """Serve ``study_dir`` in a subprocess; yield its base URL (``http://127.0.0.1:PORT/``, plus
    ``?token=...`` when the token is required)."""
    import httpx

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "softlab.annotate", "--study-dir", str(study_dir), "--port", "0", *extra_args]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=str(PROJECT_ROOT))
        try:
            deadline = time.monotonic() + start_timeout_s
            line = _read_line(proc, deadline)
            if "http://" not in line:
                proc.kill()
                proc.wait()
                err.seek(0)
                raise ServerStartError(
                    f"annotation server did not start (exit {proc.returncode}): {line!r} {err.read()[-2000:]}"
                )
            url = line[line.index("http://") :].split()[0]
            base = url.split("?")[0]
            while True:
                try:
                    if httpx.get(base + "api/health", timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    err.seek(0)
                    raise ServerStartError(f"annotation server at {base} never became healthy: {err.read()[-2000:]}")
                time.sleep(0.05)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
