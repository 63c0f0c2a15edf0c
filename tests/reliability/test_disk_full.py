"""A full disk (ENOSPC) during any run-file write: exit 1, a clear line, nothing half-written.

The fault is real in the child process: the n-th ``os.fsync`` of a regular file (or the
n-th ``torch.save``) raises ``OSError(ENOSPC)`` after part of the data went to the temp
file, exactly where a full disk fails. A normal run of ``KILL_CONFIG`` fsyncs 31 files
(config, splits, imbalance, 10 x train_log + checkpoint_last, checkpoint_best, the
evaluation's predictions and tables); seeded indices pick which write fails.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from segbalance.train.checkpoint import load_checkpoint

from ._runs import KILL_CONFIG, STEPS, same_weights, weights, write_yaml
from .conftest import record

EVAL_CONFIG = {**KILL_CONFIG, "validation": {"every_epochs": 1000, "final_evaluation": True}}
FSYNCS_IN_A_RUN = 31


def _readable(path: Path) -> None:
    """Parse ``path`` by its kind: a torn file of any kind raises here."""
    if path.suffix == ".pt":
        load_checkpoint(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".yaml":
        yaml.safe_load(path.read_text())
    elif path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows and len({len(r) for r in rows}) == 1, path  # no torn last line


def _check_enospc_exit(run_result, run: Path) -> str | None:
    """The contract after ENOSPC; returns the problem or None."""
    lines = run_result.stderr.strip().splitlines()
    if run_result.code != 1:
        return f"exit {run_result.code}"
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in run_result.stderr:
        return f"stderr {run_result.stderr[-400:]!r}"
    if "No space left on device" not in lines[0] or str(run) not in lines[0]:
        return f"unclear message {lines[0]!r}"  # must say what and which file
    leftovers = [p.name for p in run.rglob(".*.tmp")]
    if leftovers:
        return f"temp files left {leftovers}"
    for path in run.rglob("*"):
        if path.is_file() and path.name != ".lock":
            _readable(path)
    return None


@pytest.mark.slow
def test_enospc_at_seeded_writes_of_a_run_then_resume(cli, tmp_path) -> None:
    reference = write_yaml(tmp_path / "ref.yaml", EVAL_CONFIG, output=str(tmp_path / "ref"))
    assert cli.run("train", reference, "--quiet").code == 0
    expected = weights(tmp_path / "ref" / "checkpoint_last.pt")
    rng = np.random.default_rng(28)
    # config.yaml, checkpoint_last.pt of step 2 (step 1's stays), checkpoint_best.pt, eval summary.json, + 1
    picks = sorted({1, 8, 23, 29, int(rng.integers(2, FSYNCS_IN_A_RUN + 1))})
    problems, messages = [], set()
    for n in picks:
        run = tmp_path / f"full{n}"
        config = write_yaml(tmp_path / f"f{n}.yaml", EVAL_CONFIG, output=str(run))
        result = cli.run("train", config, "--quiet", fault=f"enospc-fsync:{n}")
        problem = _check_enospc_exit(result, run)
        messages.add(result.stderr.strip().replace(str(run), "RUN"))
        resumed = cli.run("train", config, "--quiet", "--resume")  # space is back
        if problem is None and resumed.code != 0:
            problem = f"resume exit {resumed.code}: {resumed.stderr[-300:]}"
        if problem is None and not same_weights(expected, weights(run / "checkpoint_last.pt")):
            problem = "resumed weights differ from the uninterrupted run"
        if problem is None and not (run / "summary.json").is_file():
            problem = "no summary.json after resume"
        if problem:
            problems.append((n, problem))
    record("disk-full", len(picks), len(picks), len(problems), fault_word="ENOSPC")
    assert not problems, (problems, messages)


def _checkpoint_step(run: Path) -> int | None:
    path = run / "checkpoint_last.pt"
    return int(load_checkpoint(path)["step"]) if path.exists() else None


def test_enospc_in_torch_save_keeps_the_previous_checkpoint(cli, tmp_path) -> None:
    run = tmp_path / "run"
    config = write_yaml(tmp_path / "c.yaml", KILL_CONFIG, output=str(run))
    # torch.save call 5 = checkpoint_last of step 5; it writes a few bytes, then ENOSPC
    result = cli.run("train", config, "--quiet", fault="enospc-save:5")
    problem = _check_enospc_exit(result, run)
    step = _checkpoint_step(run)
    record("disk-full", 1, 1, int(problem is not None or step != 4), fault_word="ENOSPC")
    assert problem is None, problem
    assert "checkpoint_last.pt" in result.stderr
    assert step == 4 and len((run / "train_log.csv").read_text().splitlines()) == 1 + 5
    assert STEPS > 5


@pytest.mark.parametrize(("fsync", "named"), [(1, "report.html"), (2, "report.md")])
def test_enospc_writing_the_report_keeps_both_old_pages(cli, tmp_path, fsync, named) -> None:
    from tests.report.test_report import evil_folder

    folder = evil_folder(tmp_path / "cmp")
    assert cli.run("report", folder).code == 0
    pages = [folder / "report.html", folder / "report.md"]
    before = [page.read_bytes() for page in pages]
    (folder / "results.csv").write_text((folder / "results.csv").read_text().replace("c3", "c4"))
    # fsync 1 is report.html's temp file, 2 report.md's: neither page may change
    result = cli.run("report", folder, fault=f"enospc-fsync:{fsync}")
    problem = _check_enospc_exit(result, folder)
    after = [page.read_bytes() for page in pages]
    record("disk-full", 1, 1, int(problem is not None or after != before), fault_word="ENOSPC")
    assert problem is None, problem
    assert named in result.stderr
    assert after == before
