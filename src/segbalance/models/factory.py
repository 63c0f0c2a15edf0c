"""``build_model``: MONAI networks and SegVol by name, with defaults for small patches."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from segbalance.errors import did_you_mean
from segbalance.models.dynunet_plan import dynunet_kernels_strides

Size = tuple[int, ...]
Spacing = tuple[float, ...]

MODEL_NAMES: tuple[str, ...] = ("unet", "dynunet", "segresnet", "swinunetr", "unetr", "segvol")

UNET_DEFAULTS: dict[str, Any] = {
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 2,
}
# MONAI's SwinUNETR halves the input five times (patch embedding + four stages).
SWINUNETR_DIVISOR = 32
# MONAI's UNETR uses a ViT with 16-voxel patches on every axis.
UNETR_DIVISOR = 16


def _monai_class(name: str) -> type[nn.Module]:
    from monai.networks import nets

    return {
        "unet": nets.UNet,
        "dynunet": nets.DynUNet,
        "segresnet": nets.SegResNet,
        "swinunetr": nets.SwinUNETR,
        "unetr": nets.UNETR,
    }[name]


def _segvol_class() -> type[nn.Module]:
    from segbalance.models.segvol.model import SegVol

    return SegVol


def model_class(name: str) -> type[nn.Module]:
    """The network class behind a model name (case-insensitive)."""
    key = _canonical(name)
    return _segvol_class() if key == "segvol" else _monai_class(key)


def valid_kwargs(name: str) -> list[str]:
    """Keyword arguments that ``build_model(name, ...)`` accepts besides its own ones."""
    key = _canonical(name)
    params = set(inspect.signature(model_class(key)).parameters)
    params -= {"self", "in_channels", "out_channels"}
    if key == "segvol":
        # build_model's patch_size is the input window (SegVol's img_size), so the ViT
        # patch goes by another name here.
        params = (params - {"patch_size"}) | {"vit_patch_size"}
    return sorted(params)


def build_model(
    name: str,
    *,
    in_channels: int,
    out_channels: int,
    patch_size: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a segmentation network that maps ``(B, in_channels, *patch)`` to logits
    ``(B, out_channels, *patch)``.

    Args:
        name: one of :data:`MODEL_NAMES`; MONAI's spelling (``UNet``, ``DynUNet``, ...) is
            accepted in any case.
        in_channels: image channels (modalities).
        out_channels: logit channels: 1 for binary (sigmoid), C >= 2 for softmax.
        patch_size: spatial input size. Sets ``spatial_dims`` (2D or 3D); required by
            ``dynunet`` (with ``spacing``), ``unetr`` (its ``img_size``) and ``segvol``
            (its ``img_size``); checked for divisibility by the total stride elsewhere.
        spacing: voxel spacing (mm) per axis; ``dynunet`` derives kernels and strides
            from it and ``patch_size`` (:func:`dynunet_kernels_strides`).
        **kwargs: options of the network class (MONAI's names); an unknown one is a
            ``ValueError`` listing the valid ones.

    Defaults: ``unet`` ``channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2``;
    ``dynunet`` nnU-Net-style kernels/strides, ``deep_supervision=False``; ``segresnet``,
    ``swinunetr``, ``unetr`` MONAI's defaults; ``segvol`` see :class:`SegVol`
    (``out_channels`` must be 1; ``patch_size`` is its ``img_size`` and the ViT patch is
    the option ``vit_patch_size``).
    """
    key = _canonical(name)
    valid = valid_kwargs(key)
    for option in kwargs:
        if option not in valid:
            raise ValueError(
                f"Unknown option {option!r} for model {key!r}{did_you_mean(option, valid)}; "
                f"valid options: {valid}"
            )
    if patch_size is not None:
        patch_size = _check_sizes(patch_size, "patch_size", int)
    if spacing is not None:
        spacing = _check_sizes(spacing, "spacing", float)
    builder = _BUILDERS[key]
    return builder(in_channels, out_channels, patch_size, spacing, dict(kwargs))


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Parameter counts: ``{"class", "total", "trainable", "frozen", "tensors"}``."""
    total = trainable = tensors = 0
    for param in model.parameters():
        total += param.numel()
        tensors += 1
        if param.requires_grad:
            trainable += param.numel()
    return {
        "class": type(model).__name__,
        "total": total,
        "trainable": trainable,
        "frozen": total - trainable,
        "tensors": tensors,
    }


def _canonical(name: str) -> str:
    key = str(name).lower()
    if key not in MODEL_NAMES:
        raise ValueError(
            f"Unknown model name {name!r}{did_you_mean(key, MODEL_NAMES)}; "
            f"expected one of {list(MODEL_NAMES)}"
        )
    return key


def _check_sizes(values: Sequence[Any], what: str, kind: type) -> tuple[Any, ...]:
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected {what} to be a sequence of numbers but got {values!r}"
        ) from None
    if len(out) not in (2, 3) or min(out) <= 0:
        raise ValueError(f"Expected {what} with 2 or 3 positive values but got {list(values)}")
    return out


def _spatial_dims(patch_size: Sequence[int] | None, kwargs: dict[str, Any]) -> int:
    dims = len(patch_size) if patch_size is not None else 3
    given = kwargs.pop("spatial_dims", dims)
    if given != dims:
        raise ValueError(f"Expected spatial_dims {dims} (from patch_size) but got {given!r}")
    return dims


def _check_divisible(patch_size: Sequence[int] | None, divisor: int, why: str) -> None:
    if patch_size is not None and any(s % divisor for s in patch_size):
        raise ValueError(
            f"Expected every patch_size axis to be divisible by {divisor} ({why}) "
            f"but got {list(patch_size)}"
        )


def _build_unet(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    dims = _spatial_dims(patch_size, kwargs)
    options = UNET_DEFAULTS | kwargs
    if patch_size is not None:
        # Per-axis product of the strides: every level must halve an even size.
        per_axis = [
            math.prod(s if isinstance(s, int) else s[axis] for s in options["strides"])
            for axis in range(dims)
        ]
        if any(size % total for size, total in zip(patch_size, per_axis, strict=True)):
            raise ValueError(
                f"Expected patch_size divisible by the product of the UNet strides "
                f"{per_axis} but got {list(patch_size)}"
            )
    return _monai_class("unet")(
        spatial_dims=dims, in_channels=in_ch, out_channels=out_ch, **options
    )


def _build_dynunet(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    dims = _spatial_dims(patch_size, kwargs)
    if "kernel_size" not in kwargs or "strides" not in kwargs:
        if patch_size is None or spacing is None:
            raise ValueError(
                "Expected patch_size and spacing for dynunet (kernel sizes and strides are "
                "derived from them) or explicit kernel_size and strides, but got "
                f"patch_size={patch_size!r}, spacing={spacing!r}"
            )
        kernels, strides = dynunet_kernels_strides(patch_size, spacing)
        kwargs.setdefault("kernel_size", kernels)
        kwargs.setdefault("strides", strides)
    if len(kwargs["strides"]) < 3:
        raise ValueError(
            f"Expected at least 3 DynUNet levels (2 downsamplings; MONAI's minimum) but the "
            f"plan has strides {list(kwargs['strides'])}; use a larger patch_size"
        )
    kwargs.setdefault("upsample_kernel_size", list(kwargs["strides"])[1:])
    kwargs.setdefault("deep_supervision", False)
    return _monai_class("dynunet")(
        spatial_dims=dims, in_channels=in_ch, out_channels=out_ch, **kwargs
    )


def _build_segresnet(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    dims = _spatial_dims(patch_size, kwargs)
    blocks_down = kwargs.get("blocks_down", (1, 2, 2, 4))
    _check_divisible(patch_size, 2 ** (len(blocks_down) - 1), "SegResNet halves each level")
    return _monai_class("segresnet")(
        spatial_dims=dims, in_channels=in_ch, out_channels=out_ch, **kwargs
    )


def _build_swinunetr(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    dims = _spatial_dims(patch_size, kwargs)
    _check_divisible(patch_size, SWINUNETR_DIVISOR, "SwinUNETR downsamples 5 times")
    if patch_size is not None and math.prod(s // SWINUNETR_DIVISOR for s in patch_size) < 2:
        # Its bottleneck is patch_size / 32; instance norm needs more than one voxel there.
        raise ValueError(
            f"Expected a patch_size with at least one axis >= 64 for swinunetr (its "
            f"bottleneck is patch_size / 32) but got {list(patch_size)}"
        )
    return _monai_class("swinunetr")(
        spatial_dims=dims, in_channels=in_ch, out_channels=out_ch, **kwargs
    )


def _build_unetr(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    dims = _spatial_dims(patch_size, kwargs)
    img_size = _image_size("unetr", patch_size, kwargs)
    _check_divisible(img_size, UNETR_DIVISOR, "UNETR's ViT uses 16-voxel patches")
    return _monai_class("unetr")(
        spatial_dims=dims, in_channels=in_ch, out_channels=out_ch, img_size=img_size, **kwargs
    )


def _build_segvol(
    in_ch: int,
    out_ch: int,
    patch_size: Size | None,
    spacing: Spacing | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    if out_ch != 1:
        raise ValueError(
            f"Expected out_channels=1 for segvol (one binary logit map per prompt) but got {out_ch}"
        )
    img_size = _image_size("segvol", patch_size, kwargs)
    if "vit_patch_size" in kwargs:
        kwargs["patch_size"] = tuple(kwargs.pop("vit_patch_size"))
    return _segvol_class()(in_channels=in_ch, img_size=img_size, **kwargs)


def _image_size(name: str, patch_size: Sequence[int] | None, kwargs: dict[str, Any]) -> tuple:
    """``img_size`` is the patch size; given both, they must agree."""
    img_size = kwargs.pop("img_size", None)
    if img_size is None and patch_size is None:
        raise ValueError(f"Expected patch_size for {name} (it becomes img_size) but got None")
    if img_size is not None and patch_size is not None and tuple(img_size) != tuple(patch_size):
        raise ValueError(
            f"Expected img_size to equal patch_size for {name} but got img_size="
            f"{list(img_size)} and patch_size={list(patch_size)}"
        )
    return tuple(int(s) for s in (patch_size if patch_size is not None else img_size))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": _build_unet,
    "dynunet": _build_dynunet,
    "segresnet": _build_segresnet,
    "swinunetr": _build_swinunetr,
    "unetr": _build_unetr,
    "segvol": _build_segvol,
}


def use_channels_last(model: nn.Module) -> nn.Module:
    """Store the 5D (Conv3d) weights channels-last and feed the network channels-last input.

    oneDNN's 3D convolutions then skip a layout conversion per layer: about 12 % faster
    training steps on a CPU for the hippocampus UNet (docs/benchmarks.md). The output is
    made contiguous again, so losses and metrics see ordinary tensors. Parameter names and
    values are unchanged (checkpoints are interchangeable). Returns ``model`` (in place).
    """
    import torch

    model.to(memory_format=torch.channels_last_3d)
    model.register_forward_pre_hook(_channels_last_input)
    model.register_forward_hook(_contiguous_output)
    return model


def _channels_last_input(_: nn.Module, args: tuple) -> tuple | None:
    import torch

    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 5:
        return (args[0].contiguous(memory_format=torch.channels_last_3d), *args[1:])
    return None


def _contiguous_output(_: nn.Module, __: tuple, output: Any) -> Any:
    import torch

    return output.contiguous() if isinstance(output, torch.Tensor) else None
