"""Keep BatchNorm running statistics out of SAM's second pass (METHODS §8.3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave every BatchNorm's running statistics unchanged.

    Sets ``momentum = 0`` (davda54/sam's trick; the layers still normalise with batch
    statistics, so the gradient is unchanged) and restores ``num_batches_tracked``, which
    a training forward increments even at momentum 0 (and which ``momentum=None``, the
    cumulative average, reads). The running mean/var are restored too: ``0 * inf`` is NaN,
    so momentum 0 alone does not protect them from an overflowing perturbed pass.
    Covers every ``_BatchNorm`` subclass, SyncBatchNorm included.
    """
    saved: list[tuple[_BatchNorm, float | None, list[tuple[torch.Tensor, torch.Tensor]]]] = []
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            buffers = [module.running_mean, module.running_var, module.num_batches_tracked]
            copies = [(b, b.detach().clone()) for b in buffers if b is not None]
            saved.append((module, module.momentum, copies))
            module.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for module, momentum, copies in saved:
                module.momentum = momentum
                for buffer, copy in copies:
                    buffer.copy_(copy)
