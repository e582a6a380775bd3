"""The hybrid families against timm: ConvNeXt, PoolFormer, ConvFormer, CAFormer, MLP-Mixer, DeiT III and a ViT
with registers as zoo specs with timm's parameter counts, logits (weights copied by ``sdpnet.models.convert``) and
FLOPs; the semantics of the new blocks and keyword values; the gallery of hybrids and its generated page."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sdpnet
from sdpnet.blocks import ConvNeXtBlock, PatchEmbed, StarReLU, TokenMixingMlp, get_act, get_norm1d, get_norm2d
from sdpnet.models.builder import count_params
from sdpnet.models.convert import from_timm
from sdpnet.models.summary import summarize
from sdpnet.tools.gallery import gallery_files
from timm_parity import assert_same_logits, random_timm_model, timm, timm_flops

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "specs" / "zoo"
FAMILIES = ("convnext_atto", "convnext_tiny", "poolformer_s12", "convformer_s18", "caformer_s18", "mixer_s16_224",
            "deit3_small_patch16_224", "vit_medium_patch16_reg4_gap_256", "poolformerv2_s12",
            "vit_small_patch16_rope_224")
FIXED_SIZE = ("mixer_s16_224", "deit3_small_patch16_224", "vit_medium_patch16_reg4_gap_256",
              "vit_small_patch16_rope_224")  # built for one img_size
PARITY_RES = 64  # every family runs at 64 px (stride 32 at most); timm's fixed-size models are created for it


def size_kwargs(name: str, res: int) -> dict[str, int]:
    """timm's create_model keywords making ``name`` for ``res`` px when it is built for one input size."""
    return {"img_size": res} if name in FIXED_SIZE else {}


class TestZooSpecs:
    """Each family is one spec file named as timm names it, one line long, with timm's parameter count."""

    @pytest.mark.parametrize("name", FAMILIES)
    def test_parameter_count_equals_timm(self, name: str) -> None:
        """The zoo spec has exactly the parameters of timm's model of the same name (1000 classes)."""
        with torch.device("meta"):
            ours = sdpnet.build(ZOO / f"{name}.json")
            ref = timm.create_model(name, pretrained=False)
        assert count_params(ours) == count_params(ref)

    @pytest.mark.parametrize("name", FAMILIES)
    def test_spec_string_fits_a_line(self, name: str) -> None:
        """The file's name is timm's, and its canonical spec string is under 120 characters."""
        hparams = json.loads((ZOO / f"{name}.json").read_text())
        assert hparams["name"] == name
        assert len(str(sdpnet.load_spec(ZOO / f"{name}.json").arch)) < 120


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_equal_timm(name: str) -> None:
    """timm's weights copied by from_timm give timm's logits within 1e-4 (eval mode, 64 px, random weights)."""
    ref = random_timm_model(name, seed=1, **size_kwargs(name, PARITY_RES))
    ours = from_timm(ref, ZOO / f"{name}.json", img_size=PARITY_RES).eval()
    assert_same_logits(ours, ref, PARITY_RES)


class TestFlops:
    """``python -m sdpnet summary`` counts what FlopCounterMode counts on timm's model (fused attention off)."""

    @pytest.mark.parametrize("name", FAMILIES)
    def test_summary_equals_timm(self, name: str) -> None:
        """summarize() of the zoo spec at timm's input size gives timm's FLOPs exactly."""
        with torch.device("meta"):
            ours = sdpnet.build(ZOO / f"{name}.json").eval()
        assert (summarize(ours, ours.plan.img_size)["flops"], ours.plan.img_size) == timm_flops(name)

    def test_cpu_model_counts_the_same(self) -> None:
        """On a real CPU model (attention through scaled_dot_product_attention) the count is the same."""
        spec = REPO / "specs" / "gallery" / "caformer_registers.json"
        cpu = sdpnet.build(spec).eval()
        with torch.device("meta"):
            meta = sdpnet.build(spec).eval()
        assert summarize(cpu, 32)["flops"] == summarize(meta, 32)["flops"] > 0

    def test_cli(self) -> None:
        """The command line reports the FLOPs of timm's caformer_s18 (convolutions and attention) at 224 px."""
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        res = subprocess.run([sys.executable, "-m", "sdpnet", "summary", str(ZOO / "caformer_s18.json"), "--json"],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout)
        assert (out["flops"], out["res"]) == timm_flops("caformer_s18") and out["res"] == 224


class TestNewBlocks:
    """The new blocks and keyword values compute what their docs say."""

    def test_starrelu_and_sqrelu(self) -> None:
        """starrelu is scale * relu(x)^2 + bias with learnable scalars (1, 0); sqrelu is relu(x)^2."""
        act = get_act("starrelu")
        assert isinstance(act, StarReLU) and act.scale.item() == 1.0 and act.bias.item() == 0.0
        with torch.no_grad():
            act.scale.fill_(0.5), act.bias.fill_(-0.25)
        x = torch.linspace(-2, 2, 9)
        torch.testing.assert_close(act(x), 0.5 * F.relu(x) ** 2 - 0.25)
        torch.testing.assert_close(get_act("sqrelu")(x), F.relu(x) ** 2)

    def test_norm_values(self) -> None:
        """lnnb is a LayerNorm with a weight and no bias; gn1 a GroupNorm with one group, eps 1e-5."""
        for norm in (get_norm2d("lnnb", 8), get_norm1d("lnnb", 8)):
            assert norm.bias is None and norm.weight.shape == (8,) and norm.eps == 1e-6
        gn = get_norm2d("gn1", 8)
        assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 1 and gn.eps == 1e-5
        x = torch.randn(2, 8, 3, 3)
        torch.testing.assert_close(gn(x), F.group_norm(x, 1, gn.weight, gn.bias, 1e-5))
        want = F.layer_norm(x.permute(0, 2, 3, 1), (8,), get_norm2d("lnnb", 8).weight, None, 1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(get_norm2d("lnnb", 8)(x), want)

    def test_overlapping_patches(self) -> None:
        """P4(k=7) is a 7x7 conv with stride 4 and padding 2 (MetaFormer's stem): the grid is still H/4."""
        m = PatchEmbed(3, 4, dim=8, kernel_size=7)
        assert m.proj.kernel_size == (7, 7) and m.proj.stride == (4, 4) and m.proj.padding == (2, 2)
        for res in (32, 28, 64):
            assert m(torch.randn(1, 3, res, res)).shape == (1, 8, res // 4, res // 4)

    def test_metaformer_downsample(self) -> None:
        """DOWN2 with down_kernel=3 is norm + 3x3 conv stride 2 padding 1; the grid halves."""
        model = sdpnet.build("P4-POOL-DOWN2-GAP+LIN", dim=8, down_kernel=3, down_norm="lnnb", img_size=32)
        conv = model.body[1].conv
        assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
        assert model.body[1].norm.bias is None and model.stride == 8
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 16, 4, 4)

    def test_cnx_keeps_channels_last(self) -> None:
        """CNX keeps a channels_last input in channels_last memory (so the next block's channels-last view is
        free), and computes the same on either layout."""
        m = ConvNeXtBlock(8).eval()
        x = torch.randn(2, 8, 5, 5)
        y = m(x.contiguous(memory_format=torch.channels_last))
        assert y.shape == (2, 8, 5, 5) and y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, m(x))

    def test_cnx_without_layer_scale(self) -> None:
        """CNX(ls=0) has no gamma parameter and computes x + fc2(act(fc1(norm(dw(x)))))."""
        m = ConvNeXtBlock(8, layer_scale=0.0).eval()
        assert "gamma" not in dict(m.named_parameters())
        x = torch.randn(2, 8, 5, 5)
        y = m.fc2(F.gelu(m.fc1(m.norm(m.conv_dw(x).permute(0, 2, 3, 1))))).permute(0, 3, 1, 2)
        torch.testing.assert_close(m(x), x + y)

    @pytest.mark.parametrize("norm", ["bn", "gn1", "lnnb"])
    def test_cnx_other_norms(self, norm: str) -> None:
        """CNX takes any norm value: the channels-first norm of that name applied to the depthwise output."""
        m = ConvNeXtBlock(8, norm=norm).eval()
        x = torch.randn(2, 8, 5, 5)
        ref = get_norm2d(norm, 8).eval()
        ref.load_state_dict({k.removeprefix("norm."): v for k, v in m.norm.state_dict().items()})
        h = ref(m.conv_dw(x)).permute(0, 2, 3, 1)
        y = (m.fc2(F.gelu(m.fc1(h))) * m.gamma).permute(0, 3, 1, 2)
        torch.testing.assert_close(m(x), x + y)

    def test_tmlp_mixes_positions(self) -> None:
        """TMLP's MLP runs over the H*W positions of each channel: a channel's output depends on every position."""
        m = TokenMixingMlp(4, (3, 3), mlp_ratio=2.0).eval()
        assert m.fc1.in_features == 9 and m.fc1.out_features == 8 and m.fc2.out_features == 9
        x = torch.randn(1, 4, 3, 3, requires_grad=True)
        m(x)[0, 0, 0, 0].backward()
        assert (x.grad[0, :, 1:, 1:] != 0).all()  # far positions (and, through the norm, other channels)

    def test_tmlp_other_grid(self) -> None:
        """On another grid TMLP resamples its position weights; at the native grid it uses them as they are."""
        m = TokenMixingMlp(4, (4, 4)).eval()
        x = torch.randn(2, 4, 4, 4)
        y = m.norm(x).reshape(2, 4, 16)
        torch.testing.assert_close(m(x), x + m.fc2(F.gelu(m.fc1(y))).reshape(2, 4, 4, 4))
        assert m(torch.randn(2, 4, 6, 5)).shape == (2, 4, 6, 5)
        w1, _, w2, _ = m._weights((8, 8))
        assert w1.shape == (m.fc1.out_features, 64) and w2.shape == (64, m.fc1.out_features)
        # a constant weight row stays constant, scaled by the change in the number of positions
        with torch.no_grad():
            m.fc1.weight.fill_(1.0)
        torch.testing.assert_close(m._weights((8, 8))[0], torch.full((m.fc1.out_features, 64), 16 / 64))

    def test_res_scale(self) -> None:
        """rs=1.0 gives the shortcut a learnable per-channel scale (MetaFormer's ResScale) in MLP, SEP, POOL, ENC."""
        model = sdpnet.build("P4+CLS1-SEP(rs=1.0),POOL(rs=1.0),MLP(rs=1.0),ENC(rs=1.0)-TOKS+LIN", dim=8, heads=2,
                             img_size=16)
        scales = [n for n, _ in model.named_parameters() if "res_scale" in n or ".rs" in n]
        assert len(scales) == 5  # one per mixer and per MLP, two in ENC
        base = sdpnet.build("P4+CLS1-SEP,POOL,MLP,ENC-TOKS+LIN", dim=8, heads=2, img_size=16)
        assert count_params(model) - count_params(base) == 5 * 8

    def test_metaformer_head(self) -> None:
        """The head MLP with hact=sqrelu, hnorm=ln is MetaFormer's MlpHead: fc(ln(relu(pre(norm(f)))^2))."""
        head = sdpnet.build("P4-GAP+MLP(h=16,hact=sqrelu,hnorm=ln)", dim=8, num_classes=3).head[0]
        f = torch.randn(2, 8)
        want = head.fc(head.hidden_norm(F.relu(head.pre(head.norm(f))) ** 2))
        torch.testing.assert_close(head(f), want)
        assert isinstance(head.hidden_norm, nn.LayerNorm)


GALLERY = gallery_files()


class TestGallery:
    """specs/gallery: at least 12 hybrids, each described, built, run and listed in docs/gallery.md."""

    def test_size_and_descriptions(self) -> None:
        """At least 12 specs, each with a one-line description, 10 classes and 32 px by default."""
        assert len(GALLERY) >= 12
        for path in GALLERY:
            hparams = json.loads(path.read_text())
            assert hparams["name"] == path.stem
            assert hparams["description"] and "\n" not in hparams["description"]
            assert hparams["num_classes"] == 10 and hparams["img_size"] == 32

    @pytest.mark.parametrize("path", GALLERY, ids=lambda p: p.stem)
    def test_runs_at_two_resolutions(self, path: Path) -> None:
        """With one input channel (Fashion-MNIST) the spec runs forward and backward at 32 and 28 px, and every
        parameter gets a gradient."""
        torch.manual_seed(0)
        model = sdpnet.build(path, in_chans=1).train()
        for res in (32, 28):
            model.zero_grad(set_to_none=True)
            logits = model(torch.randn(2, 1, res, res))
            assert logits.shape == (2, 10) and torch.isfinite(logits).all()
            F.cross_entropy(logits, torch.tensor([0, 1])).backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"{path.stem} at {res} px: no gradient for {missing}"

    def test_docs_are_generated(self) -> None:
        """docs/gallery.md is exactly what `python -m sdpnet gallery --markdown` prints."""
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        res = subprocess.run([sys.executable, "-m", "sdpnet", "gallery", "--markdown"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout == (REPO / "docs" / "gallery.md").read_text(), \
            "docs/gallery.md is stale: run python -m sdpnet gallery --markdown > docs/gallery.md"


class TestRegisteredNorms:
    """The norms added as registry entries compute what timm and torch compute, in both layouts."""

    def test_rms_is_torch_rmsnorm_over_channels(self) -> None:
        """rms on images is nn.RMSNorm over the channels (the block's eps), and nn.RMSNorm itself on tokens."""
        x = torch.randn(2, 8, 3, 5)
        m = get_norm2d("rms", 8, eps=1e-5)
        with torch.no_grad():
            m.weight.copy_(torch.randn(8))
        ref = nn.RMSNorm(8, eps=1e-5)
        ref.load_state_dict(m.state_dict())
        torch.testing.assert_close(m(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        assert isinstance(get_norm1d("rms", 8), nn.RMSNorm) and get_norm1d("rms", 8).eps == 1e-6

    def test_gn1nb_is_timm_groupnorm1_no_bias(self) -> None:
        """gn1nb is timm's GroupNorm1NoBias: one group, a weight, no bias, eps 1e-6."""
        from timm.models.metaformer import GroupNorm1NoBias

        ref, m = GroupNorm1NoBias(8), get_norm2d("gn1nb", 8)
        with torch.no_grad():
            ref.weight.copy_(torch.randn(8))
        m.load_state_dict(ref.state_dict())
        x = torch.randn(2, 8, 4, 4)
        assert m.bias is None and m.eps == ref.eps == 1e-6
        torch.testing.assert_close(m(x), ref(x))

    @pytest.mark.parametrize("norm", ["bn", "gn1", "gn1nb", "rms", "ln", "lnnb"])
    def test_every_norm_serves_token_sequences(self, norm: str) -> None:
        """ENC(norm=...) builds with any registered norm, and runs forward and backward on its sequence."""
        model = sdpnet.build(f"P8+CLS-ENC(h=2,norm={norm})-TOKS+LIN", dim=16, img_size=32, num_classes=3)
        model(torch.randn(2, 3, 32, 32)).sum().backward()


class TestRope:
    """``ENC(pos=rope)``: timm's 2-D axial rotary embeddings, following the resolution."""

    def test_other_resolution_equals_timm_dynamic(self) -> None:
        """Built for 64 px, run at 96 x 64, the model equals timm's vit_small_patch16_rope_224 with
        dynamic_img_size (which computes the rotary table for each input's grid), same weights."""
        ref = random_timm_model("vit_small_patch16_rope_224", seed=3, img_size=PARITY_RES)
        ours = from_timm(ref, ZOO / "vit_small_patch16_rope_224.json", img_size=PARITY_RES).eval()
        dyn = timm.create_model("vit_small_patch16_rope_224", img_size=PARITY_RES, dynamic_img_size=True).eval()
        dyn.load_state_dict(ref.state_dict())
        x = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            got, want = ours(x), dyn(x)
        assert want.std() > 0.1
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

    def test_rope_changes_what_the_image_tokens_see(self) -> None:
        """pos=rope and pos=none with the same weights give different logits (the image keys are rotated)."""
        torch.manual_seed(0)
        rope = sdpnet.build("P8+CLS-ENC(h=2,pos=rope)-TOKS+LIN", dim=16, img_size=32, num_classes=3).eval()
        none = sdpnet.build("P8+CLS-ENC(h=2)-TOKS+LIN", dim=16, img_size=32, num_classes=3).eval()
        none.load_state_dict(rope.state_dict())
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert not torch.allclose(rope(x), none(x))

    def test_head_width_must_split_in_four(self) -> None:
        """A head width not divisible by 4 is refused at build time, naming what would work."""
        with pytest.raises(ValueError, match="divisible by 4"):
            sdpnet.build("P8-ENC(h=3,pos=rope)", dim=18, img_size=32, num_classes=3)
