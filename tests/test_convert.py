"""Semantic parity with timm: weights copied by ``sdpnet.convert.from_timm`` give timm's logits."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from sdpnet.convert import from_timm  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "specs" / "zoo"


def _randomize_norms(model: torch.nn.Module, seed: int) -> None:
    """Give every norm non-trivial affine weights and BN statistics, so a swapped or skipped one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.3 * torch.rand(m.running_var.shape, generator=g))


def _parity(name: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    _randomize_norms(ref, 1)
    with torch.no_grad():  # timm's ViT init leaves pos_embed/cls_token near zero: make them matter
        for p in (getattr(ref, "pos_embed", None), getattr(ref, "cls_token", None)):
            if p is not None:
                p.normal_(0, 0.5)
    ours = from_timm(ref, ZOO / f"{name}.json").eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return ours(x), ref(x)


class TestParity:
    def test_vit_tiny_logits_match(self) -> None:
        """Our vit_tiny_patch16_224 with timm's random weights gives timm's logits within 1e-4."""
        ours, ref = _parity("vit_tiny_patch16_224", 2)
        assert ours.shape == ref.shape == (2, 1000)
        assert ref.std() > 0.1
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)

    def test_convmixer_768_32_logits_match(self) -> None:
        """Our convmixer_768_32 with timm's random weights gives timm's logits within 1e-4."""
        ours, ref = _parity("convmixer_768_32", 1)
        assert ours.shape == ref.shape == (1, 1000)
        assert ref.std() > 0.1
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)

    def test_vit_variant_with_qk_norm_and_layer_scale(self) -> None:
        """A small 32-px ViT with QK-norm and LayerScale converts through the ENC keywords qkn and ls."""
        torch.manual_seed(0)
        ref = timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, qk_norm=True, init_values=0.1,
            num_classes=10).eval()
        _randomize_norms(ref, 3)
        with torch.no_grad():
            ref.pos_embed.normal_(0, 0.5)
            for name, p in ref.named_parameters():
                if name.endswith("gamma"):
                    p.uniform_(0.5, 1.5)
        ours = from_timm(ref, "P4+CLS-POS(cls=true)+ENC(qkn=1,ls=0.1)x2-TOKS+LIN", dim=64, heads=2, img_size=32,
                         num_classes=10).eval()
        x = torch.randn(3, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


class TestStrict:
    def test_wrong_depth_names_counts(self) -> None:
        """A spec with fewer ENC blocks than the ViT is rejected, naming both counts."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2)
        spec = "P16+CLS-POS(cls=true)+ENCx3-TOKS+LIN"
        with pytest.raises(ValueError, match="3 ENC blocks, the timm ViT 2"):
            from_timm(ref, spec, dim=192, heads=3)

    def test_missing_class_positions_is_reported(self) -> None:
        """A ViT spec whose POS lacks class-token positions says to write POS(cls=true)."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
        with pytest.raises(ValueError, match=r"POS\(cls=true\)"):
            from_timm(ref, "P16+CLS+POS-ENC-TOKS+LIN", dim=192, heads=3)

    def test_unmapped_keys_are_named(self) -> None:
        """An extra parameter on either side (a bias timm lacks) is a ValueError naming the key."""
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, qkv_bias=False)
        with pytest.raises(ValueError, match=r"attn\.qkv\.bias"):
            from_timm(ref, "P16+CLS-POS(cls=true)+ENC-TOKS+LIN", dim=192, heads=3)

    def test_shape_mismatch_is_named(self) -> None:
        """A width that differs from timm's is a ValueError naming a mismatched key and both shapes."""
        ref = timm.models.convmixer.ConvMixer(dim=64, depth=2, kernel_size=3, patch_size=4, num_classes=5)
        with pytest.raises(ValueError, match=r"spec \(32, 1, 3, 3\) vs timm \(64, 1, 3, 3\)"):
            from_timm(ref, "P4(act=gelu,norm=bn)-CM3x2-GAP+LIN(norm=none)", dim=32, num_classes=5)

    def test_unsupported_model_type(self) -> None:
        """A timm model family other than ViT/ConvMixer is refused by name."""
        ref = timm.create_model("resnet10t", pretrained=False)
        with pytest.raises(ValueError, match="not ResNet"):
            from_timm(ref, "P4-GAP+LIN")
