"""What a run reports while it trains: ``train_log.csv``, a rich progress bar, TensorBoard."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from segbalance.atomic import atomic_write_text

BASE_COLUMNS = (
    "epoch",
    "step",
    "seconds",
    "lr",
    "loss",
    "val_dice",
    "skipped_nonfinite",
    "skipped_overflow",
    "steps_per_second",
)


class TrainLog:
    """``train_log.csv``: one row per epoch (and per time-based validation).

    Columns: :data:`BASE_COLUMNS` then ``val_dice_<class>`` per foreground class; the
    ``val_*`` cells are empty on rows without validation. On resume, rows after the
    checkpoint's step are dropped so the file matches an uninterrupted run.
    """

    def __init__(self, path: Path, classes: list[int], *, resume_step: int | None = None):
        self.path = path
        self.columns = [*BASE_COLUMNS, *[f"val_dice_{c}" for c in classes]]
        self.rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self._write()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append({k: _cell(row.get(k)) for k in self.columns})
        self._write()

    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class TensorBoard:
    """Optional TensorBoard scalars (needs the ``tensorboard`` package)."""

    def __init__(self, directory: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from segbalance.errors import InputError

            raise InputError(
                "tensorboard",
                "true needs the tensorboard package, which is not installed",
                "pip install tensorboard, or tensorboard: false",
            ) from None
        self.writer = SummaryWriter(log_dir=str(directory))

    def add(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, float) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Progress:
    """A rich progress bar: epoch, step, loss, last validation Dice, it/s, ETA.

    ``total`` is the number of steps when known (steps/epochs budget), else seconds of a
    wall-clock budget. Disabled (no output) when ``enabled`` is False.
    """

    def __init__(self, enabled: bool, total: float | None, unit: str, start: float = 0.0):
        self.enabled = enabled
        self.unit = unit
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns = [
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn() if unit == "steps" else TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val dice {task.fields[dice]}"),
            TextColumn("{task.fields[rate]} it/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        self.bar = RichProgress(*columns, transient=False)
        self.task = self.bar.add_task(
            "train", total=total, completed=start, epoch=0, loss="-", dice="-", rate="-"
        )
        self.bar.start()

    def update(self, completed: float, **fields: Any) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=completed, **fields)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
