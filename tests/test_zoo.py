"""Presets (specs/*.json) and the zoo (specs/zoo/*.json): exact parameter counts and timm registration.

Counts are taken on the meta device (no memory is allocated, so even the 100M-parameter presets cost
milliseconds). Reference counts come from the reference code: timm's models counted live, the others as
published by their authors (Compact-Transformers, the seed's CIFAR ViT, SdP-Net v1).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sdpnet
from sdpnet.models.builder import count_params

SPECS = Path(__file__).resolve().parents[1] / "specs"
PRESETS = sorted(p for p in SPECS.glob("*.json") if p.name != "fashion_mnist.json")
ZOO = sorted((SPECS / "zoo").glob("*.json"))

# Published counts of the reference implementations (1000 classes unless the spec says otherwise).
PUBLISHED = {
    "v1_l.json": 55_139_856, "v1_xl.json": 76_403_472, "v1_xxl.json": 85_884_432,  # SdP-Net v1 table
    "vit_cifar.json": 6_268_810,  # the seed's CIFAR-10 ViT
    "vit_lite_7_4.json": 3_716_874, "cvt_7_4.json": 3_716_619,  # SHI-Labs/Compact-Transformers
    "cct_7_3x1_32.json": 3_760_139, "cct_14_7x2_224.json": 22_367_273,
}
TIMM_ZOO = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
            "convmixer_768_32", "convmixer_1536_20")


def meta_count(spec: Path | str, **overrides) -> int:
    with torch.device("meta"):
        return count_params(sdpnet.build(spec, **overrides))


def sdpnet_v2_count(patch: int, dim: int, pairs: int, groups: int, final_enc: int, classes: int = 1000) -> int:
    """SdP-Net v2 parameters from the block definitions, independently of the builder.

    Stem conv (bias) + BN, 5 class tokens, ``groups`` x [``pairs`` x (DWC7 + MLP r4), ENC r4], ``final_enc`` ENCs,
    head LN + Linear(dim, 1000) + tanh + Linear(1000, classes).
    """
    d = dim
    stem = 3 * patch * patch * d + d + 2 * d
    dwc = 2 * d + (49 * d + d) + (d * d + d)  # BN, depthwise 7x7 + bias, pointwise + bias
    mlp = 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)  # BN, 1x1 up, 1x1 down
    enc = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    head = 2 * d + (d * 1000 + 1000) + (1000 * classes + classes)
    return stem + 5 * d + groups * (pairs * (dwc + mlp) + enc) + final_enc * enc + head


class TestPublishedCounts:
    @pytest.mark.parametrize("name", sorted(PUBLISHED))
    def test_exact(self, name: str) -> None:
        """The spec has exactly the reference implementation's parameter count."""
        path = SPECS / name if (SPECS / name).exists() else SPECS / "zoo" / name
        assert meta_count(path) == PUBLISHED[name]

    @pytest.mark.parametrize("name", TIMM_ZOO)
    def test_timm_reference(self, name: str) -> None:
        """The zoo spec has exactly timm's parameter count for the model of the same name."""
        timm = pytest.importorskip("timm")
        with torch.device("meta"):
            ref = count_params(timm.create_model(name, pretrained=False))
        assert meta_count(SPECS / "zoo" / f"{name}.json") == ref

    def test_xl_matches_the_seed(self) -> None:
        """XL, the 82.1% model, is within 1% of the seed's 101.9M."""
        assert abs(meta_count(SPECS / "xl.json") - 101.9e6) / 101.9e6 < 0.01


class TestSdpnetFamily:
    @pytest.mark.parametrize("name,args", [
        ("xxs", (16, 128, 2, 2, 1)), ("s", (16, 512, 2, 4, 0)), ("m", (16, 768, 3, 3, 0)),
        ("l", (16, 768, 2, 4, 0)), ("xl", (14, 768, 3, 4, 1)),
    ])
    def test_count_follows_the_blocks(self, name: str, args: tuple[int, ...]) -> None:
        """Each v2 preset counts what its blocks say: stem, class tokens, groups, final ENC, head."""
        assert meta_count(SPECS / f"{name}.json") == sdpnet_v2_count(*args)

    def test_num_classes_override(self) -> None:
        """Overriding num_classes changes only the head's last layer."""
        assert meta_count(SPECS / "xxs.json", num_classes=10) == sdpnet_v2_count(16, 128, 2, 2, 1, classes=10)


class TestSmallZooRuns:
    @pytest.mark.parametrize("name", ["vit_cifar", "vit_lite_7_4", "cvt_7_4", "cct_7_3x1_32"])
    def test_forward_backward_at_32px(self, name: str) -> None:
        """The 32-px zoo models run a real forward and backward at full size on CIFAR-shaped input."""
        torch.manual_seed(0)
        model = sdpnet.build(SPECS / "zoo" / f"{name}.json")
        x = torch.randn(2, 3, 32, 32)
        logits = model(x)
        assert logits.shape == (2, 10)
        logits.logsumexp(1).mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"parameters without gradient: {missing}"


@pytest.fixture(scope="module")
def timm():
    """timm, with every spec file registered."""
    timm = pytest.importorskip("timm")
    sdpnet.register_timm()  # (import sdpnet + import timm registers them already; this says it)

    return timm


class TestTimmRegistration:
    @pytest.mark.parametrize("path", PRESETS + ZOO, ids=lambda p: p.stem)
    def test_create_model(self, timm, path: Path) -> None:
        """timm.create_model builds every spec by its registered name, with the spec's parameter count."""
        from sdpnet.spec.presets import preset_name

        name = preset_name(json.loads(path.read_text())["name"])
        assert timm.is_model(name)
        model = timm.create_model(name, pretrained=False, device="meta")
        assert isinstance(model, sdpnet.models.builder.SpecNet)
        assert count_params(model) == meta_count(path)

    def test_presets_have_seed_names(self, timm) -> None:
        """The v2 presets are registered as sdpnet_xxs ... sdpnet_xl."""
        for size in ("xxs", "s", "m", "l", "xl"):
            assert timm.is_model(f"sdpnet_{size}")

    def test_timm_names_are_not_overwritten(self, timm) -> None:
        """The zoo is registered under sdpnet_ names; timm's own vit_tiny_patch16_224 stays timm's."""
        with torch.device("meta"):
            ref = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        assert type(ref).__name__ == "VisionTransformer"

    def test_timm_keywords_map_to_hparams(self, timm) -> None:
        """timm's num_classes and drop_path_rate reach the spec; pretrained=True is refused."""
        model = timm.create_model("sdpnet_vit_cifar", num_classes=7, drop_path_rate=0.3, device="meta")
        assert model.num_classes == 7 and model.plan.hparams["drop_path"] == 0.3
        with pytest.raises(ValueError, match="no pretrained weights"):
            timm.create_model("sdpnet_xxs", pretrained=True)
