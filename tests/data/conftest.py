"""Fixtures for the data tests: an isolated cache, phantoms, real data, dataset builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbalance.data.phantom import write_phantom

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own SEGBALANCE_CACHE (nothing written to ~/.cache)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SEGBALANCE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small one-class phantom: 6 cases of 40^3 with 0.4 % foreground (read-only)."""
    return write_phantom(
        tmp_path_factory.mktemp("phantom") / "ph",
        n_cases=6,
        shape=(40, 40, 40),
        fg_fraction=0.004,
        seed=3,
    )


@pytest.fixture(scope="session")
def phantom2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-class phantom with anisotropic spacing: 4 cases of 32x40x36."""
    return write_phantom(
        tmp_path_factory.mktemp("phantom2") / "ph2",
        n_cases=4,
        shape=(32, 40, 36),
        fg_fraction=0.006,
        n_classes=2,
        seed=5,
        spacing=(0.8, 1.0, 1.5),
    )


def shared_dataset(name: str) -> Path:
    """Path of a real dataset beside the repository, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not (path / "dataset.json").is_file():
        pytest.skip(
            f"real data not available: {path} is absent (the 'shared' folder beside the repository)"
        )
    return path
