"""End-to-end training runs on a tiny phantom: run files, resume, budgets, failures."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from tests.train.conftest import run_cli

from segbalance.config import load_config
from segbalance.errors import InputError, TrainingError
from segbalance.train import train


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_run_writes_the_contract_files(write_config, tmp_path) -> None:
    config = write_config({"budget": {"steps": 6}, "schedule": {"name": "poly"}})
    result = run_cli("train", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "train_log.csv",
        "checkpoint_last.pt",
        "checkpoint_best.pt",
        "splits.json",
        "per_case.csv",
        "summary.json",
        "imbalance.json",
    ):
        assert (run / name).is_file(), name
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["segbalance_version"] and stored["git_hash"]
    assert stored["budget"]["steps"] == 6 and stored["optimizer"]["lr"] == 0.01
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    for key in (
        "model",
        "optimizer",
        "scaler",
        "scheduler",
        "rng",
        "loader",
        "step",
        "epoch",
        "config",
    ):
        assert key in state
    assert state["step"] == 6
    rows = _rows(run / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [4, 6]  # epoch end, then the budget end
    assert rows[0].keys() >= {"epoch", "step", "seconds", "lr", "loss", "val_dice", "val_dice_1"}
    # poly schedule, no warm-up: the lr logged is the one of the last step taken (t = step - 1)
    for row in rows:
        t = int(row["step"]) - 1
        assert float(row["lr"]) == pytest.approx(0.01 * (1 - t / 6) ** 0.9, rel=1e-4)
    split = json.loads((run / "splits.json").read_text())[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_cases"] == len(split["val"]) == 2
    # predictions: source grid and affine; per-case Dice recomputed by hand from the files
    phantom = Path(json.loads((run / "imbalance.json").read_text())["dataset"])
    per_case = _rows(run / "per_case.csv")
    assert [r["case"] for r in per_case] == split["val"]
    for row in per_case:
        pred_img = nib.load(run / "eval" / "phantom" / f"{row['case']}.nii.gz")
        ref_img = nib.load(phantom / "labelsTr" / f"{row['case']}.nii.gz")
        np.testing.assert_allclose(pred_img.affine, ref_img.affine)
        pred = np.asarray(pred_img.dataobj) == 1
        ref = np.asarray(ref_img.dataobj) == 1
        assert pred.shape == ref.shape
        denom = pred.sum() + ref.sum()
        expected = 1.0 if denom == 0 else 2 * (pred & ref).sum() / denom
        assert float(row["dice"]) == pytest.approx(expected, abs=1e-6)
        assert int(row["ref_voxels"]) == ref.sum() and int(row["pred_voxels"]) == pred.sum()


def test_existing_run_folder_needs_resume(write_config, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = run_cli("train", str(write_config()), "--quiet")
    assert result.returncode == 2
    assert "run folder exists and is not empty" in result.stderr and "--resume" in result.stderr
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_resume_without_checkpoint_starts_at_step_zero(write_config) -> None:
    cfg = load_config(
        write_config({"budget": {"steps": 2}, "validation": {"final_evaluation": False}})
    )
    result = train(cfg, resume=True, progress=False)
    assert result.step == 2


def _kill_and_resume(config: Path, run: Path, delay: float) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "segbalance", "train", str(config), "--quiet"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "checkpoint_last.pt").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(write_config, tmp_path) -> None:
    changes = {
        "budget": {"epochs": 4},
        "optimizer": {"lr": 0.01, "sam": {"variant": "sam"}},
        "validation": {"every_epochs": 2, "final_evaluation": False},
    }
    reference = write_config({**changes, "output": str(tmp_path / "ref")}, name="ref.yaml")
    assert run_cli("train", str(reference), "--quiet").returncode == 0
    expected = _weights(tmp_path / "ref" / "checkpoint_last.pt")
    for trial, delay in enumerate((0.0, 0.05, 0.15)):
        run = tmp_path / f"killed{trial}"
        config = write_config({**changes, "output": str(run)}, name=f"k{trial}.yaml")
        _kill_and_resume(config, run, delay)
        got = _weights(run / "checkpoint_last.pt")
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"trial {trial}"
        assert torch.load(run / "checkpoint_last.pt", weights_only=True)["step"] == 16
        steps = [int(r["step"]) for r in _rows(run / "train_log.csv")]
        assert steps == [4, 8, 12, 16]


class _NanAt:
    """A loss that returns NaN on call ``at`` (counting calls), else the wrapped loss."""

    def __init__(self, loss, at: int) -> None:
        self.loss, self.at, self.calls = loss, at, 0
        self.voxel_weighting = None

    def to(self, device):
        return self

    def __call__(self, logits, target, **kw):
        self.calls += 1
        value = self.loss(logits, target, **kw)
        return value * float("nan") if self.calls == self.at else value


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(write_config, monkeypatch, tmp_path):
    import segbalance.train.loop as loop
    import segbalance.train.setup as setup

    real = setup.build_training_loss
    monkeypatch.setattr(loop, "build_training_loss", lambda c, i: _NanAt(real(c, i), at=6))
    cfg = load_config(write_config({"budget": {"epochs": 3}}))
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 6"):
        train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["step"] == 4  # end of epoch 1: the last good checkpoint
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nonfinite_loss_skip_counts_and_leaves_weights(write_config, monkeypatch, tmp_path):
    import segbalance.train.loop as loop
    import segbalance.train.setup as setup

    real = setup.build_training_loss
    monkeypatch.setattr(loop, "build_training_loss", lambda c, i: _NanAt(real(c, i), at=2))
    cfg = load_config(write_config({"budget": {"steps": 4}, "on_nonfinite": "skip"}))
    result = train(cfg, progress=False)
    assert result.counters["nonfinite"] == 1 and result.step == 4
    rows = _rows(tmp_path / "run" / "train_log.csv")
    assert rows[-1]["skipped_nonfinite"] == "1"
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_wall_clock_budget_stops_the_run(write_config) -> None:
    cfg = load_config(
        write_config(
            {"budget": {"minutes": 0.01, "epochs": None}, "validation": {"final_evaluation": False}}
        )
    )
    result = train(cfg, progress=False)
    assert result.stopped == "budget"
    assert 0.6 <= result.seconds < 30
    assert result.step >= 1


def test_dataset_statistics_reach_the_loss(write_config) -> None:
    from segbalance.train.setup import loss_statistics, prepare_data

    cfg = load_config(write_config({"loss": "balanced"}))
    info, _ = prepare_data(cfg.data)
    extra = loss_statistics("balanced", {}, info)
    # independent: voxel share of class 1 over the training labels read with nibabel
    labels = [
        np.asarray(nib.load(info.path / "labelsTr" / f"{n}.nii.gz").dataobj)
        for n in info.split["train"]
    ]
    share = sum((lab == 1).sum() for lab in labels) / sum(lab.size for lab in labels)
    assert extra["prior"] == pytest.approx(share)
    fractions = loss_statistics("calf", {}, info)["fractions"]
    assert fractions == pytest.approx([(lab == 1).mean() for lab in labels])
    assert loss_statistics("calf", {"branch": "fisher"}, info) == {}
    assert loss_statistics("balanced", {"prior": 0.3}, info) == {}


def test_bad_loss_option_is_an_input_error(write_config) -> None:
    cfg = load_config(write_config({"loss": {"name": "dice+ce", "options": {"gama": 2}}}))
    with pytest.raises(InputError, match="gama"):
        train(cfg, progress=False)


def test_pretrained_and_frozen_parts(write_config, tmp_path) -> None:
    first = load_config(write_config({"budget": {"steps": 2}, "output": str(tmp_path / "a")}))
    train(first, progress=False)
    source = _weights(tmp_path / "a" / "checkpoint_last.pt")
    second = load_config(
        write_config(
            {
                "budget": {"steps": 3},
                "output": str(tmp_path / "b"),
                "model": {
                    "pretrained": str(tmp_path / "a" / "checkpoint_last.pt"),
                    "freeze": ["model.0"],
                },
                "validation": {"final_evaluation": False},
            }
        )
    )
    train(second, progress=False)
    after = _weights(tmp_path / "b" / "checkpoint_last.pt")
    frozen = [k for k in source if k.startswith("model.0.")]
    trained = [k for k in source if not k.startswith("model.0.") and source[k].is_floating_point()]
    assert frozen and trained
    assert all(torch.equal(after[k], source[k]) for k in frozen)
    assert any(not torch.equal(after[k], source[k]) for k in trained)


def test_evaluate_cli_on_another_dataset(write_config, tmp_path) -> None:
    from segbalance.data.phantom import write_phantom

    cfg = load_config(
        write_config({"budget": {"steps": 2}, "validation": {"final_evaluation": False}})
    )
    train(cfg, progress=False)
    other = write_phantom(
        tmp_path / "other", n_cases=2, shape=(20, 24, 16), fg_fraction=0.01, seed=5
    )
    result = run_cli("evaluate", str(tmp_path / "run"), "--data", str(other))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run" / "eval" / "phantom"
    rows = _rows(out / "per_case.csv")
    assert sorted(r["case"] for r in rows) == ["phantom_000", "phantom_001"]
    pred = nib.load(out / "phantom_001.nii.gz")
    assert pred.shape == (20, 24, 16)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and set(summary["mean"]) == {"1"}
    assert math.isfinite(summary["mean"]["1"]["hd95"])
    assert run_cli("evaluate", str(tmp_path / "nope")).returncode == 2


def test_tensorboard_scalars_match_the_log(write_config, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(
        write_config(
            {"budget": {"steps": 8}, "tensorboard": True, "validation": {"final_evaluation": False}}
        )
    )
    train(cfg, progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    rows = _rows(tmp_path / "run" / "train_log.csv")
    losses = {e.step: e.value for e in events.Scalars("loss")}
    assert sorted(losses) == [int(r["step"]) for r in rows] == [4, 8]
    for row in rows:
        assert losses[int(row["step"])] == pytest.approx(float(row["loss"]), rel=1e-4)
    assert "val_dice" in events.Tags()["scalars"]


def test_segvol_with_box_prompts_trains_and_evaluates(write_config, tmp_path) -> None:
    """A tiny SegVol (published key layout) through the whole engine, prompts from labels."""
    tiny = {
        "vit_patch_size": [4, 8, 8],
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_layers": 2,
        "num_heads": 2,
        "decoder_mlp_dim": 64,
        "decoder_heads": 2,
        "prompt": "box",
    }
    first = load_config(
        write_config(
            {
                "model": {"name": "segvol", "kwargs": tiny},
                "data": {"patch_size": [8, 16, 16]},
                "budget": {"steps": 3},
                "output": str(tmp_path / "a"),
                "validation": {"final_evaluation": False},
            }
        )
    )
    train(first, progress=False)
    # fine-tune from it through the published key names ("module." + key, as SegVol_v1.pth)
    weights = _weights(tmp_path / "a" / "checkpoint_last.pt")
    torch.save(
        {"model": {"module." + k: v for k, v in weights.items()}, "epoch": 1},
        tmp_path / "published.pth",
    )
    second = load_config(
        write_config(
            {
                "model": {
                    "name": "segvol",
                    "kwargs": tiny,
                    "pretrained": str(tmp_path / "published.pth"),
                    "freeze": ["image_encoder"],
                },
                "data": {"patch_size": [8, 16, 16]},
                "budget": {"steps": 3},
                "output": str(tmp_path / "b"),
            }
        )
    )
    train(second, progress=False)
    report = json.loads((tmp_path / "b" / "pretrained.json").read_text())
    assert len(report["matched"]) == len(weights) and report["missing"] == []
    after = _weights(tmp_path / "b" / "checkpoint_last.pt")
    encoder = [k for k in weights if k.startswith("image_encoder.")]
    assert encoder and all(torch.equal(after[k], weights[k]) for k in encoder)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["n_cases"] == 2 and 0.0 <= summary["mean"]["1"]["dice"] <= 1.0


def test_clock_validation_and_early_stopping(write_config, tmp_path) -> None:
    cfg = load_config(
        write_config(
            {
                "budget": {"steps": 3},
                "validation": {"every_minutes": 1e-5, "final_evaluation": False},
            }
        )
    )
    train(cfg, progress=False)
    rows = _rows(tmp_path / "run" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # validated after every step
    assert all(r["val_dice"] != "" for r in rows)
    # patience 1 with lr 0: the second validation cannot improve, so training stops there
    cfg = load_config(
        write_config(
            {
                "budget": {"epochs": 10},
                "optimizer": {"lr": 1e-12},
                "validation": {"patience": 1, "final_evaluation": False},
                "output": str(tmp_path / "es"),
            }
        )
    )
    result = train(cfg, progress=False)
    assert result.stopped == "early_stopping" and result.epoch == 2


@pytest.mark.slow
def test_sigterm_checkpoints_at_a_step_boundary_and_resumes(write_config, tmp_path) -> None:
    config = write_config(
        {
            "budget": {"steps": 400, "epochs": None},
            "validation": {"every_epochs": 1000, "final_evaluation": False},
        }
    )
    run = tmp_path / "run"
    args = [sys.executable, "-m", "segbalance", "train", str(config), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoint_last.pt").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    stopped_at = int(err.split("interrupted at step ")[1].split(";")[0])
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["step"] == stopped_at < 400
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["step"] == 400


def test_ema_weights_are_validated_checkpointed_and_resumed(write_config, tmp_path) -> None:
    from segbalance.train.checkpoint import evaluated_weights

    changes = {
        "optimizer": {"lr": 0.01, "ema_decay": 0.8},
        "schedule": {"name": "constant"},  # the lr does not depend on the budget
        "budget": {"steps": 8},
    }
    full = train(load_config(write_config(changes, "full.yaml")), progress=False)
    state = torch.load(full.run_dir / "checkpoint_last.pt", weights_only=True)
    assert state["ema"]["updates"] == 8
    assert evaluated_weights(state) is state["ema"]["module"]
    raw = state["model"]
    assert any(not torch.equal(raw[k], state["ema"]["module"][k]) for k in raw)
    # a run stopped at step 4 and resumed to 8 ends with the same EMA, bit for bit
    half = write_config({**changes, "output": str(tmp_path / "half")}, "half.yaml")
    train(load_config(half, {"budget.steps": 4}), progress=False)
    train(load_config(half), resume=True, progress=False)
    resumed = torch.load(tmp_path / "half" / "checkpoint_last.pt", weights_only=True)
    for k, v in state["ema"]["module"].items():
        assert torch.equal(resumed["ema"]["module"][k], v), k
    # the best checkpoint holds the validated (EMA) weights next to the raw ones
    best = torch.load(full.run_dir / "checkpoint_best.pt", weights_only=True)
    assert "ema" in best and "model" in best
