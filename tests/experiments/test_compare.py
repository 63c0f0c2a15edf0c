"""Comparison grids: planning, tables against each run's own files, reuse, failures, resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.experiments.conftest import TINY_TRAIN as TRAIN
from tests.experiments.conftest import tiny_compare

from segbalance.config import CompareConfig, load_compare_config, validate_config
from segbalance.errors import InputError
from segbalance.experiments.compare import plan_runs

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **changes) -> dict:
    return tiny_compare(tmp_path, **changes)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segbalance", *args], capture_output=True, text=True, timeout=300
    )


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_plan_maps_optimizers_grid_and_overrides(tmp_path) -> None:
    cfg = validate_config(
        _config(
            tmp_path,
            seeds=[0, 3],
            cells=[
                {"name": "a", "loss": "dice+ce", "optimizer": "sgd"},
                {
                    "name": "b",
                    "loss": "balanced",
                    "optimizer": "asam",
                    "overrides": {"optimizer.lr": 0.5},
                },
                {"name": "c", "loss": "dice", "optimizer": {"sam": {"variant": "looksam", "k": 3}}},
            ],
            grid={"losses": ["ce", "0.5*la_ce+dice"], "optimizers": ["adamw", "sam"]},
        ),
        CompareConfig,
        "x",
    )
    runs = plan_runs(cfg, "/data/set")
    names = [r.name for r in runs]
    assert names[:6] == ["a-seed0", "a-seed3", "b-seed0", "b-seed3", "c-seed0", "c-seed3"]
    assert "0.5xla_ce+dice-sam-seed3" in names and len(runs) == 14
    a, b, c = runs[0], runs[2], runs[4]
    assert a.config.optimizer.name == "sgd" and a.sam == "none" and a.optimizer == "sgd"
    assert b.sam == "asam" and b.config.optimizer.lr == 0.5 and b.config.loss.name == "balanced"
    assert c.config.optimizer.sam.variant == "looksam" and c.config.optimizer.sam.k == 3
    assert runs[1].config.seed == 3 and runs[1].config.data.dataset == "/data/set"
    assert runs[1].run_dir == Path(cfg.output) / "runs" / "a-seed3"
    assert cfg.baseline_cell == "a"


def test_bad_compare_configs(tmp_path) -> None:
    with pytest.raises(InputError, match=r"optimizer 'samm'.*did you mean 'sam'"):
        cfg = validate_config(
            _config(tmp_path, cells=[{"name": "a", "optimizer": "samm"}]), CompareConfig, "x"
        )
        plan_runs(cfg, "/d")
    with pytest.raises(InputError, match="repeat"):
        validate_config(_config(tmp_path, cells=[{"name": "a"}, {"name": "a"}]), CompareConfig, "x")
    with pytest.raises(InputError, match="baseline 'bse' is not a cell"):
        validate_config(_config(tmp_path, baseline="bse"), CompareConfig, "x")
    with pytest.raises(InputError, match=r"cells\.0\.name"):
        validate_config(_config(tmp_path, cells=[{"name": "../evil"}]), CompareConfig, "x")
    with pytest.raises(InputError, match=r"cells\[0\] \(base\).*data\.batch_sizee"):
        cfg = validate_config(
            _config(tmp_path, train={**TRAIN, "data": {**TRAIN["data"], "batch_sizee": 2}}),
            CompareConfig,
            "x",
        )
        plan_runs(cfg, "/d", where="x")


def test_shipped_compare_configs_validate() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "cells" in raw or "grid" in raw:
            cfg = load_compare_config(path)
            assert plan_runs(cfg, "/some/dataset")


@pytest.mark.slow
def test_demo_quick_tables_match_the_runs_and_second_run_reuses(tmp_path) -> None:
    out = tmp_path / "demo"
    start = time.perf_counter()
    result = _cli("demo", "--quick", "--output", str(out))
    first = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {out / 'report.html'}" in result.stdout
    manifest = json.loads((out / "compare.json").read_text())
    assert [c["name"] for c in manifest["cells"]] == ["baseline", "sam", "balanced"]
    assert all(c["status"] == ["done"] for c in manifest["cells"]) and manifest["failed"] == []
    rows = _csv(out / "results.csv")
    # results.csv = every run's own per_case.csv plus the cell columns
    for cell in manifest["cells"]:
        run_dir = out / cell["run_dirs"][0]
        own = _csv(run_dir / "per_case.csv")
        mine = [r for r in rows if r["cell"] == cell["name"]]
        assert len(mine) == len(own) == 2
        for got, ref in zip(mine, own, strict=True):
            assert got["dice"] == ref["dice"] and got["case"] == ref["case"]
            assert got["seed"] == "0" and got["run_dir"] == cell["run_dirs"][0]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["baseline"] == "baseline" and set(stats["methods"]) == {
        "baseline",
        "sam",
        "balanced",
    }
    means = {c: sum(float(r["dice"]) for r in rows if r["cell"] == c) / 2 for c in stats["methods"]}
    for cell, entry in stats["methods"].items():
        assert entry["mean"] == pytest.approx(means[cell], abs=1e-5)
    assert (out / "runs" / "baseline-seed0" / "landscape.json").is_file()
    landscape = json.loads((out / "runs" / "sam-seed0" / "landscape.json").read_text())
    sam_cell = next(c for c in manifest["cells"] if c["name"] == "sam")
    assert sam_cell["sharpness"] == [landscape["sharpness"]]  # one probe, two files agree
    assert all(isinstance(c["sharpness"][0], float) for c in manifest["cells"])
    html = (out / "report.html").read_text()
    assert "Sharpness of every run" in html and f"{landscape['sharpness']:.5f}"[:6] in html
    stamp = (out / "runs" / "sam-seed0" / "summary.json").stat().st_mtime_ns
    start = time.perf_counter()
    again = _cli("demo", "--quick", "--output", str(out))
    assert again.returncode == 0
    assert (out / "runs" / "sam-seed0" / "summary.json").stat().st_mtime_ns == stamp
    assert time.perf_counter() - start < first


@pytest.mark.slow
def test_failed_cell_is_recorded_and_others_finish(tmp_path) -> None:
    raw = _config(
        tmp_path,
        cells=[
            {"name": "good", "loss": "dice+ce"},
            {"name": "bad", "loss": {"name": "la_ce", "options": {"prior": 1.5}}},
        ],
    )
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = _cli("compare", str(path), "--no-report", "--quiet")
    assert result.returncode == 1
    assert "1 run(s) failed: bad-seed0" in result.stderr
    manifest = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    bad = next(c for c in manifest["cells"] if c["name"] == "bad")
    assert bad["status"] == ["failed"] and "prior" in bad["error"][0]
    assert {r["cell"] for r in _csv(tmp_path / "cmp" / "results.csv")} == {"good"}


@pytest.mark.slow
def test_killed_compare_resumes_and_skips_finished_runs(tmp_path) -> None:
    raw = _config(
        tmp_path,
        budget={"steps": 30},
        cells=[{"name": "first", "loss": "dice+ce"}, {"name": "second", "loss": "dice"}],
        jobs=1,
    )
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "segbalance", "compare", str(path), "--no-report", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "cmp" / "runs" / "first-seed0" / "summary.json"
    second = tmp_path / "cmp" / "runs" / "second-seed0" / "checkpoint_last.pt"
    deadline = time.time() + 240
    while not second.exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.is_file()
    stamp = first.stat().st_mtime_ns
    time.sleep(0.5)  # the orphaned trainer got SIGTERM from the kernel: let it checkpoint
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert first.stat().st_mtime_ns == stamp
    log = (tmp_path / "cmp" / "runs" / "second-seed0" / "train_log.csv").read_text()
    assert log.splitlines()[-1].split(",")[1] == "30"
    assert len(_csv(tmp_path / "cmp" / "results.csv")) == 4


def test_report_and_compare_cli_bad_input(tmp_path) -> None:
    result = _cli("report", str(tmp_path / "missing"))
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_config(tmp_path, seeds=[0, 0])))
    result = _cli("compare", str(bad))
    assert result.returncode == 2 and "seeds must be unique" in result.stderr
    assert not (tmp_path / "cmp").exists()
