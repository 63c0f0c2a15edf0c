"""Pydantic models for the YAML configs of ``segbalance train`` (unknown keys rejected).

>>> cfg = load_config("configs/phantom.yaml")       # InputError with the key path on a bad file
>>> cfg.optimizer.sam.variant
'none'

Torch-free, so ``segbalance train CONFIG --dry-run`` validates in a fraction of a second.
Every field has a bound; every section rejects keys it does not know, with a
"did you mean". See ``docs/training.md`` for every key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from segbalance.config_loading import (  # noqa: F401  (re-exported: one import for users)
    dump_config,
    read_yaml,
    set_dotted,
    validate_config,
)
from segbalance.errors import did_you_mean


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PhantomConfig(Section):
    """Arguments of :func:`segbalance.data.phantom.write_phantom` for ``dataset: phantom``."""

    n_cases: int = Field(8, ge=2, le=1000)
    shape: tuple[int, int, int] = (64, 64, 64)
    fg_fraction: float = Field(0.002, gt=0, lt=0.5)
    n_classes: int = Field(1, ge=1, le=10)
    seed: int = Field(0, ge=0)

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 8 or max(value) > 512:
            raise ValueError(f"expected sizes in [8, 512] but got {value}")
        return value


class SplitConfig(Section):
    """Training/validation split: k-fold (``folds``, ``fold``) or an explicit ``val`` list."""

    folds: int = Field(5, ge=2, le=100)
    fold: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)
    val: list[str] | None = None
    train: list[str] | None = None

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitConfig:
        if self.fold >= self.folds:
            raise ValueError(f"fold: expected 0 <= fold < folds={self.folds} but got {self.fold}")
        if self.train is not None and self.val is None:
            raise ValueError("train: an explicit train list needs an explicit val list")
        return self


class AugmentConfig(Section):
    """Augmentation settings (fields of :class:`segbalance.data.AugmentSettings`)."""

    enabled: bool = True
    flip_axes: tuple[int, ...] = (0, 1, 2)
    flip_prob: float = Field(0.5, ge=0, le=1)
    rot90_planes: list[tuple[int, int]] | None = None
    rot90_prob: float = Field(0.5, ge=0, le=1)
    affine_prob: float = Field(0.2, ge=0, le=1)
    rotate_degrees: float = Field(15.0, ge=0, le=180)
    scale_range: float = Field(0.1, ge=0, lt=1)
    scale_intensity_prob: float = Field(0.15, ge=0, le=1)
    shift_intensity_prob: float = Field(0.15, ge=0, le=1)
    gamma_prob: float = Field(0.3, ge=0, le=1)
    noise_prob: float = Field(0.1, ge=0, le=1)


class PreprocessConfig(Section):
    """Preprocessing (fields of :class:`segbalance.data.PreprocessSettings`)."""

    target_spacing: tuple[float, float, float] | None = None
    normalization: str | list[str] = "auto"
    reorient: bool = True


class DataConfig(Section):
    """``data``: dataset, split, patches, batches, sampling, augmentation, workers."""

    dataset: str
    phantom: PhantomConfig = PhantomConfig()
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    patch_size: tuple[int, int, int] | None = None
    batch_size: int = Field(2, ge=1, le=512)
    batches_per_epoch: int = Field(250, ge=1, le=1_000_000)
    oversample_foreground: float | None = Field(None, ge=0, le=1)
    foreground_sampling: Literal["voxel", "lesion"] = "voxel"
    augment: AugmentConfig = AugmentConfig()
    workers: int = Field(0, ge=0, le=64)

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and (min(value) < 4 or max(value) > 1024):
            raise ValueError(f"expected sizes in [4, 1024] but got {value}")
        return value


class ModelConfig(Section):
    """``model``: network name and kwargs, pretrained weights, freezing, per-part LRs."""

    name: str = "unet"
    kwargs: dict[str, Any] = {}
    pretrained: str | None = None
    strict: bool = False
    freeze: list[str] = []
    part_lrs: dict[str, float] = {}
    channels_last: bool = False

    @field_validator("part_lrs")
    @classmethod
    def _lrs(cls, value: dict[str, float]) -> dict[str, float]:
        for key, lr in value.items():
            if not 0 < lr <= 10:
                raise ValueError(f"{key}: expected a learning rate in (0, 10] but got {lr}")
        return value


class LossConfig(Section):
    """``loss``: a loss string as in ``build_loss`` (``"dice+ce"``, ``calf``) and its options."""

    name: str = "dice+ce"
    options: dict[str, Any] = {}
    term_options: dict[str, dict[str, Any]] = {}


class SamConfig(Section):
    """``optimizer.sam``: the sharpness-aware variant wrapped around the base optimiser."""

    variant: Literal["none", "sam", "asam", "looksam", "sam_k"] = "none"
    rho: float | None = Field(None, gt=0, le=10)
    adaptive: bool = False
    k: int | None = Field(None, ge=1, le=1000)
    alpha: float | None = Field(None, ge=0, le=10)
    perturbation: Literal["global", "local"] = "global"
    exclude_norm_bias: bool = False
    start_frac: float = Field(0.0, ge=0, lt=1)
    looksam_global: bool = False

    @model_validator(mode="after")
    def _adaptive(self) -> SamConfig:
        if self.adaptive and self.variant not in ("sam", "asam"):
            raise ValueError(
                f"adaptive: only variant 'sam' can be made adaptive (use variant: asam) "
                f"but variant is {self.variant!r}"
            )
        if self.looksam_global and self.variant != "looksam":
            raise ValueError(f"looksam_global: needs variant 'looksam' but got {self.variant!r}")
        if self.variant == "none" and self.rho is not None:
            raise ValueError("rho: needs a SAM variant but variant is 'none'")
        return self

    @property
    def resolved_variant(self) -> str:
        """``asam`` for ``variant: sam, adaptive: true``; the variant otherwise."""
        return "asam" if self.adaptive else self.variant


class OptimizerConfig(Section):
    """``optimizer``: base optimiser, its hyper-parameters, SAM, clipping, accumulation."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool | None = None
    betas: tuple[float, float] | None = None
    sam: SamConfig = SamConfig()
    max_grad_norm: float | None = Field(None, gt=0)
    accumulation: int = Field(1, ge=1, le=1024)
    ema_decay: float | None = Field(None, gt=0, lt=1)


class ScheduleConfig(Section):
    """``schedule``: linear warm-up, then poly / cosine decay / constant."""

    name: Literal["poly", "cosine", "constant"] = "poly"
    warmup_steps: int = Field(0, ge=0, le=10_000_000)
    power: float = Field(0.9, gt=0, le=10)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class BudgetConfig(Section):
    """``budget``: the first of ``epochs``, ``steps``, ``minutes`` that is reached ends the run."""

    epochs: int | None = Field(None, ge=1, le=1_000_000)
    steps: int | None = Field(None, ge=1, le=100_000_000)
    minutes: float | None = Field(None, gt=0, le=60 * 24 * 365)

    @model_validator(mode="after")
    def _one_given(self) -> BudgetConfig:
        if self.epochs is None and self.steps is None and self.minutes is None:
            raise ValueError("expected at least one of epochs, steps, minutes")
        return self


class ValidationConfig(Section):
    """``validation``: when and how to validate; best checkpoint and early stopping."""

    every_epochs: int = Field(1, ge=1, le=1_000_000)
    every_minutes: float | None = Field(None, gt=0)
    max_cases: int | None = Field(None, ge=1)
    overlap: float = Field(0.5, ge=0, lt=1)
    mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1, le=256)
    mirror_axes: tuple[int, ...] = ()
    patience: int | None = Field(None, ge=1)
    final_evaluation: bool = True

    @field_validator("mirror_axes")
    @classmethod
    def _mirror(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(a not in (0, 1, 2) for a in value) or len(set(value)) != len(value):
            raise ValueError(f"expected distinct spatial axes among 0, 1, 2 but got {value}")
        return value


class TrainConfig(Section):
    """One training run (``segbalance train CONFIG``)."""

    data: DataConfig
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    budget: BudgetConfig
    amp: Literal["off", "fp16", "bf16"] = "off"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    validation: ValidationConfig = ValidationConfig()
    output: str
    on_nonfinite: Literal["stop", "skip"] = "stop"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=512)
    landscape: bool = False
    tensorboard: bool = False

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_false(cls, value: Any) -> Any:
        return "off" if value is False or value is None else value

    def hash(self) -> str:
        """Hash of everything that changes the result (not the output folder or threads).

        Fields left at their defaults are not hashed, so a new option added with a default
        in a later version does not invalidate finished runs of a comparison.
        """
        payload = self.model_dump(mode="json", exclude={"output", "threads"}, exclude_defaults=True)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a training config (YAML, safe loader).

    Args:
        path: the YAML file.
        overrides: dotted keys set after loading (``{"budget.steps": 10}``).

    Raises:
        InputError: ``<file>: <key.path>: <problem>``, for the first problem.
    """
    return validate_config(read_yaml(path), TrainConfig, str(path), overrides)


class CellConfig(Section):
    """One method of a comparison: a loss and an optimiser (plus any other overrides)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=80)
    loss: str | dict[str, Any] = "dice+ce"
    optimizer: str | dict[str, Any] = "adamw"
    overrides: dict[str, Any] = {}


class GridConfig(Section):
    """``grid``: the product ``losses x optimizers`` as cells named ``<loss>-<optimizer>``."""

    losses: list[str] = Field(min_length=1)
    optimizers: list[str] = Field(min_length=1)


class SweepConfig(Section):
    """``sweep``: repeat the comparison for each value of one dotted compare-config key."""

    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    values: list[Any] = Field(min_length=2, max_length=50)

    @field_validator("key")
    @classmethod
    def _not_structural(cls, value: str) -> str:
        if value.split(".")[0] in ("output", "sweep", "cells", "grid"):
            raise ValueError(
                f"expected a setting to sweep (e.g. phantom.fg_fraction) but got {value!r}"
            )
        return value


class CompareConfig(Section):
    """``segbalance compare CONFIG``: one dataset, cells x seeds, statistics, report."""

    dataset: str
    phantom: PhantomConfig = PhantomConfig()
    train: dict[str, Any] = {}
    budget: BudgetConfig
    seeds: list[int] = Field([0], min_length=1, max_length=100)
    cells: list[CellConfig] = []
    grid: GridConfig | None = None
    baseline: str | None = None
    output: str
    jobs: int = Field(1, ge=1, le=64)
    landscape: bool = True
    landscape_steps: int = Field(11, ge=3, le=101)
    sharpness: bool = False
    metrics: list[str] = ["dice", "hd95", "nsd", "lesion_f1"]
    sweep: SweepConfig | None = None

    @model_validator(mode="after")
    def _cells(self) -> CompareConfig:
        if not self.cells and self.grid is None:
            raise ValueError("expected cells or grid")
        names = [c.name for c in self.all_cells()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"cell names must be unique but {duplicates} repeat")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(
                f"baseline {self.baseline!r} is not a cell{did_you_mean(self.baseline, names)}"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique but got {self.seeds}")
        return self

    def all_cells(self) -> list[CellConfig]:
        """``cells`` followed by the product of ``grid``."""
        cells = list(self.cells)
        if self.grid is not None:
            for loss in self.grid.losses:
                for opt in self.grid.optimizers:
                    name = f"{loss}-{opt}".replace("*", "x")
                    cells.append(CellConfig(name=name, loss=loss, optimizer=opt))
        return cells

    @property
    def baseline_cell(self) -> str:
        return self.baseline or self.all_cells()[0].name


def load_compare_config(path: str | Path, overrides: dict[str, Any] | None = None) -> CompareConfig:
    """Read and validate a comparison config (``InputError`` with the key path)."""
    return validate_config(read_yaml(path), CompareConfig, str(path), overrides)
