"""Hypothesis-generated YAML through ``segbalance train CFG --dry-run`` (in-process CLI).

Every generated file must end in exit 0 (``valid``) or exit 2 with exactly one
``error: ...`` line on stderr: never exit 1, never a traceback. YAML is loaded safely:
Python object tags are refused and never run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.train.conftest import TINY, deep_update

from segbalance.cli import main

from .conftest import record

_TALLY = {"trials": 0, "failures": 0, "valid": 0}

#: dotted keys of TINY plus unknown ones, at every level
KEYS = [
    "data.batch_size",
    "data.patch_size",
    "data.batches_per_epoch",
    "data.phantom.n_cases",
    "data.phantom.shape",
    "data.phantom.fg_fraction",
    "data.split.folds",
    "data.workers",
    "model.name",
    "model.kwargs",
    "loss",
    "optimizer.lr",
    "optimizer.sam.rho",
    "optimizer.sam.variant",
    "optimizer.accumulation",
    "budget.epochs",
    "budget.steps",
    "budget.minutes",
    "validation.every_epochs",
    "validation.overlap",
    "schedule.warmup_steps",
    "amp",
    "seed",
    "threads",
    "output",
    "on_nonfinite",
    "data.unknown_key",
    "optimizer.weight_decy",
    "surprise",
]

VALUES = st.one_of(
    st.integers(0, 4),  # often valid (seed, threads, workers, steps): the exit-0 path too
    st.integers(-(10**30), 10**30),
    st.sampled_from([-1, 0, 1, 2**31, 2**63, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["<script>alert(1)</script>", "../../etc", "~", "phantom", "sam", "1e999"]),
    st.lists(st.one_of(st.integers(-5, 10**9), st.floats(allow_nan=True)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _set(raw: dict, dotted: str, value) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value
    return raw


def _dry_run(path: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["segbalance", "train", str(path), "--dry-run"])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _verdict(code: int, out: str, err: str) -> str | None:
    if "Traceback" in err or code not in (0, 2):
        return f"exit {code}: {err[-300:]!r}"
    lines = err.strip().splitlines()
    if code == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
        return f"not one error line: {err[-300:]!r}"
    if code == 0 and "valid" not in out:
        return f"exit 0 without 'valid': {out!r}"
    return None


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4),
)
def test_mutated_configs_exit_0_or_2_with_one_line(changes, tmp_path, capsys, monkeypatch) -> None:
    # a deep copy: _set writes into nested mappings, which deep_update shares with TINY
    raw = deep_update(TINY, {"output": str(tmp_path / "run")})  # a deep copy
    for dotted, value in changes:
        _set(raw, dotted, value)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    code, out, err = _dry_run(path, capsys, monkeypatch)
    problem = _verdict(code, out, err)
    _TALLY["trials"] += 1
    _TALLY["failures"] += problem is not None
    _TALLY["valid"] += code == 0
    assert problem is None, (changes, problem)
    assert not (tmp_path / "run").exists()  # --dry-run writes nothing


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_yaml_exits_0_or_2(text, tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "raw.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = _dry_run(path, capsys, monkeypatch)
    problem = _verdict(code, out, err)
    _TALLY["trials"] += 1
    _TALLY["failures"] += problem is not None
    assert problem is None, (text, problem)


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:builtins.open ['{marker}', 'w']",
        "!!python/object/new:builtins.open ['{marker}', 'w']",
        "!!python/name:os.system",
        "!!python/object/apply:os.system ['touch {marker}']",
    ],
)
def test_python_object_tags_are_refused_and_never_run(
    payload, tmp_path, capsys, monkeypatch
) -> None:
    marker = tmp_path / "pwned"
    raw = yaml.safe_dump(deep_update(TINY, {"output": str(tmp_path / "run")}))
    path = tmp_path / "evil.yaml"
    path.write_text(raw + "seed: " + payload.format(marker=marker) + "\n")
    code, out, err = _dry_run(path, capsys, monkeypatch)
    problem = _verdict(code, out, err) or (None if code == 2 else "accepted")
    _TALLY["trials"] += 1
    _TALLY["failures"] += problem is not None or marker.exists()
    assert problem is None, problem
    assert "YAML" in err and not marker.exists()


def test_zz_record_config_fuzz() -> None:
    """Runs last in this module: the category's figures."""
    record(
        "config-fuzz",
        _TALLY["trials"],
        _TALLY["trials"],
        _TALLY["failures"],
        fault_word="generated configs",
        **{"accepted as valid": _TALLY["valid"]},
    )
