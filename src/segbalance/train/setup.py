"""Build the pieces of a run from a validated config: data, model, loss, optimiser.

Each builder is a small function so that users' own loops (and the benchmarks) can reuse
them; :func:`segbalance.train.train` calls them in order.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbalance.config import DataConfig, PhantomConfig, TrainConfig
from segbalance.errors import InputError

PRIOR_CLAMP = (1e-12, 1.0 - 1e-12)


@dataclass
class RunData:
    """The dataset of a run: where it is, its split, its cache and its statistics."""

    path: Path
    name: str
    classes: dict[int, str]  # foreground classes: value -> name
    n_channels: int
    split: dict[str, list[str]]
    stats: dict[str, Any]  # imbalance_stats of the training cases
    patch_size: tuple[int, int, int]
    oversample_foreground: float
    spacing: tuple[float, float, float]

    @property
    def out_channels(self) -> int:
        """1 (sigmoid) for one foreground class, else one channel per class with background."""
        return 1 if len(self.classes) == 1 else len(self.classes) + 1


def resolve_dataset(dataset: str, phantom: PhantomConfig, key: str = "data.dataset") -> Path:
    """The dataset folder: ``phantom`` (generated once into the cache) or a path.

    ``key`` names the config key in the error message.
    """
    if dataset == "phantom":
        from segbalance.data.phantom import phantom_dataset

        return phantom_dataset(**phantom.model_dump())
    path = Path(dataset).expanduser()
    if not (path / "dataset.json").is_file():
        raise InputError(key, f"{dataset!r} has no dataset.json", "a dataset folder or 'phantom'")
    return path.resolve()


def choose_split(names: list[str], cfg: DataConfig) -> dict[str, list[str]]:
    """``data.split``: explicit ``val`` (and ``train``) lists, or fold ``fold`` of k folds."""
    from segbalance.data import explicit_split, kfold_splits

    split = cfg.split
    if split.val is not None:
        return explicit_split(names, split.val, split.train)[0]
    if len(names) < split.folds:
        raise InputError(
            "data.split.folds",
            f"{split.folds} folds but the dataset has {len(names)} cases",
            f"at most {len(names)} folds",
        )
    return kfold_splits(names, n_folds=split.folds, seed=split.seed)[split.fold]


def prepare_data(cfg: DataConfig, run_dir: Path | None = None, progress: Any = None) -> tuple:
    """Resolve, split, analyse (training cases) and preprocess the dataset.

    Returns:
        ``(RunData, PreprocessedDataset)``. The statistics are cached in
        ``run_dir/imbalance.json`` so that a resumed run reuses them.
    """
    from segbalance.data import imbalance_stats, open_dataset
    from segbalance.data.cache import preprocess_dataset

    path = resolve_dataset(cfg.dataset, cfg.phantom)
    layout = open_dataset(path)
    split = choose_split([c.name for c in layout.cases], cfg)
    stats_file = run_dir / "imbalance.json" if run_dir is not None else None
    if stats_file is not None and stats_file.is_file():
        stats = json.loads(stats_file.read_text())
    else:
        stats = imbalance_stats(layout, cases=split["train"], read_images=False)
    pre = cfg.preprocess
    data = preprocess_dataset(
        layout, preprocess_settings(cfg), cases=split["train"] + split["val"], progress=progress
    )
    patch = cfg.patch_size or tuple(stats["suggested"]["patch_size"])
    share = cfg.oversample_foreground
    if share is None:
        share = float(stats["suggested"]["oversample_foreground"])
    spacings = torch.tensor([data[n].spacing for n in split["train"]], dtype=torch.float64)
    spacing = pre.target_spacing or tuple(float(s) for s in spacings.median(dim=0).values)
    info = RunData(
        path=path,
        name=layout.name,
        classes=dict(layout.foreground_classes),
        n_channels=layout.n_channels,
        split=split,
        stats=stats,
        patch_size=tuple(int(p) for p in patch),  # type: ignore[arg-type]
        oversample_foreground=float(share),
        spacing=spacing,  # type: ignore[arg-type]
    )
    return info, data


def preprocess_settings(cfg: DataConfig) -> Any:
    """The cache's :class:`PreprocessSettings` from ``data.preprocess``."""
    from segbalance.data import PreprocessSettings

    pre = cfg.preprocess
    norm = pre.normalization if isinstance(pre.normalization, str) else tuple(pre.normalization)
    return PreprocessSettings(
        target_spacing=pre.target_spacing, normalization=norm, reorient=pre.reorient
    )


def augment_settings(cfg: DataConfig) -> Any:
    """The loader's :class:`AugmentSettings` from ``data.augment``."""
    import math

    from segbalance.data import AugmentSettings

    a = cfg.augment
    if not a.enabled:
        return AugmentSettings.off()
    planes = None if a.rot90_planes is None else tuple(tuple(p) for p in a.rot90_planes)
    return AugmentSettings(
        flip_axes=tuple(a.flip_axes),
        flip_prob=a.flip_prob,
        rot90_planes=planes,
        rot90_prob=a.rot90_prob,
        affine_prob=a.affine_prob,
        rotate_range=math.radians(a.rotate_degrees),
        scale_range=a.scale_range,
        scale_intensity_prob=a.scale_intensity_prob,
        shift_intensity_prob=a.shift_intensity_prob,
        gamma_prob=a.gamma_prob,
        noise_prob=a.noise_prob,
    )


def build_loader(
    cfg: TrainConfig,
    info: RunData,
    data: Any,
    *,
    with_weights: bool = False,
    seed: int | None = None,
    batches_per_epoch: int | None = None,
) -> Any:
    """The :class:`PatchLoader` of the training cases as ``data.*`` configures it."""
    from segbalance.data import PatchLoader

    return PatchLoader(
        data,
        patch_size=info.patch_size,
        batch_size=cfg.data.batch_size,
        cases=info.split["train"],
        oversample_foreground=info.oversample_foreground,
        foreground_sampling=cfg.data.foreground_sampling,
        augment=augment_settings(cfg.data),
        with_weights=with_weights,
        seed=cfg.seed if seed is None else seed,
        batches_per_epoch=batches_per_epoch or cfg.data.batches_per_epoch,
        num_workers=cfg.data.workers,
    )


def loss_statistics(loss_name: str, options: dict[str, Any], info: RunData) -> dict[str, Any]:
    """Options the dataset supplies: ``prior`` for LA terms, ``fractions`` for CALF.

    A user-given value wins. The estimated prior is clamped to [1e-12, 1 - 1e-12] with a
    warning (DESIGN "Contract details").
    """
    from segbalance.losses.compound import _term_base, parse_loss_expression
    from segbalance.losses.spec import LOSS_SPECS

    bases = {_term_base(n)[0] for _, n in parse_loss_expression(loss_name)}
    extra: dict[str, Any] = {}
    prior = info.stats["prior"]
    classes = sorted(info.classes)
    if any("prior" in LOSS_SPECS[b].options for b in bases) and "prior" not in options:
        values = (
            [prior[str(c)] for c in classes]
            if len(classes) == 1
            else [prior[str(c)] for c in [0, *classes]]
        )
        clamped = [min(max(v, PRIOR_CLAMP[0]), PRIOR_CLAMP[1]) for v in values]
        if clamped != values:
            warnings.warn(
                f"estimated class prior {values} clamped to {clamped}", RuntimeWarning, stacklevel=2
            )
        extra["prior"] = clamped[0] if len(classes) == 1 else clamped
    calf = "calf" in bases and options.get("calf_mode", "dataset") == "dataset"
    if calf and "fractions" not in options and "branch" not in options:
        per_class = {
            str(c): [case["classes"][str(c)]["fraction"] for case in info.stats["cases"]]
            for c in classes
        }
        extra["fractions"] = per_class[str(classes[0])] if len(classes) == 1 else per_class
    return extra


def build_training_loss(cfg: TrainConfig, info: RunData) -> nn.Module:
    """``build_loss`` with the config's options plus the dataset statistics it needs."""
    from segbalance.losses import build_loss

    options = dict(cfg.loss.options)
    options.update(loss_statistics(cfg.loss.name, options, info))
    try:
        return build_loss(cfg.loss.name, term_options=cfg.loss.term_options or None, **options)
    except ValueError as exc:
        raise InputError("loss", str(exc)) from None


def build_network(cfg: TrainConfig, info: RunData) -> tuple[nn.Module, dict[str, Any] | None]:
    """The network, with pretrained weights and frozen parts; returns ``(model, report)``."""
    from segbalance.models.factory import build_model
    from segbalance.models.pretrained import freeze, load_pretrained

    kwargs = dict(cfg.model.kwargs)
    try:
        model = build_model(
            cfg.model.name,
            in_channels=info.n_channels,
            out_channels=info.out_channels,
            patch_size=info.patch_size,
            spacing=info.spacing,
            **kwargs,
        )
    except ValueError as exc:
        raise InputError("model", str(exc)) from None
    report = None
    if cfg.model.pretrained:
        loaded = load_pretrained(model, cfg.model.pretrained, strict=cfg.model.strict)
        report = {**loaded.as_dict(), "summary": loaded.summary()}
    if cfg.model.freeze:
        try:
            freeze(model, cfg.model.freeze)
        except ValueError as exc:
            raise InputError("model.freeze", str(exc)) from None
    if cfg.model.channels_last:
        from segbalance.models.factory import use_channels_last

        use_channels_last(model)
    return model, report


def build_training_optimizer(
    cfg: TrainConfig, model: nn.Module, total_steps: int | None
) -> torch.optim.Optimizer:
    """Base optimiser (per-part LRs as parameter groups) wrapped in the SAM variant."""
    from segbalance.models.pretrained import parameter_groups
    from segbalance.optim import build_optimizer

    opt = cfg.optimizer
    sam = opt.sam
    kw: dict[str, Any] = {}
    if opt.momentum is not None:
        kw["momentum"] = opt.momentum
    if opt.nesterov is not None:
        kw["nesterov"] = opt.nesterov
    if opt.betas is not None:
        kw["betas"] = tuple(opt.betas)
    variant = sam.resolved_variant
    if variant != "none":
        if sam.k is not None:
            kw["k"] = sam.k
        if sam.alpha is not None:
            kw["alpha"] = sam.alpha
        if sam.exclude_norm_bias:
            kw["exclude_norm_bias"] = True
        if sam.looksam_global:
            kw["looksam_global"] = True
        if sam.start_frac > 0:
            if total_steps is None:
                raise InputError(
                    "optimizer.sam.start_frac",
                    "needs a steps or epochs budget to know when to start",
                    "budget.steps or budget.epochs",
                )
            kw.update(sam_start_frac=sam.start_frac, total_steps=total_steps)
    params: Any = model
    if cfg.model.part_lrs:
        try:
            params = parameter_groups(model, opt.lr, cfg.model.part_lrs)
        except ValueError as exc:
            raise InputError("model.part_lrs", str(exc)) from None
    try:
        return build_optimizer(
            params,
            name=opt.name,
            lr=opt.lr,
            weight_decay=opt.weight_decay,
            sam_variant=variant,
            rho=sam.rho,
            **kw,
        )
    except ValueError as exc:
        raise InputError("optimizer", str(exc)) from None
