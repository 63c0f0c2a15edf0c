"""Progress display of a comparison: one overall bar plus one line per running cell."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any


class CompareProgress:
    """Rich progress: runs finished / total, and each running run's share of its budget."""

    def __init__(self, enabled: bool, names: list[str]) -> None:
        self.enabled = enabled and bool(names)
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        if not self.enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
        )
        self.total = self.bar.add_task("[bold]compare[/]", total=len(names), status="")
        self.bar.start()

    def start(self, name: str) -> None:
        self.started[name] = time.perf_counter()
        if self.enabled:
            self.tasks[name] = self.bar.add_task(f"  {name}", total=1.0, status="starting")

    def tick(self, name: str, run_dir: Path, config: Any) -> None:
        """Share of the run's budget used so far, read from its train_log.csv."""
        if not self.enabled or name not in self.tasks:
            return
        budget = config.budget
        seconds = time.perf_counter() - self.started[name]
        done, status = 0.0, f"{seconds:.0f} s"
        last = _last_row(run_dir / "train_log.csv")
        if budget.minutes is not None:
            done = max(done, seconds / (budget.minutes * 60))
        if last is not None and budget.steps is not None:
            done = max(done, int(last["step"]) / budget.steps)
        if last is not None and last.get("val_dice"):
            status += f"  val dice {float(last['val_dice']):.3f}"
        self.bar.update(self.tasks[name], completed=min(done, 1.0), status=status)

    def finish(self, name: str, status: str) -> None:
        if not self.enabled:
            return
        self.bar.update(self.tasks[name], completed=1.0, status=status)
        self.bar.remove_task(self.tasks.pop(name))
        self.bar.advance(self.total)
        self.bar.console.print(f"  {name}: {status}")

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def _last_row(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return None
    return rows[-1] if rows else None
