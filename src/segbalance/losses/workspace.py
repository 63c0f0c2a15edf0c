"""Reused scratch buffers for the CPU core's blocks.

A fresh temporary of a few MB costs page faults on every call (the allocator maps it anew
and unmaps it on free); on CPU those faults cost about as much as the arithmetic on the
block. Each thread keeps one buffer per name and dtype instead, of at most
:data:`MAX_ELEMENTS` elements (larger requests and other devices allocate normally).
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

#: the largest scratch tensor kept per name and dtype (16 MB of float32)
MAX_ELEMENTS = 1 << 22


class _Buffers(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], Tensor] = {}


_LOCAL = _Buffers()


def scratch(name: str, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """An uninitialised contiguous tensor of ``like``'s shape (``dtype``: default
    ``like.dtype``). Reused: it stays valid until this thread asks for ``name`` again, so
    it must never escape the block that asked for it."""
    dtype = like.dtype if dtype is None else dtype
    n = like.numel()
    if like.device.type != "cpu" or n > MAX_ELEMENTS:
        return torch.empty(like.shape, dtype=dtype, device=like.device)
    key = (name, dtype)
    buf = _LOCAL.buffers.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.empty(n, dtype=dtype)
        _LOCAL.buffers[key] = buf
    return buf[:n].view(like.shape)
