"""Read a compare folder (the files ``segbalance compare`` writes) for the report.

Required: ``results.csv`` and ``stats.json`` (a missing or unreadable one is an
:class:`~segbalance.errors.InputError`). Everything else is optional; a section whose
inputs are missing says so (:class:`Unavailable`). Layout::

    <dir>/compare.json, results.csv, stats.json, imbalance.json
    <dir>/runs/<cell>-seed<s>/{train_log.csv, summary.json, landscape.json, eval/<name>/}
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbalance.errors import InputError

EXPECTED_FOLDER = "a compare folder with results.csv and stats.json"
REQUIRED_COLUMNS: tuple[str, ...] = ("case", "cell", "seed", "dice")


class Unavailable(Exception):
    """A report section cannot be drawn; the message says why (shown as one line)."""


@dataclass
class Run:
    """One training run of a cell: ``path`` is absolute; ``status`` "done" or "failed"."""

    cell: str
    seed: str
    path: Path
    status: str = "done"
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.cell} seed {self.seed}"


@dataclass
class CompareFolder:
    """Everything the report reads, parsed; optional files are read on demand."""

    root: Path
    rows: list[dict[str, str]]
    stats: dict[str, Any]
    compare: dict[str, Any] = field(default_factory=dict)
    cells: list[str] = field(default_factory=list)
    cell_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def baseline(self) -> str | None:
        return self.stats.get("baseline") or self.compare.get("baseline")

    @property
    def dataset_name(self) -> str:
        return str(self.compare.get("dataset_name") or self.root.name)

    def dice_stats(self) -> dict[str, Any]:
        """The Dice block of ``stats.json`` (top level, or ``by_metric["dice"]``)."""
        by_metric = self.stats.get("by_metric")
        if isinstance(by_metric, dict) and isinstance(by_metric.get("dice"), dict):
            return by_metric["dice"]
        return self.stats

    def by_metric(self) -> dict[str, dict[str, Any]]:
        by_metric = self.stats.get("by_metric")
        if isinstance(by_metric, dict):
            return {k: v for k, v in by_metric.items() if isinstance(v, dict)}
        return {str(self.stats.get("metric", "dice")): self.stats}

    def color(self, cell: str) -> str:
        """A stable colour per cell (``segbalance.palette``: 20 distinct ones, in cell order)."""
        from segbalance.palette import method_color

        return method_color(self.cells.index(cell) if cell in self.cells else len(self.cells))

    def done_runs(self, cell: str | None = None) -> list[Run]:
        return [r for r in self.runs if r.status == "done" and (cell is None or r.cell == cell)]

    def read_json(self, path: Path) -> dict[str, Any]:
        """An optional JSON object; raises :class:`Unavailable` naming the file."""
        if not path.is_file():
            raise Unavailable(f"{self._rel(path)} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Unavailable(f"{self._rel(path)} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise Unavailable(f"{self._rel(path)} is not a JSON object")
        return data

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def dataset_path(self) -> Path:
        """The dataset folder named in ``compare.json`` (absolute, or relative to the folder)."""
        raw = self.compare.get("dataset")
        if not isinstance(raw, str) or not raw:
            raise Unavailable("compare.json names no dataset")
        path = Path(raw).expanduser()
        if not path.is_absolute() and (self.root / path).is_dir():
            path = self.root / path
        if not path.is_dir():
            raise Unavailable(f"the dataset folder {raw} is missing")
        return path


def _load_required_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(str(path), "missing", EXPECTED_FOLDER)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"not valid JSON ({exc})", "a JSON object") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "not a JSON object", "a JSON object")
    return data


def read_results(path: Path) -> list[dict[str, str]]:
    """``results.csv`` rows as dicts of strings; checks the columns the report needs."""
    if not path.is_file():
        raise InputError(str(path), "missing", EXPECTED_FOLDER)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = [dict(row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(path), f"unreadable ({exc})", "a CSV file") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            str(path), f"columns {missing} are missing", f"the columns {list(REQUIRED_COLUMNS)}"
        )
    if not rows:
        raise InputError(str(path), "no rows", "one row per (cell, seed, case, class)")
    return rows


def _runs_from_compare(root: Path, compare: dict[str, Any]) -> list[Run]:
    runs = []
    for cell in compare.get("cells", []):
        if not isinstance(cell, dict) or "name" not in cell:
            continue
        seeds = cell.get("seeds", [])
        dirs = cell.get("run_dirs", [])
        status = cell.get("status", ["done"] * len(dirs))
        for index, run_dir in enumerate(dirs):
            seed = seeds[index] if index < len(seeds) else index
            state = status[index] if index < len(status) else "done"
            error = cell.get("error")
            if isinstance(error, list):
                error = error[index] if index < len(error) else None
            runs.append(Run(str(cell["name"]), str(seed), root / run_dir, str(state), error))
    return runs


def _runs_from_rows(root: Path, rows: list[dict[str, str]]) -> list[Run]:
    seen: dict[tuple[str, str], Run] = {}
    for row in rows:
        key = (row["cell"], row["seed"])
        if key not in seen and row.get("run_dir"):
            seen[key] = Run(row["cell"], row["seed"], root / row["run_dir"])
    return list(seen.values())


def load_compare_folder(directory: str | Path) -> CompareFolder:
    """Parse a compare folder.

    Raises:
        InputError: the folder, ``results.csv`` or ``stats.json`` is missing or invalid,
            or ``compare.json`` exists but is not a JSON object.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InputError(str(directory), "not a folder", EXPECTED_FOLDER)
    root = root.resolve()
    rows = read_results(root / "results.csv")
    stats = _load_required_json(root / "stats.json")
    if not isinstance(stats.get("methods"), dict):
        raise InputError(
            str(root / "stats.json"), "has no 'methods' object", "the compare statistics"
        )
    compare_path = root / "compare.json"
    compare = _load_required_json(compare_path) if compare_path.exists() else {}
    folder = CompareFolder(root=root, rows=rows, stats=stats, compare=compare)
    for cell in compare.get("cells", []):
        if isinstance(cell, dict) and "name" in cell:
            name = str(cell["name"])
            folder.cells.append(name)
            folder.cell_info[name] = cell
    for row in rows:
        if row["cell"] not in folder.cells:
            folder.cells.append(row["cell"])
        info = folder.cell_info.setdefault(row["cell"], {"name": row["cell"]})
        for key in ("loss", "optimizer"):
            info.setdefault(key, row.get(key, ""))
    folder.runs = _runs_from_compare(root, compare) or _runs_from_rows(root, rows)
    return folder


def read_train_log(path: Path) -> dict[str, list[float]]:
    """``train_log.csv`` as ``{column: [float]}``; blank cells are NaN."""
    if not path.is_file():
        raise Unavailable(f"{path.name} is missing")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns: dict[str, list[float]] = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for name in columns:
                text = (row.get(name) or "").strip()
                try:
                    columns[name].append(float(text) if text else math.nan)
                except ValueError:
                    columns[name].append(math.nan)
    return columns
