"""``segbalance compare CONFIG``: cells (loss x optimiser) x seeds on one dataset.

Every (cell, seed) is a normal run folder trained by ``segbalance train`` in its own
subprocess (so one failing cell cannot take the others down, ``--jobs N`` runs N at a
time, and each run's peak memory is its own). A run whose ``summary.json`` exists and
whose ``config_hash`` matches is reused; an unfinished one is resumed from its last
checkpoint. Then ``results.csv``, ``stats.json`` and ``compare.json`` are written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segbalance.atomic import atomic_write_text
from segbalance.config import (
    CellConfig,
    CompareConfig,
    TrainConfig,
    set_dotted,
    validate_config,
)
from segbalance.errors import InputError

#: the ``optimizer`` string of a cell: a base optimiser (plain) or a SAM variant
OPTIMIZER_SHORTHANDS = ("adamw", "adam", "sgd", "plain", "none", "sam", "asam", "looksam", "sam_k")
RESULT_EXTRA_COLUMNS = ("cell", "loss", "optimizer", "seed", "run_dir")


@dataclass
class CellRun:
    """One (cell, seed): its resolved training config and where it runs."""

    cell: str
    seed: int
    name: str
    run_dir: Path
    config: TrainConfig
    loss: str
    optimizer: str
    sam: str
    status: str = "pending"  # pending | done | reused | failed
    error: str | None = None
    log: Path | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def plan_runs(cfg: CompareConfig, dataset: str, where: str = "compare") -> list[CellRun]:
    """The resolved :class:`TrainConfig` of every (cell, seed), validated up front."""
    out = Path(cfg.output)
    runs = []
    for index, cell in enumerate(cfg.all_cells()):
        for seed in cfg.seeds:
            name = f"{cell.name}-seed{seed}"
            raw = _cell_training_dict(cfg, cell, dataset, seed, out / "runs" / name)
            config = validate_config(raw, TrainConfig, f"{where}: cells[{index}] ({cell.name})")
            variant = config.optimizer.sam.resolved_variant
            label = (
                config.optimizer.name if variant == "none" else f"{variant}+{config.optimizer.name}"
            )
            runs.append(
                CellRun(
                    cell.name,
                    seed,
                    name,
                    out / "runs" / name,
                    config,
                    config.loss.name,
                    label,
                    variant,
                )
            )
    return runs


def _cell_training_dict(
    cfg: CompareConfig, cell: CellConfig, dataset: str, seed: int, run_dir: Path
) -> dict[str, Any]:
    raw = json.loads(json.dumps(cfg.train))  # deep copy of the shared training settings
    data = raw.setdefault("data", {})
    data["dataset"] = dataset
    raw["budget"] = cfg.budget.model_dump(exclude_none=True)
    raw["seed"] = seed
    raw["output"] = str(run_dir)
    raw["loss"] = cell.loss
    optimizer = raw.setdefault("optimizer", {})
    if isinstance(cell.optimizer, dict):
        _merge(optimizer, cell.optimizer)
    else:
        choice = cell.optimizer.lower()
        if choice not in OPTIMIZER_SHORTHANDS:
            from segbalance.errors import did_you_mean

            raise InputError(
                f"cells: {cell.name}",
                f"optimizer {cell.optimizer!r}{did_you_mean(choice, OPTIMIZER_SHORTHANDS)}",
                f"one of {', '.join(OPTIMIZER_SHORTHANDS)} or a mapping",
            )
        sam = optimizer.setdefault("sam", {})
        if choice in ("adamw", "adam", "sgd"):
            optimizer["name"] = choice
            sam["variant"] = "none"
        elif choice in ("plain", "none"):
            sam["variant"] = "none"
        else:
            sam["variant"] = choice
    for dotted, value in cell.overrides.items():
        set_dotted(raw, dotted, value, f"cells: {cell.name}: overrides")
    return raw


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def run_compare(
    cfg: CompareConfig,
    *,
    where: str = "compare",
    jobs: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train every pending (cell, seed), then write the comparison's tables.

    Returns the ``compare.json`` manifest (``failed`` lists the failed runs; the CLI then
    exits with code 1 after writing everything else).
    """
    from segbalance.data import imbalance_stats

    out = Path(cfg.output)
    from segbalance.train.setup import resolve_dataset

    dataset = str(resolve_dataset(cfg.dataset, cfg.phantom, key="dataset"))
    runs = plan_runs(cfg, dataset, where)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "imbalance.json").is_file():
        stats = imbalance_stats(dataset, read_images=False)
        atomic_write_text(out / "imbalance.json", json.dumps(stats, indent=1))
    stats = json.loads((out / "imbalance.json").read_text())
    n_jobs = jobs or cfg.jobs
    per_run_threads = threads or max(1, (os.cpu_count() or 2) // n_jobs)
    for run in runs:
        _mark_reusable(run)
    _execute([r for r in runs if r.status == "pending"], out, n_jobs, per_run_threads, progress)
    from segbalance.experiments.probes import write_landscapes

    write_landscapes(cfg, runs, threads=per_run_threads)
    return write_results(cfg, runs, dataset, stats)


def _mark_reusable(run: CellRun) -> None:
    """Reuse a finished run with the same config hash; set aside a stale one."""
    stored = run.run_dir / "config.yaml"
    if not stored.is_file():
        return
    try:
        old_hash = (yaml.safe_load(stored.read_text()) or {}).get("config_hash")
    except yaml.YAMLError:
        old_hash = None
    if old_hash != run.config.hash():
        stale = run.run_dir.with_name(f"{run.run_dir.name}.stale-{old_hash or 'unknown'}")
        shutil.rmtree(stale, ignore_errors=True)
        run.run_dir.rename(stale)  # a changed config: keep the old folder, start afresh
        return
    if (run.run_dir / "summary.json").is_file():
        run.status = "reused"


def _execute(runs: list[CellRun], out: Path, jobs: int, threads: int, progress: bool) -> None:
    """Run ``segbalance train --resume`` for each run, ``jobs`` at a time."""
    from segbalance.experiments.progress import CompareProgress

    (out / "configs").mkdir(exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    queue = list(runs)
    active: list[tuple[CellRun, subprocess.Popen, float]] = []
    bar = CompareProgress(progress, [r.name for r in runs])
    try:
        while queue or active:
            while queue and len(active) < jobs:
                run = queue.pop(0)
                cfg_path = out / "configs" / f"{run.name}.yaml"
                payload = run.config.model_copy(update={"threads": run.config.threads or threads})
                atomic_write_text(cfg_path, yaml.safe_dump(payload.model_dump(mode="json")))
                run.log = out / "logs" / f"{run.name}.log"
                handle = run.log.open("w")
                cmd = [
                    sys.executable,
                    "-m",
                    "segbalance",
                    "train",
                    str(cfg_path),
                    "--quiet",
                    "--resume",
                ]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                proc = subprocess.Popen(
                    cmd,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
                handle.close()
                active.append((run, proc, time.perf_counter()))
                bar.start(run.name)
            time.sleep(0.2)
            for entry in list(active):
                run, proc, started = entry
                bar.tick(run.name, run.run_dir, run.config)
                if proc.poll() is None:
                    continue
                active.remove(entry)
                run.seconds = time.perf_counter() - started
                if proc.returncode == 0 and (run.run_dir / "summary.json").is_file():
                    run.status = "done"
                else:
                    run.status = "failed"
                    run.error = _last_error(run.log, proc.returncode)
                bar.finish(run.name, run.status)
    finally:
        for _, proc, _ in active:  # interrupted: stop the children, they resume next time
            proc.terminate()
            proc.wait()
        bar.close()


def _die_with_parent() -> None:
    """Linux: SIGTERM the child when the compare process dies (even by SIGKILL).

    The trainer turns SIGTERM into a checkpoint at the next step, so a killed compare
    leaves no orphan training on and every run resumable.
    """
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _last_error(log: Path | None, code: int) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log and log.is_file() else []
    errors = [line for line in lines if line.startswith("error:")]
    text = errors[-1] if errors else (lines[-1] if lines else "")
    return f"exit code {code}: {text}"[:500]


def write_results(
    cfg: CompareConfig, runs: list[CellRun], dataset: str, stats: dict[str, Any]
) -> dict[str, Any]:
    """``results.csv``, ``stats.json`` and ``compare.json`` from the finished runs."""
    from segbalance.experiments.probes import read_sharpness
    from segbalance.experiments.stats import all_metric_stats, compare_methods

    out = Path(cfg.output)
    rows: list[dict[str, Any]] = []
    costs: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if run.status not in ("done", "reused"):
            continue
        summary = json.loads((run.run_dir / "summary.json").read_text())
        cost = costs.setdefault(run.cell, {"train_seconds": [], "peak_rss_mb": []})
        for key in cost:
            if summary.get(key) is not None:
                cost[key].append(float(summary[key]))
        with (run.run_dir / "per_case.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                row.update(
                    cell=run.cell,
                    loss=run.loss,
                    optimizer=run.optimizer,
                    seed=run.seed,
                    run_dir=str(run.run_dir.relative_to(out)),
                )
                rows.append(row)
    columns = list(rows[0]) if rows else list(RESULT_EXTRA_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    mean_costs = {
        c: {k: (sum(v) / len(v) if v else None) for k, v in d.items()} for c, d in costs.items()
    }
    baseline = cfg.baseline_cell
    cells_with_rows = {r["cell"] for r in rows}
    if baseline in cells_with_rows:
        result = compare_methods(rows, baseline=baseline, costs=mean_costs)
        result["by_metric"] = all_metric_stats(
            rows, baseline, metrics=cfg.metrics, costs=mean_costs
        )
    else:
        result = {
            "baseline": baseline,
            "methods": {},
            "tests": [],
            "error": "the baseline has no finished run",
        }
    atomic_write_text(
        out / "stats.json", json.dumps(result, indent=1, allow_nan=False, default=_none)
    )
    manifest = {
        "dataset": dataset,
        "dataset_name": stats.get("name"),
        "classes": stats.get("classes", {}),
        "baseline": baseline,
        "budget": cfg.budget.model_dump(exclude_none=True),
        "seeds": cfg.seeds,
        "cells": [],
        "failed": [r.name for r in runs if r.status == "failed"],
    }
    for cell in cfg.all_cells():
        mine = [r for r in runs if r.cell == cell.name]
        manifest["cells"].append(
            {
                "name": cell.name,
                "loss": mine[0].loss,
                "optimizer": mine[0].optimizer,
                "sam": mine[0].sam,
                "seeds": [r.seed for r in mine],
                "run_dirs": [str(r.run_dir.relative_to(out)) for r in mine],
                "status": [r.status for r in mine],
                "error": [r.error for r in mine],
                "sharpness": [read_sharpness(r.run_dir) for r in mine],
            }
        )
    atomic_write_text(out / "compare.json", json.dumps(manifest, indent=1))
    return manifest


def _none(value: Any) -> Any:
    return None
