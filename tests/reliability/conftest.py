"""Fixtures of the reliability suite: a fork server for CLI runs and per-category figures.

Each category records ``(trials, faults injected, failures)``; at the end of the session
one line per category is printed, e.g.
``reliability: crash-resume: 10 trials, 10 kills injected, 0 failures``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import RELIABILITY_LOG_ENV

ROOT = Path(__file__).resolve().parents[2]


def record(
    category: str, trials: int, faults: int, failures: int, fault_word: str = "faults", **figures
) -> None:
    """Add ``trials``/``faults``/``failures`` (and named figures) to a category's line.

    Each call appends one JSON line to the session's log (``tests/conftest.py`` creates it
    before any xdist worker starts), so the figures of every worker reach the summary.
    """
    entry = {
        "category": category,
        "counts": [trials, faults, failures],
        "word": fault_word,
        "figures": figures,
    }
    path = os.environ.get(RELIABILITY_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:  # one short append per call
            handle.write(json.dumps(entry, default=str) + "\n")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability_cache")


@pytest.fixture(autouse=True)
def _own_cache(cache_dir, monkeypatch) -> None:
    monkeypatch.setenv("SEGBALANCE_CACHE", str(cache_dir))


@dataclass
class Run:
    """A finished CLI run: exit code (``-9`` after SIGKILL) and its output."""

    code: int
    stdout: str
    stderr: str


class Zygote:
    """Client of ``_zygote.py``: starts CLI runs as forked children, kills, waits."""

    def __init__(self, workdir: Path, cache: Path) -> None:
        self.workdir = workdir
        env = {**os.environ, "SEGBALANCE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
        env["OMP_NUM_THREADS"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability._zygote"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert "ready" in self._read()
        self.count = 0
        self._files: dict[int, tuple[str, str]] = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)

    def _send(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def start(self, *args: str, fault: str = "none", cwd: Path | None = None, env=None) -> int:
        """Fork ``segbalance ARGS`` with ``fault`` installed; return the child's pid."""
        self.count += 1
        stem = self.workdir / f"run{self.count}"
        request = {
            "run": [str(a) for a in args],
            "fault": fault,
            "out": f"{stem}.out",
            "err": f"{stem}.err",
            "cwd": str(cwd or self.workdir),
            "env": env or {},
        }
        pid = self._send(request)["pid"]
        self._files[pid] = (request["out"], request["err"])
        return pid

    def wait(self, pid: int) -> Run:
        """Reap the child; its exit code (or minus the signal) and what it printed."""
        code = self._send({"wait": pid})["status"]
        out, err = self._files.pop(pid)
        return Run(code, Path(out).read_text(), Path(err).read_text())

    def run(self, *args: str, **kwargs) -> Run:
        """Run ``segbalance ARGS`` to the end."""
        return self.wait(self.start(*args, **kwargs))

    def kill(self, pid: int) -> Run:
        """SIGKILL the child and reap it."""
        os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def close(self) -> None:
        self.proc.stdin.close()
        try:  # it exits at EOF; on a starved machine that can take a while
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def cli(tmp_path_factory, cache_dir):
    """The session's :class:`Zygote` (CLI runs as real, quickly started processes)."""
    zygote = Zygote(tmp_path_factory.mktemp("zygote"), cache_dir)
    yield zygote
    zygote.close()


def wait_for(predicate, timeout: float = 120.0, poll: float = 0.002) -> bool:
    """Poll ``predicate()`` until true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False
