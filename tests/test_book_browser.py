"""The built smoke book read in a real browser (Playwright + Debian chromium) at 1280 × 900.

Every page of _toc.yml is served over HTTP from the strict build of tests/_book.py and opened
after MathJax has typeset it. On every page:

- nothing in the main column is wider than the column: tables, figures, images, inline SVG,
  cell outputs, code blocks and typeset equations (every collapsed block opened first) keep
  scrollWidth ≤ clientWidth + 1 and stay inside the column's box;
- every image has a non-empty alt text (inline SVG figures: an aria-label), and raster figures
  are shown at ≥ 90% of their size, so text drawn at ≥ 9 pt stays legible;
- no visible output shows a Python traceback, an error or stderr stream, or parameter plumbing
  (papermill's ``# Parameters`` cell, the parameters cell, the setup's name list);
- every internal link resolves: its target file exists and its #anchor is an id on that page
  (links inside inline SVG figures included);
- where the book serves MathJax itself (book/_ext/mathjax_local.py), every equation is typeset.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from _browser import launch, require_chromium

require_chromium()
sync_api = pytest.importorskip("playwright.sync_api")

from _book import BuiltBook, built_book, toc_files  # noqa: E402, F401  (built_book is a fixture)

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 900}
MIN_IMAGE_SCALE = 0.9

#: Text that must never be visible on a page.
FORBIDDEN = {
    "a Python traceback": re.compile(r"Traceback \(most recent call last\)|^\s*Cell In\[\d+\], line \d+", re.MULTILINE),
    "papermill's parameters cell": re.compile(r"^# Parameters\s*$", re.MULTILINE),
    "the parameters cell": re.compile(r"^\s*params_name\s*=", re.MULTILINE),
    "the setup's name list": re.compile(r"PARAMETER_NAMES"),
}

VISIBLE_TEXT_JS = """() => {
  const main = document.querySelector('article.bd-article') || document.querySelector('main');
  const bad = [...main.querySelectorAll('.output.traceback, .output.error, .output.stderr, .output_stderr')]
    .filter(el => el.getClientRects().length > 0).map(el => el.className);
  return {text: main.innerText, bad};
}"""

LAYOUT_JS = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const main = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = main.getBoundingClientRect();
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
    ' "' + (el.textContent || el.getAttribute('aria-label') || el.getAttribute('src') || '').trim().slice(0, 60) + '"';
  const overflow = [];
  const selector = 'table, figure, img, svg, .cell_output, .output, pre, div.math, mjx-container[display="true"]';
  for (const el of main.querySelectorAll(selector)) {
    if (el.getClientRects().length === 0) continue;
    if (el.tagName.toLowerCase() !== 'svg' && el.closest('svg')) continue;
    if (el.closest('button')) continue;
    const r = el.getBoundingClientRect();
    const inner = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
    const outside = r.right > column.right + 1 || r.left < column.left - 1;
    if (inner || outside) {
      const box = `${Math.round(r.left)}..${Math.round(r.right)}`;
      const col = `${Math.round(column.left)}..${Math.round(column.right)}`;
      overflow.push(`${name(el)}: scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}` +
                    ` or box ${box} outside ${col}`);
    }
  }
  const images = [...main.querySelectorAll('img')].map(img => ({
    src: img.getAttribute('src'), alt: (img.getAttribute('alt') || '').trim(),
    shown: img.getBoundingClientRect().width, natural: img.naturalWidth}));
  const svgs = [...main.querySelectorAll('figure svg, .cell_output svg')]
    .filter(s => !s.parentElement.closest('svg') && !s.closest('button'))
    .map(s => ({label: (s.getAttribute('aria-label') || '').trim(), role: s.getAttribute('role')}));
  const links = [...document.querySelectorAll('a')]
    .map(a => a.getAttribute('href') || a.getAttribute('xlink:href'))
    .filter(h => h && !/^(https?:|mailto:|data:|javascript:)/.test(h))
    .map(h => new URL(h, document.baseURI).href);
  const maths = [...main.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.trim().slice(0, 60));
  const script = [...document.scripts].map(s => s.getAttribute('src') || '')
    .find(s => s.includes('tex-mml-chtml')) || '';
  const localMathjax = script.includes('_static/mathjax');
  return {overflow, images, svgs, links, maths: maths.length, untypeset, localMathjax};
}"""


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served_book(built_book: BuiltBook) -> Iterator[tuple[str, Path]]:  # noqa: F811
    if built_book.returncode != 0 or not (built_book.html / "index.html").exists():
        pytest.fail(
            "the book did not build, so it cannot be read (see test_book_builds_strictly):\n" + built_book.log[-3000:]
        )
    handler = functools.partial(_QuietHandler, directory=str(built_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", built_book.html
    finally:
        server.shutdown()
        server.server_close()


def _broken_links(links: list[str], base: str, html: Path) -> list[str]:
    broken = []
    for link in sorted(set(links)):
        if not link.startswith(base):
            continue  # another origin: not an internal link
        parts = urlsplit(link)
        rel = unquote(parts.path[len(urlsplit(base).path) :])
        target = html / rel
        if rel == "" or rel.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link}: no file {target.relative_to(html)}")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
            broken.append(f"{link}: no id {parts.fragment!r} on {target.relative_to(html)}")
    return broken


def test_every_page_reads_well_at_1280_px(served_book: tuple[str, Path]) -> None:
    base, html = served_book
    pages = [doc + ".html" for doc in toc_files()]
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for rel in pages:
                errors.clear()
                page.goto(base + rel, wait_until="load")
                page.wait_for_function("() => !window.MathJax || !MathJax.startup || !!MathJax.startup.promise")
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
                seen = page.evaluate(VISIBLE_TEXT_JS)
                for what, pattern in FORBIDDEN.items():
                    hit = pattern.search(seen["text"])
                    if hit:
                        problems.append(f"{rel}: shows {what}: {hit.group(0).strip()[:80]!r}")
                problems += [f"{rel}: shows an error or stderr output ({c})" for c in seen["bad"]]
                layout = page.evaluate(LAYOUT_JS)
                problems += [f"{rel}: wider than the column: {o}" for o in layout["overflow"]]
                for img in layout["images"]:
                    if not img["alt"]:
                        problems.append(f"{rel}: image without alt text: {img['src']}")
                    if img["natural"] and img["shown"] < MIN_IMAGE_SCALE * img["natural"]:
                        problems.append(
                            f"{rel}: image shrunk to {img['shown']:.0f} of {img['natural']} px "
                            f"(text below 9 pt): {img['src']}"
                        )
                problems += [
                    f"{rel}: inline SVG figure without role=img and aria-label"
                    for s in layout["svgs"]
                    if not s["label"] or s["role"] != "img"
                ]
                problems += [f"{rel}: broken link {b}" for b in _broken_links(layout["links"], base, html)]
                if layout["localMathjax"]:
                    problems += [f"{rel}: equation not typeset: {m!r}" for m in layout["untypeset"]]
                problems += [f"{rel}: page error: {e}" for e in errors]
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
