"""``sdpnet.models.convert.from_timm``: weights matched by the order the forward pass reads them, giving timm's logits;
any structural difference is a ValueError naming the tensors. (The eight hybrid families: test_families.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from sdpnet.models.convert import from_timm, read_order  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "specs" / "zoo"
RES = 64  # parity holds at any resolution; 64 px keeps the 224-px references cheap


def _randomize(model: nn.Module, seed: int) -> None:
    """Give norms, scales and biases random values and BatchNorm random statistics, tokens and position tables a
    large spread, so that a swapped or skipped tensor shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.flatten()
            if name.endswith(("pos_embed", "cls_token", "reg_token")):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.numel() and bool((flat == flat[0]).all()):
                noise = torch.randn((2, *p.shape), generator=g)
                p.copy_(flat[0] * (1 + 0.2 * noise[0]) + 0.1 * noise[1])
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(1 + 0.3 * torch.rand(b.shape, generator=g))


def _logits(ref: nn.Module, spec, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    ref.eval()
    _randomize(ref, 1)
    ours = from_timm(ref, spec, **overrides).eval()
    res = ours.plan.img_size
    x = torch.randn(2, ours.plan.in_chans, res, res, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return ours(x), ref(x)


class TestParity:
    """Specs of the same structure as a timm model take its weights and give its logits."""

    def test_vit_tiny(self) -> None:
        """vit_tiny_patch16_224 (class token with a position: POS(cls=true)) at 64 px, within 1e-4."""
        torch.manual_seed(0)
        ours, ref = _logits(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=RES),
                            ZOO / "vit_tiny_patch16_224.json", img_size=RES)
        assert ours.shape == ref.shape == (2, 1000) and ref.std() > 0.1
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)

    def test_convmixer_768_32(self) -> None:
        """convmixer_768_32 (BatchNorm statistics included) at 64 px, within 1e-4."""
        torch.manual_seed(0)
        ours, ref = _logits(timm.create_model("convmixer_768_32", pretrained=False), ZOO / "convmixer_768_32.json",
                            img_size=RES)
        assert ref.std() > 0.05
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)

    def test_vit_variant_with_qk_norm_and_layer_scale(self) -> None:
        """A small 32-px ViT with QK-norm and LayerScale converts through the ENC keywords qkn and ls."""
        torch.manual_seed(0)
        ref = timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, qk_norm=True, init_values=0.1,
            num_classes=10)
        ours, want = _logits(ref, "P4+CLS-POS(cls=true)+ENC(qkn=1,ls=0.1)x2-TOKS+LIN", dim=64, heads=2,
                             img_size=32, num_classes=10)
        torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)

    def test_new_convnext_converts_without_new_code(self) -> None:
        """A ConvNeXt no zoo spec describes (kernel 5, depths 1-1-2-1, widths 16-24-40-48) converts from its spec
        alone."""
        torch.manual_seed(0)
        ref = timm.models.convnext.ConvNeXt(depths=(1, 1, 2, 1), dims=(16, 24, 40, 48), kernel_sizes=5, num_classes=7)
        ours, want = _logits(ref, "P4-CNX5-DOWN2(d=24)-CNX5-DOWN2(d=40)-CNX5x2-DOWN2(d=48)-CNX5-GAP+LIN", dim=16,
                             down_norm="ln", num_classes=7, img_size=64)
        torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)

    def test_new_metaformer_mix_converts(self) -> None:
        """timm's MetaFormer with a pooling stage (LayerScale on both halves) then a separable-conv stage with
        ResScale, StarReLU MLPs and its MLP head: a model no timm name has, converted from the spec that writes
        it."""
        mf = timm.models.metaformer
        torch.manual_seed(0)
        ref = mf.MetaFormer(depths=(1, 1), dims=(16, 32), token_mixers=[mf.Pooling, mf.SepConv],
                            layer_scale_init_values=[1e-5, None], res_scale_init_values=[None, 1.0], num_classes=5)
        ours, want = _logits(ref, "P4(k=7)-POOL+MLP(ls=1e-05)-DOWN2-SEP(rs=1.0)+MLP(rs=1.0)-MLP", dim=16,
                             act="starrelu", conv_norm="lnnb", down_norm="lnnb", down_kernel=3, mlp_bias=False,
                             head_hidden=128, head_act="sqrelu", head_norm="ln", num_classes=5, img_size=32)
        torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)


class TestReadOrder:
    """The matching reads the order in which a forward pass first uses each state entry."""

    def test_order_of_first_use(self) -> None:
        """Entries come in the order the forward uses them, not the order they were registered."""

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.late = nn.Linear(4, 4)
                self.early = nn.Linear(4, 4, bias=False)
                self.register_buffer("unused", torch.zeros(1))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.late(self.early(x))

        net = Net()
        assert read_order(net, net, torch.randn(1, 4)) == ["early.weight", "late.weight", "late.bias"]
        assert net.training  # the mode is restored


class TestStrict:
    """A spec that only resembles the timm model is refused, naming the tensors that differ."""

    def test_extra_blocks_are_named(self) -> None:
        """A spec with more ENC blocks than the ViT: timm's head finds the spec's extra block where it expects its
        own head, and the error names both, with the two counts."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32, patch_size=16)
        with pytest.raises(ValueError, match=r"head\.weight \(1000, 192\).*body\.3\.attn\.qkv\.weight.*timm has 32 "
                                             r"state entries, the spec 45"):
            from_timm(ref, "P16+CLS-POS(cls=true)+ENCx3-TOKS+LIN", dim=192, heads=3, img_size=32)

    def test_missing_class_positions_is_reported(self) -> None:
        """A ViT whose table positions the class token needs POS(cls=true): the error says so."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, img_size=32)
        with pytest.raises(ValueError, match=r"pos_embed \(1, 5, 192\).*POS\(cls=true\)"):
            from_timm(ref, "P16+CLS+POS-ENC-TOKS+LIN", dim=192, heads=3, img_size=32)

    def test_unmapped_keys_are_named(self) -> None:
        """An extra parameter on our side (a bias timm lacks) is a ValueError naming the key."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, qkv_bias=False, img_size=32)
        with pytest.raises(ValueError, match=r"attn\.qkv\.bias"):
            from_timm(ref, "P16+CLS-POS(cls=true)+ENC-TOKS+LIN", dim=192, heads=3, img_size=32)

    def test_shape_mismatch_is_named(self) -> None:
        """A width that differs from timm's names timm's tensor and the spec's, with both shapes."""
        ref = timm.models.convmixer.ConvMixer(dim=64, depth=2, kernel_size=3, patch_size=4, num_classes=5)
        with pytest.raises(ValueError, match=r"stem\.0\.weight \(64, 3, 4, 4\).*stem\.0\.proj\.weight \(32, 3, 4, 4\)"):
            from_timm(ref, "P4(act=gelu,norm=bn)-CM3x2-GAP+LIN(norm=none)", dim=32, num_classes=5, img_size=32)

    def test_other_structure_is_refused(self) -> None:
        """A model of another structure (a ResNet for a patchify spec) is refused at its first tensor."""
        ref = timm.create_model("resnet10t", pretrained=False)
        with pytest.raises(ValueError, match=r"conv1\.0\.weight \(24, 3, 3, 3\) \(its tensor 1 of"):
            from_timm(ref, "P4-GAP+LIN", img_size=32)

    def test_wrong_resolution_is_explained(self) -> None:
        """A timm model made for another input size fails with a message naming the spec's img_size."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
        with pytest.raises(ValueError, match=r"img_size 32"):
            from_timm(ref, "P16+CLS-POS(cls=true)+ENC-TOKS+LIN", dim=192, heads=3, img_size=32)
