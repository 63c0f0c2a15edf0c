"""Exponential moving average of a model's weights: the copy that validation evaluates.

    ema = ModelEMA(model, decay=0.99)
    ...; optimizer.step(); ema.update(model)
    validate(ema.module)

The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
the average is not dominated by the random initial weights in short runs. Floating-point
buffers are averaged like parameters; integer buffers (counters) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` updated as ``ema = d * ema + (1 - d) * weights``.

    Args:
        model: the trained module (unwrapped: not the DDP wrapper).
        decay: ``d`` in (0, 1); 0.99 averages over roughly the last 100 steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay: expected a value in (0, 1) but got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up, then ``decay``)."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        d = self.current_decay()
        self.updates += 1
        ours = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ours[name]
            if target.dtype.is_floating_point:
                target.lerp_(value.to(target.dtype), 1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
