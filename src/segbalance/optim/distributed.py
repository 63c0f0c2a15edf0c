"""DDP helpers for :func:`segbalance.optim.sam_step` (METHODS §8.5)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def is_ddp(model: nn.Module) -> bool:
    """Whether ``model`` is wrapped in DistributedDataParallel."""
    return isinstance(model, DistributedDataParallel)


def sync_context(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
    """``model.no_sync()`` unless ``sync`` (or not DDP).

    It must wrap the forward *and* the backward: a forward outside ``no_sync`` already arms
    DDP's gradient reduction (davda54/sam #78).
    """
    if sync or not is_ddp(model):
        return contextlib.nullcontext()
    return model.no_sync()


def _buckets(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        by_kind.setdefault((t.dtype, t.device), []).append(t)
    yield from by_kind.values()


@torch.no_grad()
def all_reduce_mean_(model: nn.Module, tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` in place over the DDP process group: one flat call per dtype."""
    group = getattr(model, "process_group", None)
    world = dist.get_world_size(group)
    for bucket in _buckets(tensors):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat, group=group)
        flat.div_(world)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
