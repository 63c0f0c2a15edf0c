"""Untrusted artefacts: pickles that would run code, HTML/JS in names and config strings.

A checkpoint whose pickle calls ``builtins.open(MARKER, "w")`` when unpickled is handed to
``evaluate --checkpoint``, ``train`` (``model.pretrained``) and ``train --resume`` through
the CLI: each must exit 2 with one ``refused by torch.load(weights_only=True)`` line, and
the marker file must not exist afterwards (the code never ran). Script tags, event-handler
attributes and ``javascript:`` URLs placed in case names, cell/loss names and compare.json
strings must reach ``report.html`` only as escaped text.
"""

from __future__ import annotations

import csv
import json
import shutil
from html import unescape
from pathlib import Path

import pytest
import torch
from tests.report._fixture import write_compare_folder, write_dataset
from tests.report._html import parse_report

from ._runs import KILL_CONFIG, write_yaml
from .conftest import record

PAYLOADS = [
    "<script>alert('case')</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(2)>',
    "<a href='javascript:alert(3)'>x</a>",
    "</td></tr></table><iframe src=//evil>",
]


class _OpensAFile:
    """Unpickling this calls ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1, "payload": _OpensAFile(marker)}, path)
    return path


@pytest.fixture(scope="module")
def trained_run(cli, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("untrusted")
    raw = {**KILL_CONFIG, "budget": {"steps": 2}}
    config = write_yaml(tmp / "c.yaml", raw, output=str(tmp / "run"))
    assert cli.run("train", config, "--quiet").code == 0
    return tmp / "run"


def test_malicious_checkpoints_are_refused_everywhere(cli, trained_run, tmp_path) -> None:
    marker = tmp_path / "pwned"
    results = {}
    # 1. evaluate --checkpoint (a file inside the run folder)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    _evil_checkpoint(run / "evil.pt", marker)
    results["evaluate"] = cli.run("evaluate", run, "--checkpoint", "evil.pt")
    # 2. train with model.pretrained pointing at it
    pretrained = write_yaml(
        tmp_path / "p.yaml",
        KILL_CONFIG,
        output=str(tmp_path / "new"),
        model={**KILL_CONFIG["model"], "pretrained": str(run / "evil.pt")},
    )
    results["pretrained"] = cli.run("train", pretrained, "--quiet")
    # 3. train --resume over a run whose checkpoint_last.pt was replaced
    _evil_checkpoint(run / "checkpoint_last.pt", marker)
    resume = write_yaml(tmp_path / "r.yaml", KILL_CONFIG, output=str(run))
    results["resume"] = cli.run("train", resume, "--quiet", "--resume")
    problems = {}
    for name, result in results.items():
        lines = result.stderr.strip().splitlines()
        if result.code != 2 or len(lines) != 1 or "Traceback" in result.stderr:
            problems[name] = (result.code, result.stderr[-400:])
        elif "weights_only" not in lines[0]:
            problems[name] = lines[0]
    executed = marker.exists()
    record(
        "untrusted",
        len(results),
        len(results),
        len(problems) + executed,
        fault_word="hostile artefacts",
    )
    assert not executed, "unpickling ran code"
    assert not problems, problems


@pytest.fixture(scope="module")
def evil_compare(cli, tmp_path_factory) -> tuple[Path, str]:
    """The report fixture with a payload in every name and string the report shows."""
    base = tmp_path_factory.mktemp("evil_report")
    root = write_compare_folder(base / "cmp", write_dataset(base / "dataset"))
    with (root / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        if row["case"] == "case_1":
            row["case"] = PAYLOADS[0] + "case_1"
        row["loss"] = PAYLOADS[i % 2 + 1]
        row["class_name"] = PAYLOADS[3]
    with (root / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    compare = json.loads((root / "compare.json").read_text())
    compare["dataset_name"] = PAYLOADS[4]
    compare["budget"] = {PAYLOADS[1]: PAYLOADS[2]}
    compare["classes"] = {"1": PAYLOADS[3]}
    for cell in compare["cells"]:
        cell["loss"] = PAYLOADS[0]
        cell["optimizer"] = PAYLOADS[2]
    (root / "compare.json").write_text(json.dumps(compare))
    result = cli.run("report", root)
    assert result.code == 0, result.stderr
    return root, (root / "report.html").read_text(encoding="utf-8")


def test_html_in_names_and_config_strings_is_escaped(evil_compare) -> None:
    _, html = evil_compare
    parsed = parse_report(html)
    active = []
    for tag, attributes in parsed.tags:
        if tag in ("script", "iframe", "svg", "object", "embed"):
            active.append(tag)
        active += [f"{tag}[{k}]" for k in attributes if k.lower().startswith("on")]
        active += [f"{tag}[{k}]" for k, v in attributes.items() if "javascript:" in (v or "")]
    raw_payloads = [p for p in PAYLOADS if p in html]
    # the escaped text decodes back to the payload: shown to the reader, never parsed as HTML
    shown = [p for p in PAYLOADS if p in unescape(html)]
    record(
        "untrusted",
        len(PAYLOADS),
        len(PAYLOADS),
        len(active) + len(raw_payloads),
        fault_word="hostile artefacts",
    )
    assert not active, active
    assert not raw_payloads, raw_payloads
    assert len(shown) >= 4, shown
