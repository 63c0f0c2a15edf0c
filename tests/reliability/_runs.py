"""Shared helpers of the reliability suite: tiny configs, weights, process state."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import yaml
from tests.train.conftest import TINY, deep_update

#: ten steps, one batch per epoch: a checkpoint_last.pt write after every step
STEPS = 10
KILL_CONFIG = deep_update(
    TINY,
    {
        "data": {"batches_per_epoch": 1},
        "budget": {"steps": STEPS, "epochs": None},
        "optimizer": {"lr": 0.01, "sam": {"variant": "sam"}},  # SAM state must resume too
        "validation": {"every_epochs": 1000, "final_evaluation": False},
    },
)


def write_yaml(path: Path, raw: dict, **changes) -> Path:
    """Write ``raw`` updated with ``changes`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(deep_update(raw, changes)))
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state of a checkpoint, read with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit-identical state dicts (same keys, ``torch.equal`` on every tensor)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def logged_steps(run: Path) -> list[int]:
    """The ``step`` column of ``train_log.csv``."""
    with (run / "train_log.csv").open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent's wait counts as ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] not in ("Z", "X")


def temp_files(folder: Path, name: str) -> list[str]:
    """Names of the atomic-write temp files of ``name`` in ``folder`` (``.NAME.*.tmp``)."""
    return sorted(p.name for p in folder.glob(f".{name}.*.tmp")) if folder.is_dir() else []
