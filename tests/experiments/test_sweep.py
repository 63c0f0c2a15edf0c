"""A comparison swept over one config key: folders, sweep.json against each folder's runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.experiments.conftest import tiny_compare

from segbalance.config import CompareConfig, validate_config
from segbalance.errors import InputError
from segbalance.experiments.sweep import sweep_configs, sweep_folder_name


def _config(tmp_path: Path, **changes) -> dict:
    sweep = {
        "budget": {"steps": 3},
        "seeds": [0, 1],
        "cells": [
            {"name": "base", "loss": "dice+ce", "optimizer": "adamw"},
            {"name": "bal", "loss": "balanced", "optimizer": "adamw"},
        ],
        "output": str(tmp_path / "sweep"),
        "sweep": {"key": "phantom.fg_fraction", "values": [0.02, 0.005]},
    }
    return tiny_compare(tmp_path, **{**sweep, **changes})


def test_sweep_configs_set_the_key_and_the_folders(tmp_path) -> None:
    cfg = validate_config(_config(tmp_path), CompareConfig, "x")
    subs = sweep_configs(cfg)
    assert [v for v, _ in subs] == [0.02, 0.005]
    assert [s.phantom.fg_fraction for _, s in subs] == [0.02, 0.005]
    assert [Path(s.output).name for _, s in subs] == ["fg_fraction=0.02", "fg_fraction=0.005"]
    assert all(s.sweep is None and s.cells == cfg.cells for _, s in subs)
    assert sweep_folder_name("train.loss", "a b/c") == "loss=a_b_c"


def test_bad_sweep_key_or_value_names_the_key(tmp_path) -> None:
    with pytest.raises(InputError, match="sweep"):
        sweep_configs(
            validate_config(
                _config(tmp_path, sweep={"key": "phantom.fg_fraction", "values": [0.02, 2.0]}),
                CompareConfig,
                "x",
            )
        )
    with pytest.raises(InputError, match=r"sweep.*unknown key"):
        sweep_configs(
            validate_config(
                _config(tmp_path, sweep={"key": "phantom.fg_fractoin", "values": [1, 2]}),
                CompareConfig,
                "x",
            )
        )
    with pytest.raises(InputError, match="setting to sweep"):
        validate_config(
            _config(tmp_path, sweep={"key": "output", "values": ["a", "b"]}), CompareConfig, "x"
        )


@pytest.mark.slow
def test_sweep_cli_writes_per_value_folders_summary_and_report(tmp_path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path)))
    args = [sys.executable, "-m", "segbalance", "compare", str(config), "--quiet", "--jobs", "2"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "sweep"
    summary = json.loads((out / "sweep.json").read_text())
    by_hand: dict[str, list[float]] = {"base": [], "bal": []}
    assert summary["values"] == [0.02, 0.005] and summary["baseline"] == "base"
    for index, folder in enumerate(["fg_fraction=0.02", "fg_fraction=0.005"]):
        sub = out / folder
        # each value trained on its own phantom, with that foreground fraction
        used = yaml.safe_load((sub / "runs" / "base-seed0" / "config.yaml").read_text())
        stats = json.loads((sub / "imbalance.json").read_text())
        assert stats["dataset"] == used["data"]["dataset"]
        fraction = np.mean([c["foreground_fraction"] for c in stats["cases"]])
        assert summary["values"][index] / 3 < fraction < summary["values"][index] * 3
        assert (sub / "report.html").is_file()
        # the summary's mean = per case: classes averaged, then seeds, then cases (by hand)
        with (sub / "results.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for cell in ("base", "bal"):
            per_case: dict[str, list[float]] = {}
            for r in rows:
                if r["cell"] == cell and float(r["ref_voxels"]) > 0:
                    per_case.setdefault(r["case"], []).append(float(r["dice"]))
            expected = float(np.mean([np.mean(v) for v in per_case.values()]))
            got = summary["methods"][cell][index]["mean"]
            assert got == pytest.approx(expected, abs=1e-6), (folder, cell)
            by_hand[cell].append(expected)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "fg_fraction=0.005/report.html" in page
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # report.md: the same table as Markdown, one row per method with its mean at each value
    rows_md = [line for line in (out / "report.md").read_text().splitlines() if line[:2] == "| "]
    for cell, means in by_hand.items():
        row = next(r for r in rows_md if r.startswith(f"| {cell} |"))
        assert [float(c.split()[0]) for c in row.strip("| ").split(" | ")[1:]] == pytest.approx(
            means, abs=5e-4
        )


def test_sweep_figure_gives_every_method_its_own_colour() -> None:
    """13 methods (the study's grid): each colour of ``segbalance.palette`` appears in the
    PNG (marker centres are solid), and no two methods share one."""
    import io

    from PIL import Image

    from segbalance.experiments.sweep import sweep_figure_png
    from segbalance.palette import METHOD_COLORS, method_style

    cells = ["base", *[f"m{i}" for i in range(1, 13)]]
    methods = {
        cell: [
            {"value": v, "mean": 0.05 * k + 0.1 * j, "ci95": [0.05 * k, 0.05 * k + 0.1 * j + 0.01]}
            for j, v in enumerate([0.02, 0.002])
        ]
        for k, cell in enumerate(cells)
    }
    summary = {"key": "x", "values": [0.02, 0.002], "metric": "dice", "baseline": "base"}
    image = Image.open(io.BytesIO(sweep_figure_png({**summary, "methods": methods})))
    pixels = {c[1] for c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    styles = [method_style(i)[:2] for i in range(1, 13)]
    assert len(set(styles)) == 12 and len({c for c, _ in styles}) == 12
    for color, _ in styles:
        rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in pixels, color
    assert (0, 0, 0) in pixels  # the baseline, in black
    assert len(set(METHOD_COLORS)) == len(METHOD_COLORS) == 20
    assert method_style(20)[2] == "--" and method_style(19)[2] == "-"
