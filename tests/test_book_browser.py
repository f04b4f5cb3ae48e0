"""The built smoke book read in a real browser (Playwright + Debian chromium) at 1280 × 900 (a
laptop) and 390 × 844 (a phone).

Every page of _toc.yml is served over HTTP from the strict build of tests/_book.py and opened
after MathJax has typeset it. At both widths, on every page:

- the page never scrolls sideways (document scrollWidth ≤ clientWidth);
- nothing in the main column is wider than the column: tables, figures, images, inline SVG,
  cell outputs, code blocks and typeset equations (every collapsed block opened first) keep
  scrollWidth ≤ clientWidth + 1 and stay inside the column's box (on the phone a displayed
  equation too wide even when scaled down may scroll inside its own box);
- every image has a non-empty alt text (inline SVG figures: an aria-label), and every raster
  image has at least twice as many pixels as it is shown with (sharp on high-density screens),
- it links the glossary at least once (the glossary page itself excepted);
- no visible output shows a Python traceback, an error or stderr stream, or parameter plumbing
  (papermill's ``# Parameters`` cell, the parameters cell, the setup's name list);
- every internal link resolves: its target file exists and its #anchor is an id on that page
  (links inside inline SVG figures included);
- where the book serves MathJax itself (book/_ext/mathjax_local.py), every equation is typeset.

And: the article header's sidebar toggle opens the chapter list (collapses the sidebar on the
laptop, opens it as a dialog on the phone); chapter 6's data map shows a tooltip on hover.
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
VIEWPORTS = {"laptop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
MIN_DENSITY = 2.0  # a raster image's pixels per displayed pixel

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
  const narrow = document.documentElement.clientWidth < 577;
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
    // on a phone a wide equation may scroll inside its own box (the page does not)
    const ownScroll = narrow && el.matches('mjx-container[display="true"]') &&
      getComputedStyle(el).overflowX === 'auto';
    const inner = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && !ownScroll;
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
  const glossary = [...main.querySelectorAll('a')]  // in the article: the sidebar always lists the page
    .some(a => /(^|\\/)glossary\\.html/.test(a.getAttribute('href') || ''));
  const page = {scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth};
  const maths = [...main.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.trim().slice(0, 60));
  const script = [...document.scripts].map(s => s.getAttribute('src') || '')
    .find(s => s.includes('tex-mml-chtml')) || '';
  const localMathjax = script.includes('_static/mathjax');
  return {overflow, images, svgs, links, maths: maths.length, untypeset, localMathjax, glossary, page};
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


@pytest.mark.parametrize("device", sorted(VIEWPORTS))
def test_every_page_reads_well_on_a_laptop_and_a_phone(served_book: tuple[str, Path], device: str) -> None:
    base, html = served_book
    pages = [doc + ".html" for doc in toc_files()]
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEWPORTS[device])
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
                        problems.append(f"{device} {rel}: shows {what}: {hit.group(0).strip()[:80]!r}")
                problems += [f"{device} {rel}: shows an error or stderr output ({c})" for c in seen["bad"]]
                layout = page.evaluate(LAYOUT_JS)
                problems += [f"{device} {rel}: wider than the column: {o}" for o in layout["overflow"]]
                if layout["page"]["scrollWidth"] > layout["page"]["clientWidth"] + 1:
                    problems.append(
                        f"{device} {rel}: the page scrolls sideways ({layout['page']['scrollWidth']} px wide)"
                    )
                if not layout["glossary"] and rel != "book/glossary.html":
                    problems.append(f"{device} {rel}: never links the glossary")
                for img in layout["images"]:
                    if not img["alt"]:
                        problems.append(f"{device} {rel}: image without alt text: {img['src']}")
                    if img["shown"] and img["natural"] < MIN_DENSITY * img["shown"] - 1:
                        problems.append(
                            f"{rel}: image of {img['natural']} px shown {img['shown']:.0f} px wide "
                            f"(needs {MIN_DENSITY:g}x for high-density screens): {img['src']}"
                        )
                problems += [
                    f"{rel}: inline SVG figure without role=img and aria-label"
                    for s in layout["svgs"]
                    if not s["label"] or s["role"] != "img"
                ]
                problems += [f"{device} {rel}: broken link {b}" for b in _broken_links(layout["links"], base, html)]
                if layout["localMathjax"]:
                    problems += [f"{device} {rel}: equation not typeset: {m!r}" for m in layout["untypeset"]]
                problems += [f"{device} {rel}: page error: {e}" for e in errors]
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


TOGGLE_JS = """() => {
  const sidebar = document.querySelector('#pst-primary-sidebar');
  const dialog = document.querySelector('#pst-primary-sidebar-modal');
  const links = el => el ? [...el.querySelectorAll('nav a')].filter(a => a.getClientRects().length > 0).length : 0;
  return {hidden: sidebar ? sidebar.classList.contains('pst-sidebar-hidden') : null,
          sidebarVisible: sidebar ? sidebar.getBoundingClientRect().right > 0 &&
                          getComputedStyle(sidebar).visibility !== 'hidden' : false,
          dialogOpen: !!(dialog && dialog.open), dialogLinks: links(dialog), sidebarLinks: links(sidebar)};
}"""


@pytest.mark.parametrize("device", sorted(VIEWPORTS))
def test_the_sidebar_toggle_opens_the_chapter_list(served_book: tuple[str, Path], device: str) -> None:
    """The visible hamburger button of the article header works: on the laptop it hides and shows
    the chapter list beside the page, on the phone it opens the chapter list as a dialog."""
    base, _ = served_book
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEWPORTS[device])
            page.goto(base + "book/04_training.html", wait_until="load")
            toggle = page.locator("button.primary-toggle:visible").first
            before = page.evaluate(TOGGLE_JS)
            toggle.click()
            page.wait_for_timeout(400)
            after = page.evaluate(TOGGLE_JS)
        finally:
            browser.close()
    if device == "laptop":
        assert before["sidebarVisible"] and before["sidebarLinks"] >= 8, before
        assert after["hidden"] is True, f"the toggle did not collapse the chapter list: {after}"
    else:
        assert not before["dialogOpen"], before
        assert after["dialogOpen"] and after["dialogLinks"] >= 8, f"the toggle did not open the chapter list: {after}"


def test_the_data_map_shows_an_items_tooltip_on_hover(served_book: tuple[str, Path]) -> None:
    """Chapter 6's interactive data map (BokehJS served inside the page) answers a hover over a
    point with the item's image, its votes, the model's distribution and its coordinates."""
    base, _ = served_book
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEWPORTS["laptop"])
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "book/06_cartography.html", wait_until="load")
            box = page.locator(".softlab-datamap").first
            box.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            bb = box.bounding_box()
            assert bb and bb["width"] > 200 and bb["height"] > 200, f"no data map drawn: {bb}"
            tip_text = ""
            for fy in (i / 24 for i in range(3, 22)):
                for fx in (i / 30 for i in range(3, 27)):
                    page.mouse.move(bb["x"] + fx * bb["width"], bb["y"] + fy * bb["height"])
                    tip = page.locator(".softlab-datamap-tip")
                    if tip.count() and tip.first.is_visible():
                        tip_text = tip.first.inner_text()
                        break
                if tip_text:
                    break
            src = page.locator(".softlab-datamap-tip img").first.get_attribute("src") if tip_text else ""
        finally:
            browser.close()
    assert not errors, errors
    assert tip_text, "hovering the data map never showed a tooltip"
    for part in ("item", "votes:", "model:", "confidence", "variability"):
        assert part in tip_text, f"the tooltip lacks {part!r}: {tip_text!r}"
    assert (src or "").startswith("data:image/png;base64,"), "the tooltip shows no image of the item"


FIGURE_TEXT_JS = """() => {
  const shown = el => !!el && el.getClientRects().length > 0;
  const smallest = svg => {
    let px = Infinity;
    for (const t of svg.querySelectorAll('text')) {
      if (!t.textContent.trim() || !shown(t)) continue;
      const m = t.getScreenCTM();
      px = Math.min(px, parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b));
    }
    return px;
  };
  const main = document.querySelector('article.bd-article') || document.querySelector('main');
  const figures = [...main.querySelectorAll('svg[role="img"]')].filter(shown)
    .map(svg => ({label: (svg.getAttribute('aria-label') || '').slice(0, 50), smallest: smallest(svg)}));
  const responsive = [...main.querySelectorAll('.softlab-responsive')].map(fig => ({
    label: (fig.querySelector('svg').getAttribute('aria-label') || '').slice(0, 50),
    wide: shown(fig.querySelector(':scope > .softlab-wide')),
    narrow: shown(fig.querySelector(':scope > .softlab-narrow'))}));
  const images = [...main.querySelectorAll('.cell_output img, figure img')].filter(shown)
    .filter(img => !(img.getAttribute('src') || '').startsWith('data:'))
    .map(img => ({src: img.getAttribute('src'), link: img.closest('a') ? img.closest('a').getAttribute('href') : null,
                  scale: img.getBoundingClientRect().width / (img.naturalWidth / 2)}));
  return {figures, responsive, images};
}"""
MIN_TEXT_PX = 8.0  # the smallest text an inline SVG figure may show on a phone, in CSS pixels


@pytest.mark.parametrize("device", sorted(VIEWPORTS))
def test_inline_figures_fit_the_screen_with_text_that_can_be_read(served_book: tuple[str, Path], device: str) -> None:
    """Every inline SVG figure of the book (the forest plot of the intro and the findings, chapter
    8's curves): on the phone none shows text smaller than MIN_TEXT_PX once scaled to the column
    (the forest plot's long row names once collapsed its panels and drew it 7.8 in wide: 5.5 px;
    chapter 8's wide layouts would show 4.2 and 3.0 px). Chapter 8's two figures are drawn twice
    (plots.SvgFigure(narrow=...)): the laptop shows the wide layout only, the phone the one-column one.
    Every PNG figure (drawn for a laptop's column, shown at about half its size on the phone, its
    labels near 6 px) stays a link to its own file (Sphinx's image reference), so that a tap opens
    it at full size."""
    base, _ = served_book
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEWPORTS[device])
            for rel in [doc + ".html" for doc in toc_files()]:
                page.goto(base + rel, wait_until="load")
                seen = page.evaluate(FIGURE_TEXT_JS)
                if device == "phone":
                    problems += [
                        f"{rel}: text of {f['smallest']:.1f} px in {f['label']!r}"
                        for f in seen["figures"]
                        if f["smallest"] < MIN_TEXT_PX
                    ]
                wanted = {"wide": device == "laptop", "narrow": device == "phone"}
                problems += [
                    f"{rel}: {device} shows {'both layouts' if r['wide'] and r['narrow'] else 'the other layout'}"
                    f" of {r['label']!r}"
                    for r in seen["responsive"]
                    if {"wide": r["wide"], "narrow": r["narrow"]} != wanted
                ]
                problems += [  # a figure shown small opens at full size when tapped
                    f"{rel}: figure {img['src']} shown at {img['scale']:.2f} of its size is not a link to itself"
                    for img in seen["images"]
                    if img["link"] != img["src"]
                ]
                if rel == "book/08_robustness.html" and len(seen["responsive"]) != 2:
                    problems.append(f"{rel}: expected 2 figures drawn twice, found {len(seen['responsive'])}")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
