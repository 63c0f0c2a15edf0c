"""The training engine: one readable loop, atomic resumable checkpoints, torchrun DDP.

>>> from segbalance.config import load_config
>>> from segbalance.train import train
>>> result = train(load_config("configs/phantom.yaml"))

Names are imported lazily so that importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "loop",
    "TrainResult": "loop",
    "TrainingError": "loop",
    "planned_steps": "loop",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "lr_factor": "schedule",
    "prepare_data": "setup",
    "build_network": "setup",
    "build_training_loss": "setup",
    "build_training_optimizer": "setup",
    "read_run_config": "rundir",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segbalance.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"segbalance.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
