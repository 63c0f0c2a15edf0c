"""The CPU core's reused scratch buffers: reuse by name, per thread, never escaping into
results (a gradient or loss kept from one call is untouched by the next calls)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from segbalance.losses import binary, build_loss, workspace
from segbalance.losses.workspace import scratch

from .conftest import random_case, tl, tt


def test_reused_by_name_and_dtype_and_grown_on_demand() -> None:
    like = torch.empty(2, 50)
    a = scratch("test-a", like)
    assert a.shape == (2, 50) and a.is_contiguous()
    assert scratch("test-a", torch.empty(3, 10)).data_ptr() == a.data_ptr()
    assert scratch("test-b", like).data_ptr() != a.data_ptr()
    assert scratch("test-a", like, torch.float64).dtype == torch.float64
    big = scratch("test-a", torch.empty(7, 100))  # larger: a new, kept buffer
    assert big.numel() == 700 and scratch("test-a", like).data_ptr() == big.data_ptr()


def test_oversized_requests_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "MAX_ELEMENTS", 100)
    assert scratch("test-big", torch.empty(101)).shape == (101,)
    assert ("test-big", torch.float32) not in workspace._LOCAL.buffers
    scratch("test-big", torch.empty(100))
    assert ("test-big", torch.float32) in workspace._LOCAL.buffers


def test_each_thread_has_its_own_buffers() -> None:
    like = torch.empty(64)
    mine = scratch("test-thread", like).data_ptr()
    theirs: list[int] = []
    thread = threading.Thread(target=lambda: theirs.append(scratch("test-thread", like).data_ptr()))
    thread.start()
    thread.join()
    assert theirs[0] != mine


@pytest.mark.parametrize("name", ["ce", "dice+ce", "ce+topk_dice", "topk_dice", "balanced"])
@pytest.mark.parametrize("c", [1, 2])
def test_results_of_one_call_survive_the_next(name, c, monkeypatch) -> None:
    monkeypatch.setattr(binary, "BLOCK_VOXELS", 50)  # several blocks per row
    opts = {"prior": 0.1 if c == 1 else [0.9, 0.1]} if name == "balanced" else {}
    loss = build_loss(name, **opts)

    def call(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        z, t = random_case(seed, n_classes=c, spatial=(6, 5, 7))
        x = tt(z, torch.float32).requires_grad_(True)
        out = loss(x, tl(t))
        out.backward()
        return out.detach(), x.grad

    value, grad = call(1)
    kept = (value.clone(), grad.clone())
    call(2)
    call(3)
    np.testing.assert_array_equal(value.numpy(), kept[0].numpy())
    np.testing.assert_array_equal(grad.numpy(), kept[1].numpy())
    again = call(1)
    np.testing.assert_array_equal(again[1].numpy(), kept[1].numpy())
