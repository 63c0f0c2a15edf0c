"""Atomic writes, weights_only loads, RNG state round trip."""

from __future__ import annotations

import errno
import os
import pickle
import random

import numpy as np
import pytest
import torch

from segbalance.atomic import atomic_write_text
from segbalance.errors import InputError
from segbalance.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def test_round_trip_with_weights_only(tmp_path) -> None:
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 3, "rng": rng_state()}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "step": 1})
    before = path.read_bytes()

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}, "step": 2})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt"]


def test_atomic_text_leaves_no_temp_on_error(tmp_path, monkeypatch) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "io")))
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, path)
    with pytest.raises(InputError, match=r"refused by torch.load\(weights_only=True\)"):
        load_checkpoint(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": 1}))
    with pytest.raises(InputError):
        load_checkpoint(plain)


def test_truncated_and_missing_files(tmp_path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1000)}})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="unreadable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    save_checkpoint(path, {"weights": 1})
    with pytest.raises(InputError, match="not a segbalance checkpoint"):
        load_checkpoint(path)


def test_rng_state_round_trip(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn(5)  # a cached gaussian must survive too
    state = rng_state()
    save_checkpoint(tmp_path / "r.pt", {"model": {}, "rng": state})
    expected = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == expected
