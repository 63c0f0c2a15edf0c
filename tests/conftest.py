"""Suite-wide settings: derandomised hypothesis, and the reliability suite's summary lines."""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import settings

#: JSON-lines file where tests/reliability records its figures (shared by xdist workers)
RELIABILITY_LOG_ENV = "SEGBALANCE_RELIABILITY_LOG"

settings.register_profile("segbalance", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("segbalance")


def pytest_configure(config) -> None:
    # the controller (or a plain run) owns the log; xdist workers inherit the variable
    if not hasattr(config, "workerinput"):
        fd, path = tempfile.mkstemp(prefix="segbalance-reliability-", suffix=".jsonl")
        os.close(fd)
        os.environ[RELIABILITY_LOG_ENV] = path
        config.reliability_log = path


def reliability_summary(path: str | Path) -> list[str]:
    """One ``reliability: ...`` line per category recorded in the log."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    words: dict[str, str] = {}
    figures: dict[str, dict] = defaultdict(dict)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        category = entry["category"]
        for i, value in enumerate(entry["counts"]):
            counts[category][i] += value
        words.setdefault(category, entry["word"])
        figures[category].update(entry["figures"])
    lines = []
    for category, (trials, faults, failures) in sorted(counts.items()):
        extra = "".join(f", {k} {v}" for k, v in figures[category].items())
        lines.append(
            f"reliability: {category}: {trials} trials, {faults} {words[category]} injected, "
            f"{failures} failures{extra}"
        )
    return lines


def pytest_terminal_summary(terminalreporter, config) -> None:
    path = getattr(config, "reliability_log", None)
    if not path or not os.path.exists(path):
        return
    lines = reliability_summary(path)
    os.unlink(path)
    if lines:
        terminalreporter.section("reliability summary")
        for line in lines:
            terminalreporter.write_line(line)
