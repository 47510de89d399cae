"""Backbones, the TCLR wrapper and the faithful (per-clip-group) BatchNorm semantics."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

from tclr_zoo import create_model, list_models
from tclr_zoo.models import GroupedBatchNorm1d, GroupedBatchNorm3d, apply_tclr_layer4, clip_groups
from tclr_zoo.models.registry import ModelNotFoundError, create_backbone


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, (GroupedBatchNorm1d, GroupedBatchNorm3d))]


def test_registry_lists_the_three_families_and_small_variants():
    names = list_models()
    for name in ("r3d_18", "r2plus1d_18", "c3d", "r3d_10_025", "r2plus1d_10_025", "c3d_025"):
        assert name in names
    assert list_models("r3d_*") == [n for n in names if n.startswith("r3d_")]
    with pytest.raises(ModelNotFoundError, match="r3d_18"):
        create_backbone("r3d_19")


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18", "c3d"])
def test_full_size_backbones_keep_four_time_steps(arch):
    net = create_backbone(arch).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 16, 112, 112))
    assert tuple(out.shape) == (1, 512, 4, 7, 7)


def test_r3d_18_is_torchvision_r3d_18_with_the_tclr_layer4():
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18()
    apply_tclr_layer4(reference)
    ours = create_backbone("r3d_18")
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state, strict=True)
    conv = ours.layer4[0].conv1[0]
    assert conv.stride == (1, 2, 2) and conv.dilation == (2, 1, 1) and conv.padding == (2, 1, 1)
    assert ours.layer4[0].downsample[0].stride == (1, 2, 2)
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(reference.stem(x)))))
        torch.testing.assert_close(ours(x), expected)


def test_r2plus1d_layer4_first_conv_is_a_full_dilated_conv3d():
    net = create_backbone("r2plus1d_18")
    conv = net.layer4[0].conv1[0]
    assert isinstance(conv, torch.nn.Conv3d) and conv.kernel_size == (3, 3, 3) and conv.dilation == (2, 1, 1)


def _clips(videos: int, k: int = 4, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    global_clips = torch.rand(2, videos, 3, 16, size, size, generator=g)
    local_clips = torch.rand(2, k, videos, 3, 16, size, size, generator=g)
    return global_clips, local_clips


def _reference_style_pretrain(model, global_clips, local_clips):
    """The reference's step: one backbone call per clip group, one head call per head input."""
    head, k = model.projection, local_clips.shape[1]
    global_z, steps_z, local_z = [], [], []
    for aug in range(2):
        feats = model.temporal_features(global_clips[aug])  # [B, C, K]
        global_z.append(head(feats.mean(-1)))
        steps_z.append(torch.stack([head(feats[:, :, i]) for i in range(k)], dim=1))
    for aug in range(2):
        local_z.append(torch.stack([head(model.temporal_features(local_clips[aug, i]).mean(-1)) for i in range(k)], 1))
    return {"global_z": torch.stack(global_z), "global_steps_z": torch.stack(steps_z), "local_z": torch.stack(local_z)}


@pytest.mark.parametrize("arch", ["r3d_10_025", "c3d_025", "r2plus1d_10_025"])
def test_faithful_bn_equals_separate_forward_passes(arch):
    torch.manual_seed(0)
    fused = create_model(arch).train()
    separate = copy.deepcopy(fused)
    global_clips, local_clips = _clips(videos=3)
    out_fused = fused.forward_pretrain(global_clips, local_clips)
    out_separate = _reference_style_pretrain(separate, global_clips, local_clips)
    for key in out_separate:
        torch.testing.assert_close(out_fused[key], out_separate[key], atol=1e-5, rtol=1e-4)
    # running statistics: closed-form fold == ten (eighteen) sequential updates
    for a, b in zip(_bn_layers(fused), _bn_layers(separate)):
        torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.running_var, b.running_var, atol=1e-5, rtol=1e-4)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked)
    # gradients
    weights = {k: torch.randn_like(v) for k, v in out_separate.items()}
    sum((out_fused[k] * weights[k]).sum() for k in weights).backward()
    sum((out_separate[k] * weights[k]).sum() for k in weights).backward()
    scale = fused.projection.fc1.weight.grad.norm().item()
    for (name, p), q in zip(fused.named_parameters(), separate.parameters()):
        if name == "projection.fc1.bias":  # feeds a BatchNorm: its true gradient is 0, only rounding noise remains
            assert p.grad.norm() < 1e-2 * scale and q.grad.norm() < 1e-2 * scale
            continue
        error = (p.grad - q.grad).norm().item()
        assert error <= 1e-3 * q.grad.norm().item() + 1e-6, f"{name}: gradient differs by {error}"


def test_strided_path_matches_native_path():
    """channels_last_3d input (the CUDA layout) takes the layout-preserving path; same numbers."""
    torch.manual_seed(1)
    net = create_model("r3d_10_025").backbone.train()
    twin = copy.deepcopy(net)
    x = torch.randn(3 * 10, 3, 16, 32, 32)
    with clip_groups(net, 10), clip_groups(twin, 10):
        a = net(x)
        b = twin(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(a, b.contiguous(), atol=1e-4, rtol=1e-4)
    for p, q in zip(_bn_layers(net), _bn_layers(twin)):
        torch.testing.assert_close(p.running_var, q.running_var, atol=1e-5, rtol=1e-4)


def test_shared_bn_mode_is_a_different_computation():
    torch.manual_seed(0)
    faithful = create_model("r3d_10_025").train()
    shared = copy.deepcopy(faithful)
    shared.bn_mode = "shared"
    clips = _clips(videos=2)
    a = faithful.forward_pretrain(*clips)["local_z"]
    b = shared.forward_pretrain(*clips)["local_z"]
    assert not torch.allclose(a, b, atol=1e-3)


def test_eval_mode_ignores_groups_and_uses_running_stats():
    torch.manual_seed(0)
    net = create_model("r3d_10_025").eval()
    x = torch.randn(4, 3, 16, 32, 32)
    with torch.no_grad():
        plain = net(x)
        with clip_groups(net, 2):
            grouped = net(x)
    torch.testing.assert_close(plain, grouped)


def test_pretrain_input_errors_are_clear():
    net = create_model("r3d_10_025").train()
    g, l = _clips(videos=1)
    with pytest.raises(ValueError, match="at least 2 videos"):
        net.forward_pretrain(g, l)
    g, l = _clips(videos=2)
    with pytest.raises(ValueError, match=r"\[2, K, B, 3, T, H, W\]"):
        net.forward_pretrain(g, l[0])
    with pytest.raises(ValueError, match="time-steps"):
        net.forward_pretrain(g[:, :, :, :8], l[:, :, :, :, :8])


def test_cuda_training_layout_bf16_and_channels_last_runs_on_cpu_too():
    """The CUDA recipe path (channels_last_3d + bf16 autocast) exercised on the CPU: close to fp32."""
    from tclr_zoo.losses import tclr_losses

    torch.manual_seed(0)
    reference = create_model("r3d_10_025").train()
    fast = copy.deepcopy(reference).to(memory_format=torch.channels_last_3d)
    assert fast._uses_channels_last() and not reference._uses_channels_last()
    clips = _clips(videos=3)
    expected = tclr_losses(**reference.forward_pretrain(*clips))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast.forward_pretrain(*clips)
    got = tclr_losses(**out)
    assert got["total"].dtype == torch.float32 and torch.isfinite(got["total"])
    got["total"].backward()
    for key in ("ic_global", "local_local", "global_local"):
        assert abs(got[key].item() - expected[key].item()) < 0.1 * abs(expected[key].item()) + 0.05, key


@pytest.mark.parametrize("groups_per_pass", [1, 3, 10])
def test_any_split_into_backbone_passes_gives_the_same_numbers(groups_per_pass):
    torch.manual_seed(0)
    one_pass = create_model("r3d_10_025").train()
    split = copy.deepcopy(one_pass)
    split.groups_per_pass = groups_per_pass
    clips = _clips(videos=2)
    a, b = one_pass.forward_pretrain(*clips), split.forward_pretrain(*clips)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    for p, q in zip(_bn_layers(one_pass), _bn_layers(split)):
        torch.testing.assert_close(p.running_mean, q.running_mean, atol=1e-6, rtol=1e-5)
        assert int(p.num_batches_tracked) == int(q.num_batches_tracked)


def test_grouped_bn_output_is_not_an_autograd_view():
    """An in-place ReLU on a view would be recorded as CopySlices and copy the activation in backward."""
    from tclr_zoo.models.grouped_bn import grouped_batch_norm

    bn = GroupedBatchNorm3d(4).train()
    out = grouped_batch_norm(torch.randn(6, 4, 2, 3, 3, requires_grad=True), bn, groups=3)
    assert out._base is None
    torch.nn.functional.relu(out, inplace=True).sum().backward()
