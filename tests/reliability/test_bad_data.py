"""A generated corpus of broken datasets through the real CLI (``analyze`` and ``train``).

Each entry corrupts one case of a clean 3-case MSD dataset (builders of tests/data). The
contract for every entry and both commands: exit 2, exactly one stderr line
``error: <case>: ...`` naming the case, no traceback (without ``--debug``), nothing written
into the dataset folder, and ``train`` creates no run folder.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.data._builders import blob_case, make_msd, save_nifti
from tests.data.test_bad_input import _set_header_shape
from tests.train.conftest import TINY, deep_update

from ._runs import write_yaml
from .conftest import record


def _corrupt_gzip(root: Path) -> None:
    path = root / "imagesTr" / "case_0.nii.gz"
    data = bytearray(path.read_bytes())
    data[60:400] = np.random.default_rng(0).integers(0, 256, 340, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _truncated_gzip(root: Path) -> None:
    path = root / "imagesTr" / "case_2.nii.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _truncated_stream(root: Path) -> None:
    # a complete gzip member whose NIfTI payload stops half-way (the footer agrees)
    path = root / "labelsTr" / "case_1.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 352 + (len(raw) - 352) // 3]))


def _two_dimensional(root: Path) -> None:
    save_nifti(root / "imagesTr" / "case_1.nii.gz", np.ones((12, 14), np.float32))


def _five_dimensional(root: Path) -> None:
    save_nifti(root / "labelsTr" / "case_2.nii.gz", np.zeros((12, 14, 10, 1, 2), np.uint8))


def _nan_voxels(root: Path) -> None:
    image, _ = blob_case(2)
    image[1, 2, 3] = np.nan
    save_nifti(root / "imagesTr" / "case_2.nii.gz", image)


def _inf_voxels(root: Path) -> None:
    image, _ = blob_case(0)
    image[0, 0, 0] = -np.inf
    save_nifti(root / "imagesTr" / "case_0.nii.gz", image)


def _undeclared_label(root: Path) -> None:
    _, label = blob_case(1)
    label[0, 0, 0] = 3
    save_nifti(root / "labelsTr" / "case_1.nii.gz", label)


def _shape_mismatch(root: Path) -> None:
    save_nifti(root / "labelsTr" / "case_1.nii.gz", np.zeros((12, 14, 9), np.uint8))


def _affine_mismatch(root: Path) -> None:
    shifted = np.eye(4)
    shifted[1, 3] = 0.5
    save_nifti(root / "labelsTr" / "case_2.nii.gz", blob_case(2)[1], shifted)


def _zero_size(root: Path) -> None:
    (root / "labelsTr" / "case_1.nii.gz").write_bytes(b"")


def _symlink_outside(root: Path) -> None:
    outside = save_nifti(root.parent / "elsewhere" / "secret.nii.gz", blob_case(0)[0])
    link = root / "imagesTr" / "case_0.nii.gz"
    link.unlink()
    os.symlink(outside, link)


def _dotdot_case(root: Path) -> None:
    save_nifti(root.parent / "outside.nii.gz", blob_case(1)[0])
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/../../outside.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))


def _huge_header(root: Path) -> None:
    _set_header_shape(root / "imagesTr" / "case_1.nii.gz", (30000, 30000, 30000))


#: name -> (corruption, the case the one error line must name, a word it must contain)
CORPUS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "corrupt-gzip": (_corrupt_gzip, "case_0", "corrupt"),
    "truncated-gzip": (_truncated_gzip, "case_2", "truncated"),
    "truncated-stream": (_truncated_stream, "case_1", "truncated"),
    "2d-image": (_two_dimensional, "case_1", "case_1"),
    "5d-label": (_five_dimensional, "case_2", "case_2"),
    "nan-voxels": (_nan_voxels, "case_2", "NaN"),
    "inf-voxels": (_inf_voxels, "case_0", "finite"),
    "undeclared-label": (_undeclared_label, "case_1", "undeclared"),
    "shape-mismatch": (_shape_mismatch, "case_1", "shape"),
    "affine-mismatch": (_affine_mismatch, "case_2", "affine"),
    "zero-size": (_zero_size, "case_1", "empty file"),
    "symlink-outside": (_symlink_outside, "case_0", "symlink"),
    "dotdot-case": (_dotdot_case, "outside", "escapes the dataset folder"),
    "huge-header": (_huge_header, "case_1", "30000"),
}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


def _one_error_line(stderr: str, case: str, word: str) -> str | None:
    lines = stderr.strip().splitlines()
    if "Traceback" in stderr or len(lines) != 1:
        return f"not one line: {stderr[-500:]!r}"
    if not lines[0].startswith(f"error: {case}: ") or word not in lines[0]:
        return f"line does not name {case!r} / {word!r}: {lines[0]!r}"
    return None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpus")
    roots = {}
    for name, (corrupt, _, _) in CORPUS.items():
        root = make_msd(base / name / "ds", {f"case_{i}": blob_case(i) for i in range(3)})
        corrupt(root)
        roots[name] = root
    return roots


@pytest.mark.parametrize("command", ["analyze", "analyze-check", "train"])
def test_bad_data_corpus_through_the_cli(cli, corpus, tmp_path, command: str) -> None:
    failures = []
    for name, (_, case, word) in CORPUS.items():
        root = corpus[name]
        before = _snapshot(root)
        run_dir = tmp_path / f"run-{name}"
        if command == "train":
            raw = deep_update(TINY, {"data": {"dataset": str(root), "patch_size": [8, 8, 8]}})
            config = write_yaml(tmp_path / f"{name}.yaml", raw, output=str(run_dir))
            result = cli.run("train", config, "--quiet")
        else:
            extra = ["--check"] if command == "analyze-check" else ["--json"]
            result = cli.run("analyze", root, *extra)
        problem = None if result.code == 2 else f"exit {result.code}: {result.stderr[-300:]}"
        problem = problem or _one_error_line(result.stderr, case, word)
        if not problem and _snapshot(root) != before:
            problem = "files written into the dataset folder"
        if not problem and run_dir.exists():
            problem = f"run files written: {sorted(p.name for p in run_dir.iterdir())}"
        if not problem and command != "train" and result.stdout.strip():
            problem = f"stdout not empty: {result.stdout[:200]!r}"
        if problem:
            failures.append((name, problem))
    record("bad-data", len(CORPUS), len(CORPUS), len(failures), fault_word="corrupt datasets")
    assert not failures, failures


def test_huge_header_is_refused_under_a_small_address_space_limit(corpus) -> None:
    """``analyze`` in a plain ``python -m segbalance`` process capped at 1 GiB of address
    space: reading a header that declares 30000^3 voxels must end in the one-line exit 2,
    not in a MemoryError from an attempted allocation (108 GB as float32)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    result = subprocess.run(
        [sys.executable, "-m", "segbalance", "analyze", str(corpus["huge-header"]), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )
    record("bad-data", 1, 1, int(result.returncode != 2), fault_word="corrupt datasets")
    assert result.returncode == 2, result.stderr[-1000:]
    assert _one_error_line(result.stderr, "case_1", "(30000, 30000, 30000)") is None


def test_debug_shows_the_traceback(cli, corpus) -> None:
    result = cli.run("--debug", "analyze", corpus["zero-size"])
    assert result.code != 0 and "Traceback" in result.stderr and "InputError" in result.stderr


def test_bad_data_leaves_no_run_folder_and_the_fixed_rerun_starts(cli, tmp_path) -> None:
    root = make_msd(tmp_path / "ds", {f"case_{i}": blob_case(i) for i in range(3)})
    _zero_size(root)
    raw = deep_update(
        TINY,
        {
            "data": {"dataset": str(root), "patch_size": [8, 8, 8]},
            "budget": {"steps": 1, "epochs": None},
            "validation": {"final_evaluation": False},
        },
    )
    config = write_yaml(tmp_path / "c.yaml", raw, output=str(tmp_path / "run"))
    assert cli.run("train", config, "--quiet").code == 2
    save_nifti(root / "labelsTr" / "case_1.nii.gz", blob_case(1)[1])  # the user fixes the case
    rerun = cli.run("train", config, "--quiet")
    assert rerun.code == 0, rerun.stderr
