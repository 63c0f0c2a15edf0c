"""SIGKILL at seeded random points of training and of ``compare``; resume must catch up.

Every trial kills a real process (forked by the zygote, see ``_zygote.py``), checks that
the surviving ``checkpoint_last.pt`` loads with ``weights_only=True``, resumes with
``--resume`` in a new process and asserts bit-identical final weights against an
uninterrupted run on the CPU. Kill points, drawn from ``numpy.random.default_rng(trial)``:
``anywhere`` (a delay from the start, so also during set-up, before any checkpoint),
``between`` (a delay after the first checkpoint) and ``in-write`` (the child's ``fsync`` is
slowed and the kill lands while the n-th ``.checkpoint_last.pt.*.tmp`` exists).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from segbalance.train.checkpoint import load_checkpoint

from ._runs import (
    KILL_CONFIG,
    STEPS,
    alive,
    logged_steps,
    same_weights,
    temp_files,
    weights,
    write_yaml,
)
from .conftest import record, wait_for

TRIALS = 10
KINDS = ("anywhere", "between", "in-write")


def _log_rows(run: Path) -> int:
    log = run / "train_log.csv"
    return max(len(log.read_text().splitlines()) - 1, 0) if log.exists() else 0


def _kill_once(cli, config: Path, run: Path, trial: int, seconds: float) -> dict:
    """Start training, kill it at the trial's point; what the kill left behind."""
    rng = np.random.default_rng(trial)
    kind = KINDS[trial % 3]
    fault = "slow-fsync:0.1" if kind == "in-write" else "none"
    pid = cli.start("train", config, "--quiet", fault=fault)
    if kind == "anywhere":
        time.sleep(float(rng.uniform(0.0, seconds)))
    elif kind == "between":
        # after the k-th train_log row: the row is written just before its checkpoint
        rows = int(rng.integers(1, STEPS))
        wait_for(lambda: _log_rows(run) >= rows or not alive(pid))
        time.sleep(float(rng.uniform(0.0, 0.05)))
    else:
        target = int(rng.integers(1, STEPS))  # the n-th checkpoint write, n < STEPS
        seen: set[str] = set()

        def in_target_write() -> bool:
            names = temp_files(run, "checkpoint_last.pt")
            seen.update(names)
            return (len(seen) >= target and bool(names)) or not alive(pid)

        wait_for(in_target_write)
    in_write = bool(temp_files(run, "checkpoint_last.pt"))
    finished = not alive(pid)
    code = cli.kill(pid).code if not finished else cli.wait(pid).code
    last = run / "checkpoint_last.pt"
    step = int(load_checkpoint(last)["step"]) if last.exists() else None
    if kind == "in-write":
        assert in_write and step == target - 1, (trial, step, target)  # previous one intact
    return {"kind": kind, "killed": code == -9, "in_write": in_write, "step": step}


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(cli, tmp_path) -> None:
    reference = write_yaml(tmp_path / "ref.yaml", KILL_CONFIG, output=str(tmp_path / "ref"))
    assert cli.run("train", reference, "--quiet").code == 0  # also fills the phantom cache
    started = time.monotonic()
    assert cli.run("train", reference, "--quiet", "--output", tmp_path / "ref2").code == 0
    seconds = time.monotonic() - started  # a warm run: the window the kill delays span
    expected = weights(tmp_path / "ref" / "checkpoint_last.pt")
    assert same_weights(expected, weights(tmp_path / "ref2" / "checkpoint_last.pt"))
    points, failures, stale = [], 0, 0
    for trial in range(TRIALS):
        for attempt in range(3):
            # a random delay can outlast a run that went faster than the warm one: try again
            # with half the window, so every trial injects its kill
            run = tmp_path / f"trial{trial}-{attempt}"
            config = write_yaml(tmp_path / f"t{trial}-{attempt}.yaml", KILL_CONFIG, output=str(run))
            point = _kill_once(cli, config, run, trial, seconds / 2**attempt)
            if point["killed"] or point["kind"] != "anywhere":
                break
        resumed = cli.run("train", config, "--quiet", "--resume")
        ok = (
            resumed.code == 0
            and "Traceback" not in resumed.stderr
            and load_checkpoint(run / "checkpoint_last.pt")["step"] == STEPS
            and same_weights(expected, weights(run / "checkpoint_last.pt"))
            and logged_steps(run) == list(range(1, STEPS + 1))
        )
        failures += not ok
        stale += len(temp_files(run, "checkpoint_last.pt"))
        points.append({**point, "trial": trial, "ok": ok, "stderr": resumed.stderr[-300:]})
    kills = sum(p["killed"] for p in points)
    steps = sorted(p["step"] for p in points if p["step"] is not None)
    record(
        "crash-resume",
        TRIALS,
        kills,
        failures,
        fault_word="kills",
        **{
            "kills in a checkpoint write": sum(p["in_write"] for p in points),
            "kills before any checkpoint": sum(p["step"] is None for p in points),
            "surviving checkpoint steps": steps,
            "stale temp files left": stale,
        },
    )
    assert failures == 0, [p for p in points if not p["ok"]]
    assert kills >= TRIALS - 1, points  # at most one seeded delay may outlast the run
    assert sum(p["in_write"] for p in points) >= 3


def _compare_config(tmp_path: Path) -> Path:
    from segbalance.experiments.demo import demo_config

    raw = {
        "dataset": "phantom",
        "phantom": {"n_cases": 4, "shape": [24, 24, 24], "fg_fraction": 0.01},
        "train": {**demo_config(quick=True).train, "threads": 1},
        "budget": {"steps": 16},
        "seeds": [0],
        # one SAM cell: each cell costs a `python -m segbalance train` start (~10 s here)
        "cells": [{"name": "sam", "loss": "dice+ce", "optimizer": "sam"}],
        "jobs": 1,
        "output": str(tmp_path / "cmp"),
        "landscape": False,
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_killed_compare_resumes_to_the_uninterrupted_weights(cli, tmp_path) -> None:
    config = _compare_config(tmp_path)
    out = tmp_path / "cmp"
    rng = np.random.default_rng(100)
    pid = cli.start("compare", config, "--no-report", "--quiet")
    wait_for(lambda: any(out.glob("runs/*/checkpoint_last.pt")) or not alive(pid), timeout=240)
    time.sleep(float(rng.uniform(0.0, 0.3)))  # the run is still training then
    killed = cli.kill(pid).code == -9 if alive(pid) else False
    survivors = sorted(out.glob("runs/*/checkpoint_last.pt"))
    for path in survivors:  # whatever was on disk at the kill loads
        load_checkpoint(path)
    time.sleep(0.5)  # orphaned trainers got SIGTERM (PR_SET_PDEATHSIG): let them checkpoint
    result = cli.run("compare", config, "--no-report", "--quiet")
    failures = int(result.code != 0)
    for cell in ("sam",):
        # the uninterrupted reference: the same resolved cell config, trained in one go
        ref = tmp_path / f"ref-{cell}"
        cell_config = out / "configs" / f"{cell}-seed0.yaml"
        assert cli.run("train", cell_config, "--quiet", "--output", ref).code == 0
        got = out / "runs" / f"{cell}-seed0" / "checkpoint_last.pt"
        failures += not same_weights(weights(ref / "checkpoint_last.pt"), weights(got))
    record("compare-resume", 1, int(killed), failures, fault_word="kills")
    assert result.code == 0, result.stderr[-2000:]
    assert killed, "compare had finished before the kill"
    assert failures == 0
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + 2 validation cases
