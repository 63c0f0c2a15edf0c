"""CLI commands of the data layer: phantom, analyze (--json, --plot, --check), exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segbalance import cli
from segbalance.data.imbalance import imbalance_stats
from segbalance.data.phantom import write_phantom


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGBALANCE_CACHE", str(tmp_path / "cache"))


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
) -> tuple[int, str, str]:
    """Call ``segbalance.cli.main`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["segbalance", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_is_light_and_lists_the_data_commands() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from segbalance.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0 and 'analyze' in r.output and 'phantom' in r.output, r.output\n"
        "r = CliRunner().invoke(app, ['analyze', '--help'])\n"
        "assert '--json' in r.output and '--check' in r.output and '--plot' in r.output, r.output\n"
        "print(sorted(m for m in ('torch', 'monai', 'nibabel', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_phantom_command_writes_the_library_phantom(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, _ = run_main(
        monkeypatch,
        capsys,
        "phantom",
        str(tmp_path / "cli"),
        "--seed",
        "3",
        "--cases",
        "2",
        "--shape",
        "20,24,16",
        "--fg-fraction",
        "0.01",
        "--classes",
        "2",
    )
    assert code == 0 and out.strip() == str(tmp_path / "cli")
    lib = write_phantom(
        tmp_path / "lib", n_cases=2, shape=(20, 24, 16), fg_fraction=0.01, n_classes=2, seed=3
    )
    for f in lib.rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "cli" / f.relative_to(lib)).read_bytes()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--shape", "64,64"), ("--shape", "a,b,c"), ("--fg-fraction", "0.9"), ("--classes", "9")],
)
def test_phantom_bad_options_exit_2(
    tmp_path: Path, monkeypatch, capsys, option: str, value: str
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "phantom", str(tmp_path / "x"), option, value)
    assert code == 2
    assert err.strip().startswith(f"error: {option}:") and err.count("\n") == 1


def test_analyze_json_is_the_library_dict(tmp_path: Path, monkeypatch, capsys) -> None:
    root = write_phantom(tmp_path / "ph", n_cases=4, shape=(24, 24, 24), fg_fraction=0.01)
    code, out, _ = run_main(monkeypatch, capsys, "analyze", str(root), "--json")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(imbalance_stats(root)))


def test_analyze_table_and_plot(tmp_path: Path, monkeypatch, capsys) -> None:
    root = write_phantom(
        tmp_path / "ph", n_cases=4, shape=(24, 24, 24), fg_fraction=0.01, n_classes=2
    )
    png = tmp_path / "figs" / "hist.png"
    code, out, _ = run_main(
        monkeypatch, capsys, "analyze", str(root), "--plot", str(png), "--cases"
    )
    assert code == 0
    for word in ("CALF", "prior", "suggested", "phantom_003"):
        assert word in out
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert np.std(pixels[..., :3]) > 0.01, "the figure is not blank"


def test_analyze_bad_input_is_one_line_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    root = write_phantom(tmp_path / "ph", n_cases=3, shape=(16, 16, 16))
    (root / "labelsTr" / "phantom_001.nii.gz").write_bytes(b"")
    code, out, err = run_main(monkeypatch, capsys, "analyze", str(root), "--json")
    assert code == 2 and out == ""
    assert (
        err
        == "error: phantom_001: phantom_001.nii.gz: empty file (0 bytes) (expected a NIfTI file)\n"
    )


def test_analyze_check_lists_every_problem(tmp_path: Path, monkeypatch, capsys) -> None:
    root = write_phantom(tmp_path / "ph", n_cases=4, shape=(16, 16, 16))
    (root / "labelsTr" / "phantom_001.nii.gz").write_bytes(b"")
    (root / "imagesTr" / "phantom_003.nii.gz").unlink()
    code, _, err = run_main(monkeypatch, capsys, "analyze", str(root), "--check")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert sorted(line.split(":")[1].strip() for line in lines) == ["phantom_001", "phantom_003"]
    assert all(line.startswith("error: ") for line in lines)
    code, _, err = run_main(monkeypatch, capsys, "analyze", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: ") and "not a folder" in err


def test_analyze_check_on_a_clean_dataset_prints_the_statistics(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    root = write_phantom(tmp_path / "ph", n_cases=3, shape=(16, 16, 16), fg_fraction=0.01)
    code, out, err = run_main(monkeypatch, capsys, "analyze", str(root), "--check", "--json")
    assert code == 0 and "error" not in err
    assert json.loads(out)["n_cases"] == 3
