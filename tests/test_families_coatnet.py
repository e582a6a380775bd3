"""CoAtNet against timm: ``specs/zoo/coatnet_nano_rw_224.json`` and three CoAtNets no zoo file names (timm's
``coatnet_0_rw_224``, ``coatnet_bn_0_rw_224`` and the paper-style ``coatnet_0_224``, written here) have timm's parameter counts, logits
(weights and BatchNorm statistics copied by ``sdpnet.models.convert``) and FLOPs; ``MBC``, ``TFM`` and the relative
position bias compute what their docs say, at the plan's grid and at others."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sdpnet
from sdpnet.blocks.attention import Attention
from sdpnet.blocks.coatnet import GridTransformerBlock, MBConvBlock
from sdpnet.blocks.layers.helpers import make_divisible
from sdpnet.blocks.layers.pos import AxialRope, NoPos
from sdpnet.blocks.layers.relpos import RelPosBias
from sdpnet.models.builder import count_params
from sdpnet.models.convert import from_timm
from sdpnet.models.summary import summarize
from timm_parity import assert_same_logits, random_timm_model, timm, timm_flops

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "specs" / "zoo"
STEM = "CONV3(d={w},s=2,act={a})+CONV3(norm=none,act=none)"
RW = "pact=1,early=1,seact=relu,bias=0,down=pool"  # timm's _rw_coat_cfg: pre-norm act, SE before norm2 (ReLU)
RW_DW = "pact=1,early=1,seact=relu,bias=0"  # the same, stride in the depthwise conv (timm's stride_mode='dw')
BN6 = "norm=bn,eps=1e-6"  # timm's transformer_norm_layer='batchnorm2d' with the transformer cfg's norm_eps
PAPER = "act=gelu,rout=1"  # timm's default conv cfg: GELU, widths counted from the output, stride in the dw conv
SPECS = {
    "coatnet_nano_rw_224": ZOO / "coatnet_nano_rw_224.json",
    # depths 2-3-7-2, widths 96-192-384-768, transformer shortcut without bias
    "coatnet_0_rw_224": STEM.format(w=32, a="silu") + f"-MBC(s=2,d=96,{RW}),MBC({RW})-MBC(s=2,d=192,{RW}),"
                        f"MBC({RW})x2-TFM(s=2,d=384,sbias=0),TFMx6-TFM(s=2,d=768,sbias=0),TFM-NORM-GAP+LIN(norm=none)",
    # coatnet_0_rw_224 with the stride in the depthwise conv and BatchNorm (eps 1e-6) in the transformer blocks and
    # the final norm (the conv stages' BatchNorm keeps eps 1e-5)
    "coatnet_bn_0_rw_224": STEM.format(w=32, a="silu") + f"-MBC(s=2,d=96,{RW_DW}),MBC({RW_DW})-MBC(s=2,d=192,{RW_DW}),"
                           f"MBC({RW_DW})x2-TFM(s=2,d=384,sbias=0,{BN6}),TFM({BN6})x6-TFM(s=2,d=768,sbias=0,{BN6}),"
                           f"TFM({BN6})-NORM({BN6})-GAP+LIN(norm=none)",
    # depths 2-3-5-2, attention at the output width, timm's NormMlpClassifierHead (pool, LN, tanh layer, fc)
    "coatnet_0_224": STEM.format(w=64, a="gelu") + f"-MBC(s=2,d=96,{PAPER}),MBC({PAPER})-MBC(s=2,d=192,{PAPER}),"
                     f"MBC({PAPER})x2-TFM(s=2,d=384,ef=1),TFMx4-TFM(s=2,d=768,ef=1),TFM-GAP+MLP(h=768)",
}
HPARAMS = {"dim": 64, "num_classes": 1000, "img_size": 224}  # for the specs written here
RES = 64  # parity resolution: the last stage runs on a 2x2 grid


def build(name: str, **overrides) -> nn.Module:
    spec = SPECS[name]
    return sdpnet.build(spec, **overrides) if isinstance(spec, Path) else sdpnet.build(spec, **{**HPARAMS, **overrides})


def logits_match(name: str, res: int) -> None:
    """Ours and timm's ``name``, both made for ``res`` px, give the same logits (:func:`assert_same_logits`).
    ``coatnet_bn_0_rw_224`` is compared in float64: with BatchNorm instead of LayerNorm in its transformer blocks its
    random-weight logits spread to a std of ~45, where float32 rounding alone differs by 1.2e-4 (its BatchNorm eps
    set to 1e-5 instead of 1e-6: 7.4e-3)."""
    ref = random_timm_model(name, seed=1, img_size=res)
    spec = SPECS[name]
    overrides = {"img_size": res} if isinstance(spec, Path) else {**HPARAMS, "img_size": res}
    dtype = torch.float64 if name == "coatnet_bn_0_rw_224" else torch.float32
    assert_same_logits(from_timm(ref, spec, **overrides).eval(), ref, res, dtype=dtype)


class TestTimmParity:
    """Each CoAtNet equals timm's model of the same name: parameters, logits, FLOPs."""

    @pytest.mark.parametrize("name", SPECS)
    def test_parameter_count(self, name: str) -> None:
        """The spec has exactly the parameters of timm's model (1000 classes, 224 px)."""
        with torch.device("meta"):
            ours, ref = build(name), timm.create_model(name, pretrained=False)
        assert count_params(ours) == count_params(ref)

    @pytest.mark.parametrize("name", SPECS)
    def test_logits(self, name: str) -> None:
        """timm's weights and BatchNorm statistics copied by from_timm give timm's logits within 1e-4 (64 px)."""
        logits_match(name, RES)

    def test_logits_at_another_size(self) -> None:
        """Made for 96 px (relative position tables of 11x11 and 5x5 offsets), the zoo spec still equals timm."""
        logits_match("coatnet_nano_rw_224", 96)

    @pytest.mark.parametrize("name", SPECS)
    def test_flops(self, name: str) -> None:
        """summarize() at 224 px counts what FlopCounterMode counts on timm's model (within 0.1%; today exactly)."""
        with torch.device("meta"):
            ours = build(name).eval()
        want, res = timm_flops(name)
        got = summarize(ours, res)["flops"]
        assert res == 224 and abs(got - want) <= 1e-3 * want, (got, want)


class TestTraining:
    """The zoo spec trains at a small size and runs at sizes it was not made for."""

    def test_forward_backward_small(self) -> None:
        """At 64 px with drop_path on, every parameter gets a finite gradient; the position tables are sized from
        the plan's grids (32 -> 16 -> 8 -> 4 -> 2: 7x7 offsets at 4x4, 3x3 at 2x2), one column per head (the input
        width / 32: 4 then 8 heads in the third stage, 8 then 16 in the last)."""
        torch.manual_seed(0)
        model = sdpnet.build(ZOO / "coatnet_nano_rw_224.json", img_size=64, num_classes=10, drop_path=0.1).train()
        tables = {tuple(m.table.shape) for m in model.modules() if isinstance(m, RelPosBias)}
        assert tables == {(7 * 7, 4), (7 * 7, 8), (3 * 3, 8), (3 * 3, 16)}
        logits = model(torch.randn(2, 3, 64, 64))
        assert logits.shape == (2, 10)
        F.cross_entropy(logits, torch.tensor([0, 1])).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, missing
        assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("attn.pos.table"))

    def test_other_resolution_at_run_time(self) -> None:
        """Made for 64 px, the model runs at 96 px (tables resampled) and at 64 px computes as made."""
        model = sdpnet.build(ZOO / "coatnet_nano_rw_224.json", img_size=64, num_classes=10).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 96, 96))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


class TestRelPosBias:
    """The bias of query i and key j is the table's row for their offset, per head."""

    def test_bias_is_the_offset_row(self) -> None:
        """On a 2x3 grid, bias[h, i, j] = table[(dy + 1) * 5 + dx + 2, h], dy, dx = position i - position j."""
        rp = RelPosBias(8, num_heads=2, grid=(2, 3))
        assert rp.table.shape == (3 * 5, 2)
        bias = rp.grid_bias((2, 3))
        assert bias.shape == (2, 6, 6)
        for i in range(6):
            for j in range(6):
                dy, dx = i // 3 - j // 3, i % 3 - j % 3
                torch.testing.assert_close(bias[:, i, j], rp.table[(dy + 1) * 5 + dx + 2])

    def test_other_grid_resamples(self) -> None:
        """On a 3x4 grid the (3x5 offsets) table is resampled bicubically to 5x7 offsets; a constant table stays
        constant, and the index state is not changed."""
        rp = RelPosBias(8, num_heads=3, grid=(2, 3))
        with torch.no_grad():
            rp.table.fill_(0.5)
        bias = rp.grid_bias((3, 4))
        assert bias.shape == (3, 12, 12)
        torch.testing.assert_close(bias, torch.full((3, 12, 12), 0.5))
        assert rp.grid_bias((2, 3)).shape == (3, 6, 6)

    def test_prefix_tokens_get_zero_bias(self) -> None:
        """With 2 prefix tokens the bias over [prefix; 2x3 grid] is zero in the prefix rows and columns and the
        grid's bias elsewhere; q and k pass unchanged; queries of the first 2 tokens only get the first 2 rows."""
        rp = RelPosBias(4, num_heads=2, num_prefix=2, grid=(2, 3))
        with torch.no_grad():
            rp.table.normal_()
        q, k = torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4)
        q2, k2, bias = rp(q, k, (2, 3))
        assert q2 is q and k2 is k and bias.shape == (2, 8, 8)
        assert not bias[:, :2].any() and not bias[:, :, :2].any()
        torch.testing.assert_close(bias[:, 2:, 2:], rp.grid_bias((2, 3)))
        _, _, rows = rp(q[:, :, :2], k, (2, 3))
        assert rows.shape == (2, 2, 8) and not rows.any()

    @pytest.mark.parametrize("grid", [(2, 3), (3, 3)])
    def test_in_enc_attention(self, grid: tuple[int, int]) -> None:
        """ENC's attention with pos=relbias and a class and a register token is softmax(q k^T / sqrt(d) + bias) v
        with the zero-padded grid bias, at the planned grid and (table resampled) at another."""
        torch.manual_seed(0)
        attn = Attention(16, 2, pos="relbias", num_prefix=2, grid=(2, 3)).eval()
        with torch.no_grad():
            attn.pos.table.normal_()
        N = 2 + grid[0] * grid[1]
        x = torch.randn(2, N, 16)
        q, k, v = attn.qkv(x).reshape(2, N, 3, 2, 8).permute(2, 0, 3, 1, 4)  # (B, heads, N, head_dim)
        bias = torch.zeros(2, N, N)
        bias[:, 2:, 2:] = attn.pos.grid_bias(grid)
        w = (q @ k.transpose(-1, -2) / 8 ** 0.5 + bias).softmax(-1)
        want = attn.proj((w @ v).transpose(1, 2).reshape(2, N, 16))
        with torch.no_grad():
            torch.testing.assert_close(attn(x, grid=grid), want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(attn(x, num_queries=2, grid=grid), want[:, :2], atol=1e-5, rtol=1e-5)

    def test_enc_model_trains(self) -> None:
        """ENC(pos=relbias) in a ViT with a class token: the table is sized from the plan's grid (8x8: 15x15
        offsets), gets a gradient in the first block, none in the last (it computes only the class token's
        query, whose bias is zero), is exempt from weight decay, and the model runs at another resolution."""
        torch.manual_seed(0)
        model = sdpnet.build("P4+CLS-ENC(h=2,pos=relbias)x2-TOKS+LIN", dim=16, img_size=32, num_classes=3)
        assert {tuple(m.table.shape) for m in model.modules() if isinstance(m, RelPosBias)} == {(15 * 15, 2)}
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        first, last = model.body[0].attn.pos.table.grad, model.body[1].attn.pos.table.grad
        assert first.abs().sum() > 0 and (last is None or not last.any())
        assert model.no_weight_decay() >= {"body.0.attn.pos.table", "body.1.attn.pos.table"}
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 48, 40)).shape == (1, 3)

    def test_attn_pos_hyperparameter(self) -> None:
        """The attn_pos hyperparameter sets every ENC's scheme to relbias."""
        model = sdpnet.build("P4+CLS-ENCx2-TOKS+LIN", dim=16, img_size=16, num_classes=3, attn_pos="relbias")
        assert sum(isinstance(m, RelPosBias) for m in model.modules()) == 2

    def test_no_weight_decay(self) -> None:
        """The tables are excluded from weight decay, as timm's relative_position_bias_table."""
        model = sdpnet.build("P4-TFM(d=32)x2-GAP+LIN", dim=32, img_size=32)
        assert model.no_weight_decay() == {"body.0.attn.pos.table", "body.1.attn.pos.table"}


class TestBlocks:
    """MBC's and TFM's variants compute what their keywords say."""

    @pytest.mark.parametrize("down", ["dw", "pool", "pw"])
    def test_mbc_strides(self, down: str) -> None:
        """Each stride placement halves the grid and widens 16 -> 24; the shortcut pools and projects."""
        m = MBConvBlock(16, 24, 3, 2, down, "avg", 4.0, False, "silu", False, "bn", 0.25, "silu", False, True).eval()
        assert m(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
        assert m.conv1.out_channels == 64 and m.se.conv_reduce.out_channels == 16  # SE: a quarter of the hidden width
        x = torch.randn(2, 16, 8, 8)
        torch.testing.assert_close(m.shortcut(x), m.shortcut.proj(F.avg_pool2d(x, 2)))

    def test_mbc_expand_output_and_se_placement(self) -> None:
        """rout counts the hidden and SE widths from the output width; early puts the SE before norm2; se=0 removes it."""
        m = MBConvBlock(16, 24, 3, 1, "dw", "avg", 4.0, True, "silu", False, "bn", 0.25, "relu", True, True)
        assert m.conv1.out_channels == make_divisible(96) and m.se_early.conv_reduce.out_channels == 6
        assert isinstance(m.se, nn.Identity)
        plain = MBConvBlock(16, 16, 3, 1, "dw", "avg", 4.0, False, "silu", False, "bn", 0.0, "silu", False, True)
        assert not any("conv_reduce" in n for n, _ in plain.named_parameters())

    def test_tfm_is_attention_then_mlp(self) -> None:
        """TFM(pos=none) at stride 1 is x + proj(softmax(q k^T / sqrt(d)) v), then x + fc2(gelu(fc1(norm2(x))))."""
        m = GridTransformerBlock(16, 16, (3, 3), 1, "avg", 8, False, 2.0, "gelu", "ln", 1e-6, True, True, "none",
                                 0.0, 0.0).eval()
        assert not list(m.attn.pos.parameters())
        x = torch.randn(2, 16, 3, 3)
        qkv = m.attn.qkv(m.norm1(x)).reshape(2, 2, 24, 9)  # per head: q, k, v channels side by side
        q, k, v = qkv[:, :, :8], qkv[:, :, 8:16], qkv[:, :, 16:]
        a = torch.softmax(q.transpose(-1, -2) @ k / 8 ** 0.5, -1)  # (B, heads, N, N)
        y = x + m.attn.proj((v @ a.transpose(-1, -2)).reshape(2, 16, 3, 3))
        want = y + m.fc2(F.gelu(m.fc1(m.norm2(y))))
        torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)

    def test_tfm_stride_and_expand_first(self) -> None:
        """TFM(s=2,d=32) pools before attending (bias sized for the output grid); ef=1 attends at 32 channels."""
        for ef, heads in ((False, 2), (True, 4)):
            m = GridTransformerBlock(16, 32, (8, 6), 2, "max", 8, ef, 4.0, "gelu", "ln", 1e-6, True, False, "relbias",
                                     0.0, 0.0)
            assert m.attn.qkv.out_channels == 3 * 8 * heads and m.attn.pos.table.shape == (7 * 5, heads)
            assert m.shortcut.proj.bias is None
            assert m(torch.randn(2, 16, 8, 6)).shape == (2, 32, 4, 3)

    @pytest.mark.parametrize("pos, scheme", [("relbias", RelPosBias), ("rope", AxialRope), ("none", NoPos)])
    def test_tfm_reads_the_pos_registry(self, pos: str, scheme: type) -> None:
        """TFM(pos=...) takes any registered scheme: it is made for the block's output grid, runs forward and
        backward, and follows another input grid."""
        model = sdpnet.build(f"P4-TFM(d=32,hd=8,pos={pos}),TFM(s=2,pos={pos})-GAP+LIN", dim=16, img_size=32,
                             num_classes=3)
        schemes = [m.attn.pos for m in model.body]
        assert all(type(p) is scheme for p in schemes)
        if pos != "none":
            assert [p.grid for p in schemes] == [(8, 8), (4, 4)]
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 48, 48)).shape == (1, 3)

    def test_tfm_rope_rotates_queries_and_keys(self) -> None:
        """TFM(pos=rope) is the plain attention on rotated queries and keys (all image tokens, no prefix)."""
        torch.manual_seed(0)
        rope = GridTransformerBlock(16, 16, (3, 3), 1, "avg", 8, False, 2.0, "gelu", "ln", 1e-6, True, True, "rope",
                                    0.0, 0.0).eval()
        x = torch.randn(2, 16, 3, 3)
        qkv = rope.attn.qkv(rope.norm1(x)).reshape(2, 2, 24, 9).transpose(-1, -2)
        q, k, v = qkv[..., :8], qkv[..., 8:16], qkv[..., 16:]  # (B, heads, N, head_dim)
        q, k, _ = AxialRope(8, num_heads=2, num_prefix=0, grid=(3, 3))(q, k, (3, 3))
        a = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1)
        y = x + rope.attn.proj((a @ v).transpose(-1, -2).reshape(2, 16, 3, 3))
        with torch.no_grad():
            torch.testing.assert_close(rope(x), y + rope.fc2(F.gelu(rope.fc1(rope.norm2(y)))), atol=1e-5, rtol=1e-5)

    def test_tfm_takes_a_user_scheme(self) -> None:
        """A scheme registered by the user (a fixed distance penalty, in a subprocess so this process's registry
        stays as built) is accepted by TFM's pos= and its bias reaches the logits."""
        script = textwrap.dedent('''
            import torch
            from torch import nn
            import sdpnet
            from sdpnet import register_pos

            @register_pos("dist", doc="minus the grid distance between query and key")
            class Dist(nn.Module):
                def __init__(self, head_dim, *, num_heads, num_prefix, grid):
                    super().__init__()

                def forward(self, q, k, grid):
                    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
                    p = torch.stack([ys.flatten(), xs.flatten()], -1).float()
                    return q, k, -torch.cdist(p, p)

            torch.manual_seed(0)
            dist = sdpnet.build("P4-TFM(pos=dist)-GAP+LIN", dim=16, img_size=16, num_classes=3).eval()
            none = sdpnet.build("P4-TFM(pos=none)-GAP+LIN", dim=16, img_size=16, num_classes=3).eval()
            none.load_state_dict(dist.state_dict())
            x = torch.randn(2, 3, 16, 16)
            assert type(dist.body[0].attn.pos) is Dist
            assert not torch.allclose(dist(x), none(x))
            print("ok")
        ''')
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

    def test_block_eps_reaches_every_norm(self) -> None:
        """A block's eps sets its norm's, BatchNorm and GroupNorm included; unset, each norm keeps its own (BatchNorm
        and gn1 1e-5, LayerNorm 1e-6), also where the block has no eps keyword (MBC's BatchNorm)."""
        model = sdpnet.build("CT3(norm=bn)-MBC-TFM(norm=bn,eps=1e-6)+TFM(norm=gn1,eps=1e-4)+TFM-NORM(norm=bn,eps=1e-3)"
                             "-NORM(norm=gn1)-GAP+LIN(norm=bn)", dim=32, img_size=32, num_classes=3)
        eps = [m.eps for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm,
                                                                  nn.LayerNorm))]
        assert eps == [1e-5] + [1e-5] * 3 + [1e-6] * 2 + [1e-4] * 2 + [1e-6] * 2 + [1e-3, 1e-5, 1e-5]

    def test_tfm_head_width_must_divide(self) -> None:
        """A head width that does not divide the width is a spec error naming hd."""
        with pytest.raises(sdpnet.SpecError, match="hd"):
            sdpnet.build("P4-TFM(hd=24)-GAP+LIN", dim=32, img_size=32)


def test_weights_load_at_another_resolution() -> None:
    """Weights of the zoo spec made for 64 px load into it made for 96 px: every tensor is taken, the relative
    position tables resampled (7x7 -> 11x11 and 3x3 -> 5x5 offsets) as the 64 px model resamples them at run time."""
    from sdpnet.models.weights import adapt_state_dict

    small = sdpnet.build(ZOO / "coatnet_nano_rw_224.json", img_size=64, num_classes=10).eval()
    big = sdpnet.build(ZOO / "coatnet_nano_rw_224.json", img_size=96, num_classes=10).eval()
    state, report = adapt_state_dict(big, small.state_dict())
    assert not report.mismatched and not report.missing and not report.unexpected
    assert {(a[0], b[0]) for _, a, b in report.resampled} == {(49, 121), (9, 25)}
    big.load_state_dict(state)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x))
