"""The training engine: one readable loop, atomic resumable checkpoints, torchrun DDP.

>>> from segbalance.config import load_config
>>> from segbalance.train import train
>>> result = train(load_config("configs/phantom.yaml"))

Names are imported lazily so that importing the package stays light.
"""

from __future__ import annotations

from segbalance._lazy import lazy_exports

_EXPORTS = {
    "train": "loop",
    "TrainResult": "loop",
    "TrainingError": "loop",
    "planned_steps": "control",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "lr_factor": "schedule",
    "prepare_data": "setup",
    "build_network": "setup",
    "build_training_loss": "setup",
    "build_training_optimizer": "setup",
    "read_run_config": "rundir",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
