"""The analysis fingerprint (in the book cache key) covers every computing module, found by walking the package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import softlab
from softlab import report

PACKAGE = Path(softlab.__file__).parent


@pytest.fixture
def package_copy(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "softlab"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "static"))
    claims = tmp_path / "claims.yml"
    shutil.copy(PACKAGE.parent / "params" / "claims.yml", claims)
    return root, claims


def test_the_copy_has_the_packages_fingerprint(package_copy) -> None:
    root, claims = package_copy
    assert report._analysis_fingerprint(root, claims) == report._analysis_fingerprint()


@pytest.mark.parametrize(
    "module", ["inference/verdicts.py", "inference/registry.py", "metrics.py", "stats.py", "data/annotations.py"]
)
def test_editing_a_computing_module_changes_the_key(package_copy, module: str) -> None:
    root, claims = package_copy
    before = report._analysis_fingerprint(root, claims)
    path = root / module
    path.write_text(path.read_text() + "\nX = 1\n")
    assert report._analysis_fingerprint(root, claims) != before


def test_a_module_added_later_is_covered_without_listing_it(package_copy) -> None:
    root, claims = package_copy
    before = report._analysis_fingerprint(root, claims)
    (root / "inference" / "new_kind.py").write_text('"""A test kind added later."""\n')
    assert report._analysis_fingerprint(root, claims) != before
    assert root / "inference" / "new_kind.py" in report.analysis_sources(root)


def test_moving_code_between_modules_changes_the_key(package_copy) -> None:
    root, claims = package_copy
    before = report._analysis_fingerprint(root, claims)
    (root / "inference" / "estimators.py").rename(root / "inference" / "estimators_moved.py")
    assert report._analysis_fingerprint(root, claims) != before


def test_editing_the_claims_file_changes_the_key(package_copy) -> None:
    root, claims = package_copy
    before = report._analysis_fingerprint(root, claims)
    claims.write_text(claims.read_text().replace("alpha: 0.05", "alpha: 0.04"))
    assert report._analysis_fingerprint(root, claims) != before


def test_presentation_modules_do_not_recompute_the_tables(package_copy) -> None:
    root, claims = package_copy
    before = report._analysis_fingerprint(root, claims)
    for module in ("plots.py", "plots_robustness.py", "present.py", "chapter.py", "cli.py", "annotate/app.py"):
        path = root / module
        path.write_text(path.read_text() + "\n# a wording change\n")
    assert report._analysis_fingerprint(root, claims) == before
