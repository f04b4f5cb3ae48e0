"""The Jupyter Book builds with warnings as errors (-W -n --keep-going), from the book's pages
and the executed smoke notebooks committed in tests/expected/ (or SOFTLAB_BOOK_NOTEBOOKS; see
tests/_book.py, which shares the build with tests/test_book_browser.py)."""

from __future__ import annotations

from _book import BuiltBook, built_book, toc_files  # noqa: F401  (built_book is a fixture)


def test_book_builds_strictly(built_book: BuiltBook) -> None:  # noqa: F811
    assert not built_book.missing, f"chapters listed in _toc.yml but missing: {built_book.missing}"
    assert built_book.returncode == 0, built_book.log
    assert (built_book.html / "index.html").exists()
    for doc in toc_files():
        assert (built_book.html / doc).with_suffix(".html").exists(), f"{doc} was not built"
