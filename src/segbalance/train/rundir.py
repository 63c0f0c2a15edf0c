"""The run folder: creation rules and the files written at the start of a run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from segbalance import __version__
from segbalance.atomic import atomic_write_text
from segbalance.config import TrainConfig, dump_config
from segbalance.errors import InputError

#: keys written on top of the resolved config in ``config.yaml`` (not config fields)
RUN_INFO_KEYS = ("segbalance_version", "git_hash", "config_hash", "python", "torch")


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create the run folder; an existing non-empty one needs ``--resume`` (else exit 2)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(str(run_dir), "output exists and is not a folder", "a folder path")
    # the lock file alone (a run that stopped before writing anything) is not content
    if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()) and not resume:
        raise InputError(
            str(run_dir),
            "run folder exists and is not empty",
            "a new output folder, or --resume to continue this run",
        )
    run_dir.mkdir(parents=True, exist_ok=True)


class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock``: one trainer per run folder at a time."""

    def __init__(self, run_dir: Path, wait_seconds: float = 15.0) -> None:
        import fcntl

        self.handle = (run_dir / ".lock").open("a")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _remove_partial_writes(run_dir)
                return
            except OSError:
                if time.monotonic() < deadline:  # a stopping process may still be checkpointing
                    time.sleep(0.1)
                    continue
            self.handle.close()
            raise InputError(
                str(run_dir),
                "run folder is in use by another segbalance process",
                "one process per run folder; wait for it or stop it",
            ) from None

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def remove_if_only_lock(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but its lock file."""
    if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [".lock"]:
        (run_dir / ".lock").unlink(missing_ok=True)
        run_dir.rmdir()


def _remove_partial_writes(run_dir: Path) -> None:
    """Temp files of atomic writes cut short by a kill (only the lock holder may do this)."""
    for leftover in run_dir.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def write_run_files(run_dir: Path, cfg: TrainConfig, info: Any) -> None:
    """``config.yaml`` (resolved, with version and git hash), ``splits.json``, ``imbalance.json``."""
    import torch

    from segbalance.data import save_splits

    extra = {
        "segbalance_version": __version__,
        "git_hash": git_hash(),
        "config_hash": cfg.hash(),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
    }
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg, extra))
    save_splits([info.split], run_dir / "splits.json")
    if not (run_dir / "imbalance.json").is_file():
        atomic_write_text(run_dir / "imbalance.json", json.dumps(info.stats, indent=1))


def read_run_config(run_dir: Path) -> TrainConfig:
    """The resolved :class:`TrainConfig` stored in ``run_dir/config.yaml``."""
    from segbalance.config import read_yaml, validate_config

    raw = read_yaml(run_dir / "config.yaml")
    for key in RUN_INFO_KEYS:
        raw.pop(key, None)
    return validate_config(raw, TrainConfig, str(run_dir / "config.yaml"))


def git_hash() -> str:
    """The commit of the source tree segbalance runs from, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
