"""One synthetic compare folder per test session (copied by tests that change it)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from segbalance.report import build_report

from ._fixture import write_compare_folder, write_dataset


@pytest.fixture(scope="session")
def compare_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report_fixture")
    dataset = write_dataset(base / "dataset")
    return write_compare_folder(base / "compare", dataset)


@pytest.fixture
def compare_copy(compare_source: Path, tmp_path: Path) -> Callable[[], Path]:
    """A fresh copy of the compare folder (its dataset is shared, read-only)."""

    def make() -> Path:
        target = tmp_path / f"compare_{len(list(tmp_path.iterdir()))}"
        shutil.copytree(compare_source, target)
        return target

    return make


@pytest.fixture(scope="session")
def built_report(compare_source: Path) -> Path:
    """``report.html`` of the complete fixture; no section may fail (warnings are errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = build_report(compare_source)
    assert path == compare_source / "report.html"
    return path
