"""Config validation: key paths, did-you-mean, bounds, safe YAML, overrides, --dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.train.conftest import TINY, deep_update, run_cli

from segbalance.config import TrainConfig, load_config, validate_config
from segbalance.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def _error(changes: dict) -> str:
    with pytest.raises(InputError) as info:
        validate_config(deep_update(TINY, changes), TrainConfig, "cfg.yaml")
    return info.value.line()


def test_shipped_configs_validate() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "cells" in raw or "grid" in raw:
            continue  # compare configs have their own schema
        cfg = load_config(path)
        assert cfg.output, path


def test_unknown_key_names_path_and_suggests() -> None:
    line = _error({"optimizer": {"lr": 0.1, "weight_decy": 0.1}})
    assert line.startswith("cfg.yaml: optimizer.weight_decy: unknown key")
    assert "did you mean 'weight_decay'" in line
    line = _error({"optimizer": {"sam": {"variant": "sam", "rhoo": 0.1}}})
    assert "optimizer.sam.rhoo" in line and "'rho'" in line
    line = _error({"modle": {}})
    assert "modle: unknown key" in line and "'model'" in line


def test_wrong_type_and_bounds_name_the_key() -> None:
    assert "data.batch_size" in _error({"data": {"batch_size": "two"}})
    assert "data.batch_size" in _error({"data": {"batch_size": 0}})
    assert "optimizer.lr" in _error({"optimizer": {"lr": -1}})
    assert "budget: expected at least one of epochs" in _error({"budget": {"epochs": None}})
    assert "data.patch_size" in _error({"data": {"patch_size": [2, 2, 2]}})
    assert "amp" in _error({"amp": "fp8"})
    assert "optimizer.sam.variant" in _error({"optimizer": {"sam": {"variant": "samm"}}})


def test_missing_required_key() -> None:
    raw = deep_update(TINY, {})
    del raw["output"]
    with pytest.raises(InputError, match="output: required key is missing"):
        validate_config(raw, TrainConfig, "cfg.yaml")


def test_loss_string_amp_false_and_sam_rules() -> None:
    cfg = validate_config(deep_update(TINY, {"amp": False, "loss": "balanced"}), TrainConfig, "x")
    assert cfg.amp == "off" and cfg.loss.name == "balanced" and cfg.loss.options == {}
    cfg = validate_config(
        deep_update(TINY, {"optimizer": {"sam": {"variant": "sam", "adaptive": True}}}),
        TrainConfig,
        "x",
    )
    assert cfg.optimizer.sam.resolved_variant == "asam"
    assert "rho" in _error({"optimizer": {"sam": {"variant": "none", "rho": 0.1}}})
    assert "adaptive" in _error({"optimizer": {"sam": {"variant": "looksam", "adaptive": True}}})
    assert "fold" in _error({"data": {"split": {"folds": 2, "fold": 2}}})


def test_overrides_and_hash_ignores_output(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    a = load_config(path, {"budget.steps": 7, "output": "elsewhere"})
    b = load_config(path)
    assert a.budget.steps == 7 and b.budget.steps is None
    assert a.output == "elsewhere"
    assert load_config(path, {"output": "x"}).hash() == b.hash()
    assert a.hash() != b.hash()


def test_yaml_is_loaded_safely(tmp_path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(evil)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="top level is list"):
        load_config(listing)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


@settings(max_examples=60, deadline=None)
@given(
    section=st.sampled_from(["data", "optimizer", "budget", "validation", "schedule", "model"]),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    value=st.one_of(
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
)
def test_fuzzed_configs_never_crash(section: str, key: str, value) -> None:
    raw = deep_update(TINY, {section: {key: value}})
    try:
        validate_config(raw, TrainConfig, "fuzz.yaml")
    except InputError as exc:
        assert exc.line().startswith("fuzz.yaml: ")
        assert "\n" not in exc.line()


def test_dry_run_exit_codes_and_no_run_folder(write_config, tmp_path) -> None:
    good = write_config()
    result = run_cli("train", str(good), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert not (tmp_path / "run").exists()
    bad = write_config({"optimizer": {"lrr": 1.0}}, name="bad.yaml")
    result = run_cli("train", str(bad), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "optimizer.lrr" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli("train", str(bad))
    assert result.returncode == 2 and not (tmp_path / "run").exists()


def test_hash_ignores_options_left_at_their_defaults() -> None:
    base = validate_config(deep_update(TINY, {}), TrainConfig, "x")
    explicit = validate_config(
        deep_update(TINY, {"optimizer": {"sam": {"looksam_global": False}}, "amp": "off"}),
        TrainConfig,
        "x",
    )
    assert base.hash() == explicit.hash()  # a default spelled out is the same run
    changed = validate_config(deep_update(TINY, {"amp": "bf16"}), TrainConfig, "x")
    assert changed.hash() != base.hash()
