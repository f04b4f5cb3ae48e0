"""Execute the notebooks with papermill into ``book/`` and build the HTML book.

``run_notebooks("smoke")`` validates the parameter set against the parameters the notebooks read
(``params/default.yml``) — names, types, ranges and the whole configuration
(:func:`softlab.params.validate`) — *before* running anything, trains (or loads) the runs the
chapters read with progress bars on stderr, then executes ``notebooks/NN_*.ipynb`` in order
(each gets the set's name and its overrides, :func:`softlab.chapter.injected_parameters`) into
``book/NN_*.ipynb`` (written atomically: a failed run leaves the previous copy untouched and
the failed copy beside it as ``book/failed-NN_*.ipynb``). ``build_book()`` runs Jupyter Book 1.x
with warnings as errors.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from softlab.params import NOTEBOOKS_DIR, ParameterError, coerce_override, load_params, validate
from softlab.paths import PROJECT_ROOT, cache_dir, check_writable

BOOK_DIR = PROJECT_ROOT / "book"
KERNEL = "python3"


class _IpcKernelManager(AsyncKernelManager):
    """The notebooks' kernel talks over local IPC sockets, not unencrypted TCP (ipykernel warns
    about TCP without encryption on every start; nothing here needs a network port)."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    socket_root: str | None = None  # set per run (run_notebooks): removed when the run ends

    @default("ip")
    def _default_ip(self) -> str:
        # the socket files live in a folder of this kernel's own: jupyter_client's default path
        # ("kernel-ipc-<n>" beside the process) is shared by two runs at once, and a client then
        # reaches the other run's kernel ("Invalid Signature")
        return os.path.join(tempfile.mkdtemp(prefix="kernel-", dir=self.socket_root), "kernel")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        """Start the kernel with its process's own stderr in a log file of the run
        (:func:`kernel_log_dir`), not on the user's terminal: a cell's output reaches the notebook
        over the kernel's sockets, so that stream holds only the kernel's own log — and Ctrl-C
        during a notebook made it print a zmq traceback ("Exception in message handler … Socket
        operation on non-socket") while the client shut it down (found by benchmarks/faults.py)."""
        if "stderr" in kw:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            return
        folder = kernel_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}.log"
        with open(folder / name, "ab") as log:  # the kernel keeps its own copy of the descriptor
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": log})


def kernel_log_dir() -> Path:
    """Where the notebooks' kernels write their own stderr: ``cache_dir()/kernel-logs``."""
    return cache_dir() / "kernel-logs"


class PipelineError(RuntimeError):
    """A notebook failed while executing, or a tool the pipeline needs is missing."""


def notebook_paths(only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    paths = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
        if not paths:
            available = [p.name[:2] for p in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))]
            raise ParameterError(f"--only {' '.join(only)}: no notebook matches; expected prefixes among {available}")
    return paths


def check_claims() -> None:
    """Read and check the pre-registration (``params/claims.yml``) before anything trains: a bad
    claims file used to be reported only after every run had trained. :func:`softlab.inference.load_claims`
    refuses unknown metrics, conditions (also inside ``best_of``) and arms. It does not require every
    primary test to be trainable by this set (:func:`softlab.inference.validate_claims_for`): a set that
    trains a few conditions on purpose (``stability``) runs only the tests it can."""
    from softlab.inference import load_claims

    load_claims()


def resolve_parameters(
    params: str | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
) -> tuple[list[Path], dict[Path, dict[str, Any]]]:
    """The notebooks to run and each one's validated parameters (nothing runs). ``overrides``
    values given as text are parsed as YAML (``--set``); others are used as they are."""
    values = dict(load_params(params)) if isinstance(params, (str, Path)) else dict(params)
    for k, v in (overrides or {}).items():
        values[k] = coerce_override(v, k) if isinstance(v, str) else v
    paths = notebook_paths(only, notebooks_dir)
    # names, types and ranges are checked against every notebook, so that `--only 01` accepts a
    # set written for all of them (it used to call the other notebooks' parameters unknown)
    per_notebook = validate(values, notebook_paths(None, notebooks_dir))
    check_claims()
    check_writable(cache_dir() / "runs", "SOFTLAB_CACHE_DIR")
    return paths, {p: per_notebook[p] for p in paths}


def run_notebooks(
    params: str | dict[str, Any],
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: Path = BOOK_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    progress: bool = True,
    train_first: bool = True,
) -> list[Path]:
    """Validate everything, then execute the notebooks in order (see the module docstring).
    With ``train_first`` the runs and results the notebooks read are computed (or loaded) in
    this process before papermill starts, so training shows its progress bar on this process's
    stderr and the notebooks load it from the cache (their outputs stay clean).

    Raises :class:`softlab.params.ParameterError` before anything runs for a bad parameter,
    and :class:`PipelineError` naming the notebook, cell and failed copy when a notebook fails.
    """
    paths, per_notebook = resolve_parameters(params, overrides, only, notebooks_dir)
    from softlab.store import heal_result_folders

    heal_result_folders(cache_dir() / "book")  # a damaged book cache is recomputed, not failed on every run
    if train_first and paths:
        _train_first(per_notebook[paths[0]], paths, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="softlab-kernels-") as sockets:
        manager = type("_RunKernelManager", (_IpcKernelManager,), {"socket_root": sockets})
        return _execute(paths, per_notebook, out_dir, notebooks_dir, progress, manager)


def _execute(
    paths: list[Path],
    per_notebook: dict[Path, dict[str, Any]],
    out_dir: Path,
    notebooks_dir: Path,
    progress: bool,
    manager: type,
) -> list[Path]:
    import papermill as pm

    from softlab.chapter import injected_parameters

    written = []
    for src in paths:
        dest = out_dir / src.name
        # a name of this run's own: two runs at once into one book/ wrote the same ".NN.running"
        # file, and one of them then renamed away, or read, the other's half-written notebook
        tmp = out_dir / f".{src.stem}.running.{os.getpid()}.{secrets.token_hex(4)}.ipynb"
        start = time.time()
        injected = injected_parameters(per_notebook[src])
        print(f"[softlab run] {src.name} with {injected}", flush=True)
        try:
            pm.execute_notebook(
                str(src),
                str(tmp),
                parameters=injected,
                kernel_name=KERNEL,
                kernel_manager_class=manager,
                cwd=str(notebooks_dir),
                progress_bar=progress,
            )
        except Exception as exc:
            failed = out_dir / f"failed-{src.name}"
            if tmp.exists():
                os.replace(tmp, failed)
            if isinstance(exc, pm.PapermillExecutionError):
                raise PipelineError(
                    f"{src.name} failed in cell {exc.exec_count}: {exc.ename}: "
                    f"{' '.join(str(exc.evalue).split())}; the executed copy with the traceback "
                    f"is {failed}"
                ) from exc
            raise
        except BaseException:  # Ctrl-C: the partial copy is nobody's
            tmp.unlink(missing_ok=True)
            raise
        _hide_injected_parameters(tmp)
        os.replace(tmp, dest)
        print(f"[softlab run] {src.name} done in {time.time() - start:.1f} s", flush=True)
        written.append(dest)
    return written


def _uses(notebook: Path, names: tuple[str, ...]) -> bool:
    """Whether a code cell of ``notebook`` mentions one of ``names``."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return any(c.cell_type == "code" and any(n in c.source for n in names) for c in nb.cells)


#: Calls in a notebook's code that read the robustness grid: `softlab run` then computes its cells
#: first, with progress bars on the terminal (inside a kernel they would run silently).
ROBUSTNESS_CALLS = ("robustness_results(", "robustness_grid(")


def _train_first(values: dict[str, Any], paths: list[Path], progress: bool) -> None:
    """Compute (or load) what the notebooks read — every run and table when one of them shows
    results, else the prepared arms; the robustness cells when chapter 8 runs — with progress
    bars on stderr (tqdm)."""
    start = time.time()
    did = False
    if any(_uses(p, ("book.results", "book.verdicts")) for p in paths):
        from softlab.report import book_results

        print("[softlab run] training the runs the chapters read (cached runs load)", flush=True)
        book_results(values, progress=progress)
        if any(_uses(p, ("book.variance_decomposition",)) for p in paths):
            from softlab.chapter import Book

            print("[softlab run] training the nested designs of the variance decomposition", flush=True)
            Book({**values, "progress": progress}).variance_decomposition()
        did = True
    elif any(_uses(p, ("book.prepared",)) for p in paths):
        from softlab.experiment import configs_from_params, prepare_arms

        print("[softlab run] preparing the arms the chapters read (cached teachers load)", flush=True)
        prepare_arms(configs_from_params(values)[0], progress=progress)
        did = True
    if any(_uses(p, ROBUSTNESS_CALLS) for p in paths):
        from softlab.robustness import robustness_results

        print("[softlab run] training the robustness cells chapter 8 reads (cached cells load)", flush=True)
        robustness_results(values, progress=progress)
        did = True
    if did:
        print(f"[softlab run] ready in {time.time() - start:.1f} s", flush=True)


def _hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected parameters cell ``remove-cell``: the book states the parameter
    set in one line of prose instead of showing an assignment dump."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, path)


def build_book(strict: bool = True, root: Path = PROJECT_ROOT) -> int:
    """``jupyter-book build`` the project root (``_config.yml``/``_toc.yml``) into ``_build/html``."""
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe is None:
        raise PipelineError("jupyter-book is not installed; run `make setup`")
    cmd = [exe, "build", str(root), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("[softlab book]", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)
