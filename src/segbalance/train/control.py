"""Small pieces of the training loop: budgets, progress, devices, label prompts, signals."""

from __future__ import annotations

import contextlib
import math
import signal
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.config import TrainConfig
from segbalance.errors import InputError
from segbalance.train.distributed import any_rank


def planned_steps(cfg: TrainConfig) -> int | None:
    """Optimiser steps the budget allows (None for a wall-clock-only budget)."""
    per_epoch = cfg.data.batches_per_epoch // cfg.optimizer.accumulation
    options = [
        cfg.budget.steps,
        None if cfg.budget.epochs is None else cfg.budget.epochs * per_epoch,
    ]
    known = [s for s in options if s is not None]
    return min(known) if known else None


def budget_progress(cfg: TrainConfig, step: int, seconds: float, total_steps: int | None) -> float:
    parts = []
    if total_steps is not None:
        parts.append(step / total_steps)
    if cfg.budget.minutes is not None:
        parts.append(seconds / (cfg.budget.minutes * 60))
    return max(parts)


def budget_reached(
    cfg: TrainConfig, c: dict[str, int], seconds: float, dist_info: Any = None
) -> bool:
    b = cfg.budget
    reached = (
        (b.steps is not None and c["step"] >= b.steps)
        or (b.epochs is not None and c["epoch"] >= b.epochs)
        or (b.minutes is not None and seconds >= b.minutes * 60)
    )
    if dist_info is not None and b.minutes is not None:
        return any_rank(reached, dist_info)  # clocks differ between ranks: agree
    return reached


def nanmean(values: Any) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "cuda requested but no CUDA device is available", "cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_inputs(net: nn.Module, batch: tuple[Tensor, ...]) -> Any:
    inner = getattr(net, "module", net)
    return (batch[0], batch[1]) if isinstance(inner, LabelPrompted) else batch[0]


class LabelPrompted(nn.Module):
    """Feeds the label to models that derive prompts from it (SegVol box/point prompts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        image, label = inputs
        return self.model(image, label=label)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop stops at the next step boundary and checkpoints."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: leave now
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
