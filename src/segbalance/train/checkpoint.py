"""Checkpoints: atomic writes, ``weights_only`` loads, RNG state capture (METHODS §8.7).

A checkpoint is a dict of plain tensors and containers with the keys of DESIGN.md:
``model, optimizer, scaler, scheduler, rng, loader, step, epoch, config`` (plus
``elapsed_seconds``, ``best``, ``counters``), so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbalance.atomic import atomic_write_with
from segbalance.errors import InputError

CHECKPOINT_KEYS = ("model", "optimizer", "scaler", "scheduler", "rng", "loader", "step", "epoch")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename)."""
    return atomic_write_with(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        InputError: missing, truncated or corrupt file, or a file that needs arbitrary
            unpickling (refused: it could run code).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(str(path), "checkpoint not found", "an existing .pt file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "refused"
        raise InputError(
            str(path),
            f"refused by torch.load(weights_only=True): {first}",
            "a checkpoint of plain tensors and containers",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(
            str(path), f"unreadable checkpoint: {first}", "a torch.save file"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise InputError(str(path), "not a segbalance checkpoint", "a dict with a 'model' entry")
    return state


def checkpoint_to_score(run_dir: str | Path, name: str = "checkpoint_best.pt") -> Path:
    """``run_dir/name``; for the best checkpoint of a run stopped before its first
    validation (none written yet), ``checkpoint_last.pt`` instead."""
    path = Path(run_dir) / name
    if not path.is_file() and name == "checkpoint_best.pt":
        return Path(run_dir) / "checkpoint_last.pt"
    return path


def evaluated_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights validation scores: the EMA copy when the run keeps one, else ``model``."""
    ema = state.get("ema")
    return ema["module"] if isinstance(ema, dict) and "module" in ema else state["model"]


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states as weights_only-loadable containers."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _python_state_to_list(random.getstate()),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    keys = np.asarray(np_state["keys"].numpy(), dtype=np.uint32)
    np.random.set_state(
        (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
