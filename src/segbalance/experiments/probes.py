"""Probes of a comparison's finished runs: loss landscapes and sharpness at the best weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segbalance.atomic import atomic_write_text
from segbalance.config import CompareConfig

if TYPE_CHECKING:
    from segbalance.experiments.compare import CellRun


def write_landscapes(
    cfg: CompareConfig, runs: list[CellRun], rho: float = 0.05, threads: int | None = None
) -> None:
    """``landscape.json`` for the first seed of the baseline and of the first SAM cell;
    with ``sharpness: true`` also ``sharpness.json`` for every run."""
    first_seed = cfg.seeds[0]
    chosen = [r for r in runs if r.seed == first_seed and r.cell == cfg.baseline_cell]
    sam = [r for r in runs if r.seed == first_seed and r.sam != "none"]
    chosen = chosen + sam[:1] if cfg.landscape else []
    for run in runs:
        if run.status not in ("done", "reused"):
            continue
        wants_landscape = run in chosen and not (run.run_dir / "landscape.json").is_file()
        wants_sharpness = cfg.sharpness and not (run.run_dir / "sharpness.json").is_file()
        if not (wants_landscape or wants_sharpness):
            continue
        probe = run_landscape(
            run.run_dir,
            rho=rho,
            steps=cfg.landscape_steps,
            threads=threads,
            landscape=wants_landscape,
        )
        if wants_landscape:
            atomic_write_text(run.run_dir / "landscape.json", json.dumps(probe))
        sharp = {"sharpness": probe["sharpness"], "rho": rho}
        atomic_write_text(run.run_dir / "sharpness.json", json.dumps(sharp))


def run_landscape(
    run_dir: Path,
    *,
    rho: float = 0.05,
    steps: int = 11,
    threads: int | None = None,
    landscape: bool = True,
) -> dict[str, Any]:
    """Loss landscape (optional) and sharpness of a run's best weights on one fixed batch.

    Sharpness is ``segbalance.optim.sharpness`` of the run's own training loss, so it
    compares optimisers trained with the same loss, not different losses.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from segbalance.optim import sharpness
    from segbalance.optim.landscape import loss_landscape
    from segbalance.train.checkpoint import (
        checkpoint_to_score,
        evaluated_weights,
        load_checkpoint,
    )
    from segbalance.train.rundir import read_run_config
    from segbalance.train.setup import (
        build_loader,
        build_network,
        build_training_loss,
        prepare_data,
    )

    cfg = read_run_config(run_dir)
    info, data = prepare_data(cfg.data, run_dir)
    model, _ = build_network(cfg, info)
    model.load_state_dict(evaluated_weights(load_checkpoint(checkpoint_to_score(run_dir))))
    loss_fn = build_training_loss(cfg, info)
    loader = build_loader(cfg, info, data, seed=12345)  # one fixed batch for every run
    inputs, target = loader.batch(0)[:2]
    out: dict[str, Any] = {}
    with torch.random.fork_rng():
        if landscape:
            out = loss_landscape(model, loss_fn, (inputs, target), steps=steps, span=1.0, seed=0)
        out["sharpness"] = float(sharpness(model, loss_fn, (inputs, target), rho=rho))
    out["rho"] = rho
    return out


def read_sharpness(run_dir: Path) -> float | None:
    """The run's measured sharpness (``sharpness.json``), or None."""
    path = run_dir / "sharpness.json"
    return json.loads(path.read_text())["sharpness"] if path.is_file() else None
