"""build_model: names, defaults, DynUNet planning (hand-worked), errors, output shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.networks.nets import UNETR, DynUNet, SegResNet, SwinUNETR, UNet
from torch import nn

from segbalance.models import MODEL_NAMES, build_model, dynunet_kernels_strides, model_summary
from segbalance.models.segvol.model import SegVol


def test_model_names() -> None:
    assert MODEL_NAMES == ("unet", "dynunet", "segresnet", "swinunetr", "unetr", "segvol")


def test_dynunet_plan_isotropic_worked_example() -> None:
    # (40, 56, 40) at 1 mm: halve all axes while >= 8: 40->20->10->5, 56->28->14->7.
    kernels, strides = dynunet_kernels_strides((40, 56, 40), (1.0, 1.0, 1.0))
    assert strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert kernels == [[3, 3, 3]] * 4


def test_dynunet_plan_anisotropic_worked_example() -> None:
    # (16, 64, 64) at (2.5, 1, 1) mm, by hand:
    # level 1: ratios (2.5, 1, 1): axis 0 coarse -> stride (1, 2, 2), kernel (1, 3, 3);
    #          sizes (16, 32, 32), spacing (2.5, 2, 2)
    # level 2: ratios (1.25, 1, 1) -> stride (2, 2, 2); sizes (8, 16, 16), spacing (5, 4, 4)
    # level 3: same ratios -> stride (2, 2, 2); sizes (4, 8, 8), spacing (10, 8, 8)
    # level 4: ratios (1.25, 1, 1), axis 0 has 4 < 8 voxels -> stride (1, 2, 2);
    #          sizes (4, 4, 4), spacing (10, 16, 16)
    # level 5: every size < 8 -> stop; the bottleneck kernel is (3, 3, 3).
    kernels, strides = dynunet_kernels_strides((16, 64, 64), (2.5, 1.0, 1.0))
    assert strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert kernels == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]


def test_dynunet_plan_errors() -> None:
    with pytest.raises(ValueError, match="odd size 9"):
        dynunet_kernels_strides((36, 36, 36), (1, 1, 1))  # 36 -> 18 -> 9 (still >= 8)
    with pytest.raises(ValueError, match="one per patch_size axis"):
        dynunet_kernels_strides((32, 32, 32), (1, 1))


@settings(max_examples=40, deadline=None)
@given(
    exponents=st.lists(st.integers(2, 6), min_size=3, max_size=3),
    spacing=st.lists(st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5, 3.0, 5.0]), min_size=3, max_size=3),
)
def test_dynunet_plan_properties(exponents: list[int], spacing: list[float]) -> None:
    patch = [2**e for e in exponents]
    kernels, strides = dynunet_kernels_strides(patch, spacing)
    assert len(kernels) == len(strides) and strides[0] == [1, 1, 1]
    sizes, spacings = list(patch), list(spacing)
    for level in strides[1:]:
        assert any(s == 2 for s in level)
        sizes = [size // s for size, s in zip(sizes, level, strict=True)]
        spacings = [sp * s for sp, s in zip(spacings, level, strict=True)]
    # Stop rule: no axis left that is both fine (ratio <= 2) and still >= 8 voxels.
    finest = min(spacings)
    assert all(size < 8 or sp / finest > 2 for size, sp in zip(sizes, spacings, strict=True))


def test_unet_defaults_and_shape() -> None:
    model = build_model("UNet", in_channels=2, out_channels=3, patch_size=(16, 16, 16))
    assert isinstance(model, UNet)
    assert tuple(model.channels) == (16, 32, 64, 128) and tuple(model.strides) == (2, 2, 2)
    assert model.num_res_units == 2 and model.dimensions == 3
    assert model(torch.randn(2, 2, 16, 16, 16)).shape == (2, 3, 16, 16, 16)


def test_unet_2d_from_patch_size_and_divisibility() -> None:
    model = build_model("unet", in_channels=1, out_channels=1, patch_size=(32, 24))
    assert model(torch.randn(1, 1, 32, 24)).shape == (1, 1, 32, 24)
    with pytest.raises(
        ValueError, match=r"divisible by the product of the UNet strides \[8, 8, 8\]"
    ):
        build_model("unet", in_channels=1, out_channels=1, patch_size=(20, 16, 16))


def test_dynunet_derives_plan_and_has_no_deep_supervision() -> None:
    model = build_model(
        "DynUNet",
        in_channels=1,
        out_channels=2,
        patch_size=(16, 32, 32),
        spacing=(3.0, 1.0, 1.0),
        filters=(4, 8, 16, 32, 32),
    )
    assert isinstance(model, DynUNet) and model.deep_supervision is False
    # By hand: (16, 32, 32) at (3, 1, 1): (1,2,2) -> (16,16,16) at (3,2,2); then (2,2,2) twice
    # -> (4, 4, 4) at (12, 8, 8); then every axis < 8 -> stop.
    assert [list(s) for s in model.strides] == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert [list(k) for k in model.kernel_size] == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    model.train()
    out = model(torch.randn(1, 1, 16, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 16, 32, 32)


def test_dynunet_needs_patch_and_spacing_or_explicit_plan() -> None:
    with pytest.raises(ValueError, match="patch_size and spacing"):
        build_model("dynunet", in_channels=1, out_channels=1, patch_size=(16, 16, 16))
    model = build_model(
        "dynunet",
        in_channels=1,
        out_channels=1,
        kernel_size=[3, 3, 3],
        strides=[1, 2, 2],
        filters=(4, 8, 8),
    )
    assert model(torch.randn(1, 1, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="at least 3 DynUNet levels"):
        # (8, 8, 8): one halving to 4 voxels, then stop -> only 2 levels.
        build_model("dynunet", in_channels=1, out_channels=1, patch_size=(8,) * 3, spacing=(1,) * 3)


def test_segresnet_and_unetr_shapes() -> None:
    seg = build_model("segresnet", in_channels=1, out_channels=2, patch_size=(16, 16, 16))
    assert isinstance(seg, SegResNet)
    assert seg(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)
    small = dict(hidden_size=24, mlp_dim=48, num_heads=2, feature_size=4)
    unetr = build_model("unetr", in_channels=1, out_channels=2, patch_size=(16, 16, 32), **small)
    assert isinstance(unetr, UNETR)
    assert unetr(torch.randn(1, 1, 16, 16, 32)).shape == (1, 2, 16, 16, 32)
    with pytest.raises(ValueError, match="patch_size for unetr"):
        build_model("unetr", in_channels=1, out_channels=2, **small)
    with pytest.raises(ValueError, match="divisible by 16"):
        build_model("unetr", in_channels=1, out_channels=2, patch_size=(24, 16, 16), **small)
    with pytest.raises(ValueError, match="img_size to equal patch_size"):
        build_model(
            "unetr", in_channels=1, out_channels=2, patch_size=(16,) * 3, img_size=(32,) * 3
        )


def test_swinunetr_checks_and_shape() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("swinunetr", in_channels=1, out_channels=2, patch_size=(48, 32, 32))
    with pytest.raises(ValueError, match="at least one axis >= 64"):
        build_model("swinunetr", in_channels=1, out_channels=2, patch_size=(32, 32, 32))
    model = build_model(
        "swinunetr",
        in_channels=1,
        out_channels=2,
        patch_size=(32, 32, 64),
        feature_size=12,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
    )
    assert isinstance(model, SwinUNETR)
    assert model(torch.randn(1, 1, 32, 32, 64)).shape == (1, 2, 32, 32, 64)


def test_segvol_via_factory() -> None:
    kw = dict(vit_patch_size=(4, 8, 8), hidden_size=32, mlp_dim=64, num_layers=1, num_heads=2)
    kw |= dict(decoder_mlp_dim=32, decoder_heads=2)
    model = build_model("segvol", in_channels=1, out_channels=1, patch_size=(8, 16, 16), **kw)
    assert isinstance(model, SegVol) and model.img_size == (8, 16, 16)
    assert model.patch_size == (4, 8, 8) and model.grid == (2, 2, 2)
    with pytest.raises(ValueError, match=r"'patch_sizes'.*valid options:.*'vit_patch_size'"):
        build_model("segvol", in_channels=1, out_channels=1, patch_size=(8, 16, 16), patch_sizes=1)
    with pytest.raises(ValueError, match="out_channels=1 for segvol"):
        build_model("segvol", in_channels=1, out_channels=2, patch_size=(8, 16, 16), **kw)


def test_unknown_name_and_option() -> None:
    with pytest.raises(ValueError, match=r"Unknown model name 'unett'.*did you mean 'unet'"):
        build_model("unett", in_channels=1, out_channels=1)
    with pytest.raises(
        ValueError, match=r"'chanels'.*did you mean 'channels'.*valid options:.*'strides'"
    ):
        build_model("unet", in_channels=1, out_channels=1, chanels=(4, 8))
    with pytest.raises(ValueError, match=r"spatial_dims 2 \(from patch_size\)"):
        build_model("unet", in_channels=1, out_channels=1, patch_size=(16, 16), spatial_dims=3)


def test_model_summary_counts_by_hand() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    # 3*4 + 4 = 16 frozen, 4*2 + 2 = 10 trainable.
    assert model_summary(model) == {
        "class": "Sequential",
        "total": 26,
        "trainable": 10,
        "frozen": 16,
        "tensors": 4,
    }


def test_package_import_is_light() -> None:
    code = (
        "import sys, segbalance.models as m; assert 'build_model' in dir(m); "
        "print('torch' in sys.modules, 'monai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_channels_last_changes_layout_not_results() -> None:
    from segbalance.models.factory import use_channels_last

    torch.manual_seed(0)
    plain = build_model("unet", in_channels=1, out_channels=3, patch_size=(16, 16, 16))
    fast = build_model("unet", in_channels=1, out_channels=3, patch_size=(16, 16, 16))
    fast.load_state_dict(plain.state_dict())
    use_channels_last(fast)
    conv = next(p for p in fast.parameters() if p.dim() == 5)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 1, 16, 16, 16)
    out_plain, out_fast = plain(x), fast(x)
    assert out_fast.is_contiguous()
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-4, atol=1e-5)
    out_plain.square().mean().backward()
    out_fast.square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6, msg=name)
