"""The Jupyter Book builds with warnings as errors (-W -n --keep-going), from the book's pages
and the executed smoke notebooks committed in tests/expected/ (or SOFTLAB_BOOK_NOTEBOOKS; see
tests/_book.py, which shares the build with tests/test_book_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

from _book import BuiltBook, built_book, toc_files  # noqa: F401  (built_book is a fixture)

from softlab.paths import PROJECT_ROOT


def test_book_builds_strictly(built_book: BuiltBook) -> None:  # noqa: F811
    assert not built_book.missing, f"chapters listed in _toc.yml but missing: {built_book.missing}"
    assert built_book.returncode == 0, built_book.log
    assert (built_book.html / "index.html").exists()
    for doc in toc_files():
        assert (built_book.html / doc).with_suffix(".html").exists(), f"{doc} was not built"


#: What a build machine's absolute path looks like in published HTML.
MACHINE_PATH = re.compile(r"(?<![\w.:/])/(?:home|root|work|tmp|Users|var/folders|opt)/[\w.+-]+")


def test_no_page_prints_a_machine_path(built_book: BuiltBook) -> None:  # noqa: F811
    """The published HTML names no absolute path of the machine that built it (a skipped arm's
    notice, the API page's defaults): readers cannot use it and it leaks the builder's layout."""
    roots = {str(built_book.root), str(PROJECT_ROOT), str(Path.home())}
    problems = []
    for page in sorted(built_book.html.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        hits = [r for r in roots if r in text] + MACHINE_PATH.findall(text)
        if hits:
            problems.append(f"{page.relative_to(built_book.html)}: {sorted(set(hits))[:3]}")
    assert not problems, "\n".join(problems)


def test_the_machine_path_check_sees_one() -> None:
    assert MACHINE_PATH.findall("put it in /root/.cache/softlab/data (SOFTLAB_DATA_DIR)") == ["/root/.cache"]
    assert not MACHINE_PATH.findall('see <a href="../_static/x.png">https://example.org/home/page</a>')


def test_glossary_defines_every_condition_and_verdict_and_every_page_links_it(built_book: BuiltBook) -> None:  # noqa: F811
    from softlab.labels import ALL_CONDITIONS
    from softlab.present import VERDICT_COLOURS

    glossary = (built_book.html / "book" / "glossary.html").read_text(encoding="utf-8")
    terms = set(re.findall(r'<dt id="term-[^"]*">(.*?)<', glossary))
    shapes = {c.split("/", 1)[1] for c in ALL_CONDITIONS}
    missing = [
        w
        for w in (
            *shapes,
            "+ts",
            "reference",
            "mode shift",
            "margin",
            "MDE",
            "verdict arm",
            "negligible",
            *VERDICT_COLOURS,
        )
        if w not in terms
    ]
    missing += [c for c in ALL_CONDITIONS if c not in terms and c.split("/", 1)[1] not in terms]
    assert not missing, f"the glossary does not define {missing}"

    def article(doc: str) -> str:  # the page's own text: the sidebar lists the glossary everywhere
        html = (built_book.html / doc).with_suffix(".html").read_text(encoding="utf-8")
        start = html.find("<article")
        return html[start : html.find("</article>", start)]

    unlinked = [doc for doc in toc_files() if doc != "book/glossary" and "glossary.html" not in article(doc)]
    assert not unlinked, f"pages that never link the glossary: {unlinked}"
