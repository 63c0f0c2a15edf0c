"""The training loop: one function that reads top to bottom (nanoGPT style).

data -> forward (autocast) -> loss -> backward -> (SAM passes) -> step -> schedule, with
validation (sliding window, per-class Dice), best/last checkpoints, resume, budgets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.atomic import atomic_write_text
from segbalance.config import TrainConfig
from segbalance.errors import InputError, TrainingError
from segbalance.optim.ema import ModelEMA
from segbalance.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from segbalance.train.control import (
    LabelPrompted,
    StopRequest,
    budget_progress,
    budget_reached,
    model_inputs,
    nanmean,
    pick_device,
    planned_steps,
)
from segbalance.train.distributed import any_rank, barrier, init_distributed, shutdown
from segbalance.train.logbook import Progress, TensorBoard, TrainLog
from segbalance.train.rundir import (
    RunLock,
    peak_rss_mb,
    prepare_run_dir,
    remove_if_only_lock,
    write_run_files,
)
from segbalance.train.schedule import lr_factor
from segbalance.train.setup import (
    build_loader,
    build_network,
    build_training_loss,
    build_training_optimizer,
    prepare_data,
)
from segbalance.train.validate import validate


@dataclass
class TrainResult:
    """What :func:`train` returns (rank 0; other ranks get the same numbers)."""

    run_dir: Path
    step: int
    epoch: int
    seconds: float
    best_dice: float
    best_step: int
    stopped: str  # budget | early_stopping | interrupted
    counters: dict[str, int] = field(default_factory=dict)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Run one training run described by ``cfg`` (see ``docs/training.md``).

    Writes into ``cfg.output``: ``config.yaml``, ``splits.json``, ``imbalance.json``,
    ``train_log.csv``, ``checkpoint_last.pt``, ``checkpoint_best.pt`` and, after training,
    the evaluation of the best checkpoint on the validation cases (``per_case.csv``,
    ``summary.json``, predictions under ``eval/``).

    Args:
        resume: continue from ``checkpoint_last.pt`` (bit-identical on the CPU for steps
            and epochs budgets; wall-clock minutes accumulate across resumes).
        progress: show a rich progress bar.

    Raises:
        InputError: bad config values found while building the run (exit code 2).
        TrainingError: a non-finite loss with ``on_nonfinite: stop`` (exit code 1).
    """
    device = pick_device(cfg.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.output)
    lock = None
    created = not run_dir.exists()
    if dist_info.is_main:
        prepare_run_dir(run_dir, resume)
        lock = RunLock(run_dir)
    barrier(dist_info)
    try:
        return _train(cfg, run_dir, resume, progress, device, dist_info)
    except InputError:
        if lock is not None and created:
            lock.release()
            lock = None
            remove_if_only_lock(run_dir)  # bad data: leave no run folder behind
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool,
    progress: bool,
    device: torch.device,
    dist_info: Any,
) -> TrainResult:
    """The body of :func:`train` once the run folder is prepared and locked."""
    state = None
    if resume and (run_dir / "checkpoint_last.pt").is_file():
        state = load_checkpoint(run_dir / "checkpoint_last.pt")
    elif resume and dist_info.is_main:
        print(f"notice: no checkpoint in {run_dir} yet; starting at step 0")

    # ---- set-up: data, model, loss, optimiser ------------------------------------------
    seed_everything(cfg.seed)
    info, data = prepare_data(cfg.data, run_dir)
    if dist_info.is_main:
        write_run_files(run_dir, cfg, info)
    model, pretrained = build_network(cfg, info)
    if pretrained is not None and dist_info.is_main:
        atomic_write_text(run_dir / "pretrained.json", json.dumps(pretrained, indent=1))
        print(f"pretrained: {pretrained.get('summary', '')}")
    model.to(device)
    total_steps = planned_steps(cfg)
    optimizer = build_training_optimizer(cfg, model, total_steps)
    loss_fn = build_training_loss(cfg, info).to(device)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    ema = ModelEMA(model, cfg.optimizer.ema_decay) if cfg.optimizer.ema_decay else None
    evaluated = ema.module if ema is not None else model  # what validation scores
    loader = build_loader(
        cfg,
        info,
        data,
        with_weights=getattr(loss_fn, "voxel_weighting", None) == "inverse_lesion",
        seed=cfg.seed + 1_000_003 * dist_info.rank,  # each rank draws its own patches
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp)
    net: nn.Module = LabelPrompted(model) if getattr(model, "wants_label_prompts", False) else model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # SegVol without prompts leaves prompt-encoder parameters unused (as upstream)
            find_unused_parameters=cfg.model.name.lower() == "segvol",
        )

    # ---- resume ------------------------------------------------------------------------
    c = {"step": 0, "epoch": 0, "nonfinite": 0, "overflow": 0, "bad_validations": 0}
    elapsed, best, best_step = 0.0, -math.inf, -1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if "ema" not in state:
                raise InputError(
                    str(run_dir / "checkpoint_last.pt"),
                    "has no EMA weights but optimizer.ema_decay is set",
                    "the config the run was started with",
                )
            ema.load_state_dict(state["ema"])
        loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        c.update({k: int(v) for k, v in state["counters"].items()})
        c["step"], c["epoch"] = int(state["step"]), int(state["epoch"])
        elapsed = float(state["elapsed_seconds"])
        best, best_step = float(state["best"]["dice"]), int(state["best"]["step"])
    classes = sorted(info.classes)
    log = (
        TrainLog(run_dir / "train_log.csv", classes, resume_step=c["step"] if state else None)
        if dist_info.is_main
        else None
    )
    board = TensorBoard(run_dir / "tensorboard") if cfg.tensorboard and dist_info.is_main else None
    budget = cfg.budget
    bar = Progress(
        progress and dist_info.is_main,
        total=total_steps if total_steps is not None else budget.minutes * 60,
        unit="steps" if total_steps is not None else "seconds",
        start=c["step"] if total_steps is not None else elapsed,
    )

    def checkpoint_state() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "scheduler": {"name": cfg.schedule.name, "base_lrs": base_lrs, "step": c["step"]},
            "rng": rng_state(),
            "loader": loader.state_dict(),
            "step": c["step"],
            "epoch": c["epoch"],
            "elapsed_seconds": elapsed_now(),
            "best": {"dice": best, "step": best_step},
            "counters": dict(c),
            "config": cfg.model_dump(mode="json"),
            **({"ema": ema.state_dict()} if ema is not None else {}),
        }

    started = time.perf_counter() - elapsed

    def elapsed_now() -> float:
        return time.perf_counter() - started

    stop_request = StopRequest()
    stopped = "budget"
    last_val_time = elapsed_now()
    window_loss, window_steps, window_start = 0.0, 0, elapsed_now()
    last_dice: float | None = None

    def run_validation() -> dict[int, float]:
        nonlocal best, best_step, last_val_time
        scores: dict[int, float] = {}
        if dist_info.is_main:
            scores = validate(
                evaluated, data, info, cfg.validation, device=device, autocast_dtype=autocast_dtype
            )
            mean = nanmean(scores.values())
            if mean > best:
                best, best_step = mean, c["step"]
                c["bad_validations"] = 0
                save_checkpoint(run_dir / "checkpoint_best.pt", checkpoint_state())
            else:
                c["bad_validations"] += 1
        barrier(dist_info)
        last_val_time = elapsed_now()
        return scores

    def log_row(scores: dict[int, float] | None) -> None:
        nonlocal window_loss, window_steps, window_start, last_dice
        now = elapsed_now()
        row: dict[str, Any] = {
            "epoch": c["epoch"],
            "step": c["step"],
            "seconds": now,
            "lr": optimizer.param_groups[0]["lr"],
            "loss": window_loss / window_steps if window_steps else math.nan,
            "skipped_nonfinite": c["nonfinite"],
            "skipped_overflow": c["overflow"],
            "steps_per_second": window_steps / max(now - window_start, 1e-9),
        }
        if scores:
            last_dice = nanmean(scores.values())
            row["val_dice"] = last_dice
            row.update({f"val_dice_{k}": v for k, v in scores.items()})
        if log is not None:
            log.add(row)
        if board is not None:
            board.add(row)
        window_loss, window_steps, window_start = 0.0, 0, now

    # ---- the loop ------------------------------------------------------------------------
    model.train()
    try:
        while not budget_reached(cfg, c, elapsed_now(), dist_info):
            micro: list[tuple[Tensor, ...]] = []
            validated_in_epoch = False
            for batch in loader:
                micro.append(tuple(t.to(device, non_blocking=True) for t in batch))
                if len(micro) < cfg.optimizer.accumulation:
                    continue
                progress_fraction = budget_progress(cfg, c["step"], elapsed_now(), total_steps)
                factor = lr_factor(
                    cfg.schedule.name,
                    c["step"],
                    progress_fraction,
                    warmup_steps=cfg.schedule.warmup_steps,
                    power=cfg.schedule.power,
                    min_lr_ratio=cfg.schedule.min_lr_ratio,
                )
                for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base_lr * factor
                skipped_before = getattr(optimizer, "skipped_steps", 0)
                batches = [(model_inputs(net, b), b[1], *b[2:]) for b in micro]
                loss = sam_step_call(net, optimizer, loss_fn, batches, scaler, cfg, autocast_dtype)
                if ema is not None:
                    ema.update(model)
                micro = []
                c["step"] += 1
                if not math.isfinite(loss):
                    c["nonfinite"] += 1
                    if cfg.on_nonfinite == "stop":
                        raise TrainingError(
                            f"non-finite loss ({loss}) at step {c['step']}; the last good "
                            f"checkpoint is kept in {run_dir}; set on_nonfinite: skip to skip "
                            "such batches"
                        )
                else:
                    if getattr(optimizer, "skipped_steps", 0) > skipped_before:
                        c["overflow"] += 1
                    window_loss += loss
                    window_steps += 1
                bar.update(
                    c["step"] if total_steps is not None else elapsed_now(),
                    epoch=c["epoch"],
                    loss=f"{loss:.4f}",
                    dice="-" if last_dice is None else f"{last_dice:.4f}",
                    rate=f"{window_steps / max(elapsed_now() - window_start, 1e-9):.2f}",
                )
                every = cfg.validation.every_minutes
                if every is not None and any_rank(
                    elapsed_now() - last_val_time >= every * 60, dist_info
                ):
                    log_row(run_validation())
                    validated_in_epoch = True
                if any_rank(stop_request.requested, dist_info):
                    stopped = "interrupted"
                    break
                if budget_reached(cfg, c, elapsed_now(), dist_info):
                    break
            if stopped == "interrupted":
                break
            epoch_done = loader.position % cfg.data.batches_per_epoch == 0
            if epoch_done:
                c["epoch"] += 1
            due = epoch_done and c["epoch"] % cfg.validation.every_epochs == 0
            finished = budget_reached(cfg, c, elapsed_now(), dist_info)
            scores = run_validation() if (due or finished) and not validated_in_epoch else None
            if scores is not None or window_steps > 0:  # no second row for the same step
                log_row(scores)
            if dist_info.is_main:
                save_checkpoint(run_dir / "checkpoint_last.pt", checkpoint_state())
            patience = cfg.validation.patience
            if patience is not None and c["bad_validations"] >= patience:
                stopped = "early_stopping"
                break
        if stopped == "interrupted" and dist_info.is_main:
            save_checkpoint(run_dir / "checkpoint_last.pt", checkpoint_state())
    finally:
        stop_request.restore()
        bar.close()
        if board is not None:
            board.close()
    seconds = elapsed_now()
    if dist_info.is_main and stopped != "interrupted" and cfg.validation.final_evaluation:
        from segbalance.evaluate.run import evaluate_run

        evaluate_run(
            run_dir,
            model=evaluated,
            data=data,
            info=info,
            cfg=cfg,
            device=device,
            extra={
                "train_seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "best_step": best_step,
                "steps": c["step"],
            },
        )
    barrier(dist_info)
    shutdown(dist_info)
    return TrainResult(run_dir, c["step"], c["epoch"], seconds, best, best_step, stopped, dict(c))


def sam_step_call(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: list[tuple[Any, ...]],
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    autocast_dtype: torch.dtype | None,
) -> float:
    """One optimiser step (SAM family or plain) through :func:`segbalance.optim.sam_step`."""
    from segbalance.optim import sam_step

    return sam_step(
        net,
        optimizer,
        loss_fn,
        batches,
        scaler=scaler if scaler.is_enabled() else None,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        sam_perturbation=cfg.optimizer.sam.perturbation,
        autocast_dtype=autocast_dtype,
    )
