"""Sphinx extension for the softlab book (``sphinx.local_extensions`` in ``_config.yml``).

1. **MathJax from the book itself**, so equations render offline. When the configuration is read,
it looks for the pinned MathJax in the user cache (``$XDG_CACHE_HOME/softlab/mathjax`` or
``~/.cache/softlab/mathjax``); when missing, it fetches the package with the ordinary npm
client (``npm pack mathjax@<version>``, ``--offline`` when ``SOFTLAB_OFFLINE=1``), checks the
tarball's pinned SHA-256, and unpacks the parts the book needs (the TeX + MathML → CommonHTML
component, its fonts and the input/UI extensions it loads on demand). The book then loads
``_static/mathjax/tex-mml-chtml.js``.

When npm is missing, offline with an empty npm cache, or the checksum does not match, the book
keeps Sphinx's CDN address and the build says so in one line (never a warning: the book builds
with warnings as errors). ``SOFTLAB_MATHJAX=cdn`` keeps the CDN on purpose.

2. **Module docstrings read as text on the API page.** Section titles inside a module's
docstring (``Definitions`` underlined with dashes) would become sections of the API page — a
table of contents full of "Definitions" and duplicate targets — so they are shown as bold
run-in headings (rubrics) instead.

3. **Prose doc-comments stay prose.** Napoleon reads the first line of an attribute's or module
constant's doc-comment as ``type: description``, so ``#: The metric registry: name -> spec``
became a "type" named "The metric registry" (a broken cross-reference). After napoleon, such a
``:type:`` that is not a type name (it has spaces) is put back in front of its description (a
property's first line alike, such as ``(n, C): the probabilities ...``).

4. **Short names resolve.** A docstring may name a class or constant of another module by its
short name (``HumanLabels``) or through a re-exporting package (``softlab.data.load_human``);
when exactly one documented object has that last name, the reference points to it. A name that
is not on the API page but exists in the code (an undocumented constant such as
``TABLE_COLUMNS``, a private helper) is shown as code without a link; a name that exists nowhere
still fails the build.

5. **This package's field style.** Docstrings here write parameters as ``name : (N, C) float —
what it is`` or ``name : what it is``; napoleon would read everything after the colon as a type
(and try to link its words). Before napoleon runs, ``TYPE — DESCRIPTION`` is split at the dash
and a prose "type" becomes the description.

6. **Each script once per page.** Jupyter Book 1.0's build registers sphinx-thebe's inline
configuration script twice, so every page threw "Identifier 'THEBE_JS_URL' has already been
declared"; identical script entries are dropped from each page's context.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

VERSION = "3.2.2"
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
#: Members of the npm tarball the book needs, under ``package/es5/``.
KEEP = ("tex-mml-chtml.js", "input/", "output/chtml/", "ui/", "a11y/", "adaptors/")

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "softlab" / "mathjax"


def _fetch_tarball(dest_dir: Path) -> Path:
    """``npm pack`` the pinned MathJax into ``dest_dir``; return the tarball path."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH")
    cmd = [npm, "pack", f"mathjax@{VERSION}", "--silent", "--pack-destination", str(dest_dir)]
    if os.environ.get("SOFTLAB_OFFLINE", "") not in ("", "0"):
        cmd.append("--offline")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    tarball = dest_dir / f"mathjax-{VERSION}.tgz"
    if proc.returncode != 0 or not tarball.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"npm pack mathjax@{VERSION} failed: {tail[0]}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"mathjax-{VERSION}.tgz has SHA-256 {digest}, expected {SHA256}")
    return tarball


def vendored_mathjax() -> Path:
    """The folder holding ``tex-mml-chtml.js`` of the pinned MathJax (``<cache>/<version>/mathjax``),
    fetched once per user."""
    target = cache_root() / VERSION / "mathjax"
    if (target / "tex-mml-chtml.js").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tarball = _fetch_tarball(Path(tmp))
        unpacked = Path(tmp) / "es5"
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("package/es5/")
                if member.name.startswith("package/es5/") and member.isfile() and name.startswith(KEEP):
                    member.name = name
                    tar.extract(member, unpacked, filter="data")
        try:
            unpacked.rename(target)  # atomic: another build may have won the race, which is fine
        except OSError:
            if not (target / "tex-mml-chtml.js").exists():
                raise
    return target


def _use_local_mathjax(app: Sphinx, config) -> None:
    if os.environ.get("SOFTLAB_MATHJAX", "") == "cdn":
        logger.info("softlab_book: SOFTLAB_MATHJAX=cdn, equations load MathJax from the CDN")
        return
    try:
        folder = vendored_mathjax()
    except (OSError, RuntimeError, subprocess.SubprocessError, tarfile.TarError) as err:
        logger.info(f"softlab_book: {err}; equations load MathJax from the CDN")
        return
    # an html_static_path folder's contents are copied into _static/: its parent brings "mathjax/"
    config.html_static_path = [*config.html_static_path, str(folder.parent)]
    config.mathjax_path = "mathjax/tex-mml-chtml.js"
    logger.info(f"softlab_book: MathJax {VERSION} served from _static/mathjax ({folder})")


def _unique_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        # the two copies differ only in filename None vs "": both mean an inline script
        name = getattr(js, "filename", js) or ""
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


_UNDERLINE = set("-=~^\"'`#*+")


def _titles_to_rubrics(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """Turn ``Title`` + underline pairs of module docstrings into ``.. rubric:: Title``."""
    if what != "module":
        return
    out: list[str] = []
    i = 0
    while i < len(lines):
        title = lines[i]
        under = lines[i + 1] if i + 1 < len(lines) else ""
        stripped = under.strip()
        if (
            title.strip()
            and stripped
            and set(stripped) <= _UNDERLINE
            and len(set(stripped)) == 1
            and len(stripped) >= max(3, len(title.strip()) - 1)
            and not title.startswith(" ")
        ):
            out += [f".. rubric:: {title.strip()}", ""]
            i += 2
            continue
        out.append(title)
        i += 1
    lines[:] = out


def _prose_types_back(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """Undo napoleon's ``type: description`` split of a prose doc-comment or property docstring
    (see the module docstring)."""
    if what not in ("data", "attribute", "property"):
        return
    for i, line in enumerate(lines):
        if line.startswith(":type: ") and " " in line[7:].strip():
            prose_type = line[7:].strip()
            del lines[i]
            if i > 0 and lines[i - 1] == "":
                del lines[i - 1]
            first = next((k for k, text in enumerate(lines) if text.strip()), None)
            if first is None:
                lines.insert(0, prose_type)
            else:
                lines[first] = f"{prose_type}: {lines[first].lstrip()}"
            return


def _resolve_short_names(app: Sphinx, env, node, contnode):
    """Resolve an unresolved Python reference whose last name matches one documented object."""
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    if not target or " " in target:
        return None
    last = target.rsplit(".", 1)[-1]
    domain = env.get_domain("py")
    hits = [
        (full, obj)
        for full, obj in domain.objects.items()
        if (full == last or full.endswith("." + last)) and not obj.aliased
    ]
    if len(hits) == 1:
        from sphinx.util.nodes import make_refnode

        full, obj = hits[0]
        return make_refnode(app.builder, node.get("refdoc", env.docname), obj.docname, obj.node_id, contnode, full)
    return contnode if _exists_in_code(target, node.get("py:module")) else None


def _exists_in_code(target: str, module: str | None) -> bool:
    """Whether ``target`` names an object of the package (dotted from a module, or a name of
    the referring ``module``)."""
    import importlib

    candidates = [(module, target)] if module else []
    parts = target.split(".")
    candidates += [(".".join(parts[:k]), ".".join(parts[k:])) for k in range(len(parts) - 1, 0, -1)]
    for mod_name, attr in candidates:
        try:
            obj = importlib.import_module(mod_name)
        except (ImportError, ValueError):
            continue
        for name in attr.split("."):
            obj = getattr(obj, name, _MISSING)
            if obj is _MISSING:
                break
        if obj is not _MISSING:
            return True
    return False


_MISSING = object()


_FIELD_SECTIONS = {"parameters", "other parameters", "attributes", "returns", "yields", "keyword arguments"}
_FIELD = re.compile(r"^(?P<indent>)(?P<name>\*{0,2}[A-Za-z_][\w, *]*?) ?: (?P<rest>.+)$")


def _looks_like_type(text: str) -> bool:
    return len(text.split()) <= 3 and not text.rstrip().endswith(".")


def _continuation(lines: list[str], start: int) -> list[str]:
    """The indented lines that continue a field's description from ``start`` on."""
    block = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        block.append(line)
    return block


def _split_fields(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """``name : TYPE — DESCRIPTION`` → ``name : TYPE`` + indented description, before napoleon."""
    section = None
    out: list[str] = []
    skip: set[int] = set()
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt.strip() and set(nxt.strip()) == {"-"} and not line.startswith(" "):
            section = line.strip().lower()
        m = _FIELD.match(line) if section in _FIELD_SECTIONS else None
        if m:
            field, rest = m.group("name"), m.group("rest").strip()
            kind, dash, desc = rest.partition(" — ")
            if dash and _looks_like_type(kind):
                head, body = f" : {kind.strip()}", desc.strip()
            elif not _looks_like_type(rest):
                head, body = "", rest
            else:
                out.append(line)
                continue
            # "seed, fold: …" documents two names: napoleon would read "seed," as a type
            names = [n.strip() for n in field.split(",") if n.strip()]
            block = list(_continuation(lines, i + 1))
            for n in names:
                out += [f"{n}{head}", f"    {body}", *block]
            skip.update(range(i + 1, i + 1 + len(block)))
            continue
        if i in skip:
            continue
        out.append(line)
    lines[:] = out


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", _split_fields, priority=400)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _titles_to_rubrics)
    app.connect("autodoc-process-docstring", _prose_types_back, priority=600)  # after napoleon (500)
    app.connect("missing-reference", _resolve_short_names)
    app.connect("config-inited", _use_local_mathjax)
    app.connect("html-page-context", _unique_scripts)
    return {"version": VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
