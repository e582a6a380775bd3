"""The built-in blocks: every registered block runs forward/backward and round-trips its state dict; the
block semantics (KeLU, drop-path, LayerScale, norms, embeddings, pooling) match their definitions; ENC and
CM match timm's layers weight for weight."""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sdpnet.blocks  # noqa: F401
from sdpnet.blocks import (
    ConvMixerLayer, ConvMlp, DepthwiseMixer, Downsample, DropPath, EncoderBlock, KeLU, LayerNorm2d, LinearHead,
    MlpHead, NeighbourEmbed, PatchEmbed, PosEmbed, SeqPool, get_act, get_norm2d,
)
from sdpnet.builder import make_block
from sdpnet.registry import get_schema, list_blocks
from sdpnet.spec.plan import LayerPlan
from sdpnet.vocabulary import ACTS, CLASSIFIER_BLOCKS, DECLARATION_BLOCKS, NORMS, POOL_BLOCKS

DIM, CLASSES, TOKENS = 8, 5, 3
CONTEXT = {"num_classes": CLASSES, "grid": (4, 4), "num_tokens": TOKENS, "num_cls": TOKENS}


def _layer(name: str, role: str, **given) -> LayerPlan:
    """A LayerPlan with the schema's defaults, a small main argument and ``given`` keywords."""
    schema = get_schema(name)
    kwargs = {p.target: p.default for p in schema.params_for(role)}
    if schema.arg is not None:
        kwargs[schema.arg] = schema.arg_default or 3
    if "dim" in kwargs:
        kwargs["dim"] = DIM
    if schema.residual and role == "body":
        kwargs["drop_path"] = 0.1
    kwargs.update(given)
    return LayerPlan(name, role, kwargs, DIM, DIM)


def _run(module: nn.Module, name: str, role: str, x: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
    if role == "head" and name in CLASSIFIER_BLOCKS:
        return [module(x.mean((2, 3)))]
    if getattr(module, "uses_tokens", False):
        out = module(x, t)
        return list(out) if isinstance(out, tuple) else [out]
    return [module(x)]


BLOCKS = [(n, r) for n in list_blocks() if n not in DECLARATION_BLOCKS for r in get_schema(n).roles
          if not (n == "MLP" and r == "stem")]


@pytest.mark.parametrize("name,role", BLOCKS, ids=[f"{n}-{r}" for n, r in BLOCKS])
class TestEveryBlock:
    """Every registered block, built from its schema defaults with small dims."""

    def test_forward_backward(self, name: str, role: str) -> None:
        """Output shapes follow out_dim and stride, and every parameter gets a gradient."""
        torch.manual_seed(0)
        module = make_block(_layer(name, role), CONTEXT).train()
        x = torch.randn(2, DIM, 8, 8, requires_grad=True)
        t = torch.randn(2, TOKENS, DIM, requires_grad=True)
        outs = _run(module, name, role, x, t)
        first = outs[0]
        if first.ndim == 4:
            assert first.shape == (2, module.out_dim, 8 // module.stride, 8 // module.stride)
        elif name in POOL_BLOCKS:
            assert first.shape == (2, module.out_dim)
        else:
            assert first.shape == (2, CLASSES)
        sum(o.square().mean() for o in outs).backward()
        for n, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {n}"

    def test_state_dict_round_trip(self, name: str, role: str) -> None:
        """A second instance loading the first's state dict computes the same outputs."""
        torch.manual_seed(0)
        a = make_block(_layer(name, role), CONTEXT)
        for m in a.modules():  # make BN statistics matter
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        torch.manual_seed(1)
        b = make_block(_layer(name, role), CONTEXT)
        b.load_state_dict(a.state_dict())
        a.eval(), b.eval()
        x, t = torch.randn(2, DIM, 8, 8), torch.randn(2, TOKENS, DIM)
        for oa, ob in zip(_run(a, name, role, x, t), _run(b, name, role, x, t)):
            torch.testing.assert_close(oa, ob, rtol=0, atol=0)


class TestKeLU:
    """KeLU(x; a) = 0 below -a, x above a, 0.5 x (1 + x/a + sin(pi x/a)/pi) between."""

    @pytest.mark.parametrize("a", [3.5, 1.0])
    def test_formula(self, a: float) -> None:
        """Matches the piecewise formula at points inside, outside and on the boundary."""
        x = torch.linspace(-3 * a, 3 * a, 2001, dtype=torch.float64)
        want = [0.0 if v < -a else v if v > a else 0.5 * v * (1 + v / a + math.sin(math.pi * v / a) / math.pi)
                for v in x.tolist()]
        torch.testing.assert_close(KeLU(a)(x), torch.tensor(want, dtype=torch.float64))

    def test_continuous_at_boundaries(self) -> None:
        """Value and slope are continuous at +-a (0 and 1 at +a, 0 and 0 at -a)."""
        a, eps = 3.5, 1e-6
        for edge, value, slope in ((a, a, 1.0), (-a, 0.0, 0.0)):
            x = torch.tensor([edge - eps, edge, edge + eps], dtype=torch.float64, requires_grad=True)
            y = KeLU(a)(x)
            torch.testing.assert_close(y.detach(), torch.full((3,), value, dtype=torch.float64) + torch.tensor(
                [-eps, 0, eps], dtype=torch.float64) * slope, atol=1e-9, rtol=0)
            (g,) = torch.autograd.grad(y.sum(), x)
            torch.testing.assert_close(g, torch.full((3,), slope, dtype=torch.float64), atol=1e-5, rtol=0)

    def test_bad_a(self) -> None:
        """a <= 0 is rejected with the value named."""
        with pytest.raises(ValueError, match="a=0"):
            KeLU(0)

    def test_get_act(self) -> None:
        """Every activation name of the vocabulary gives a module; unknown names list the choices."""
        assert isinstance(get_act("kelu"), KeLU) and isinstance(get_act("none"), nn.Identity)
        for name in ACTS:
            assert isinstance(get_act(name), nn.Module)
        with pytest.raises(ValueError, match="gelu, relu, kelu"):
            get_act("swish")


class TestResidualOptions:
    """Drop-path, LayerScale, gating, dropout and norms as keyword variants."""

    def test_drop_path(self) -> None:
        """Eval is the identity; training drops whole samples and rescales the kept ones by 1/keep."""
        torch.manual_seed(0)
        m = DropPath(0.5)
        x = torch.ones(64, 3, 2, 2)
        assert torch.equal(m.eval()(x), x)
        y = m.train()(x)
        per_sample = y.flatten(1)
        assert set(per_sample.unique().tolist()) == {0.0, 2.0}
        assert (per_sample == per_sample[:, :1]).all()
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            DropPath(1.0)

    def test_even_conv_kernel(self) -> None:
        """CONV with an even kernel is rejected (the grid would not be divided by the stride)."""
        with pytest.raises(ValueError, match="must be odd"):
            make_block(_layer("CONV", "body", kernel_size=4), CONTEXT)

    def test_off_options_are_identity(self) -> None:
        """drop_path=0 and layer_scale=0 leave nn.Identity; on, they are DropPath and LayerScale(init)."""
        off = DepthwiseMixer(DIM, 3)
        assert isinstance(off.drop_path, nn.Identity) and isinstance(off.ls, nn.Identity)
        on = DepthwiseMixer(DIM, 3, layer_scale=1e-4, drop_path=0.2)
        assert on.drop_path.drop_prob == 0.2 and torch.equal(on.ls.gamma, torch.full((DIM, 1, 1), 1e-4))
        enc = EncoderBlock(DIM, num_heads=2, layer_scale=1e-5, qk_norm=True)
        assert enc.ls1.gamma.shape == (DIM,) and enc.attn.q_norm.normalized_shape == (DIM // 2,)

    def test_gated(self) -> None:
        """Gated FFNs double fc1's output and compute act(a) * b."""
        mlp = ConvMlp(DIM, mlp_ratio=2, gated=True, norm="none")
        assert mlp.fc1.out_channels == 4 * DIM and mlp.fc2.in_channels == 2 * DIM
        x = torch.randn(2, DIM, 3, 3)
        a, b = mlp.fc1(x).chunk(2, dim=1)
        torch.testing.assert_close(mlp(x), x + mlp.fc2(F.gelu(a) * b))
        enc = EncoderBlock(DIM, num_heads=2, mlp_ratio=2, gated=True)
        assert enc.mlp.fc1.out_features == 4 * DIM and enc.mlp.fc2.in_features == 2 * DIM

    def test_dropout_only_in_enc_ffn(self) -> None:
        """ENC's FFN has the dropout; the body MLP has none (SdP-Net)."""
        enc = EncoderBlock(DIM, num_heads=2, drop=0.2)
        assert enc.mlp.drop1.p == 0.2 and enc.mlp.drop2.p == 0.2
        assert not any(isinstance(m, nn.Dropout) for m in ConvMlp(DIM).modules())

    @pytest.mark.parametrize("norm", NORMS)
    def test_norms(self, norm: str) -> None:
        """Every norm name builds a DWC that runs on a channels_last input."""
        m = DepthwiseMixer(DIM, 3, norm=norm)
        x = torch.randn(2, DIM, 5, 5).to(memory_format=torch.channels_last)
        assert m(x).shape == x.shape

    def test_layernorm2d(self) -> None:
        """LayerNorm2d normalises each pixel over the channels (eps 1e-6)."""
        m = get_norm2d("ln", DIM)
        assert isinstance(m, LayerNorm2d) and m.eps == 1e-6
        x = torch.randn(2, DIM, 3, 4)
        want = F.layer_norm(x.permute(0, 2, 3, 1), (DIM,), eps=1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(m(x), want)


class TestStemsAndHeads:
    """Stems and heads compute what their docstrings say."""

    def test_patch_embed_order(self) -> None:
        """P with act and norm is conv -> act -> norm (ConvMixer's stem)."""
        m = PatchEmbed(3, 4, dim=DIM, act="gelu", norm="bn").eval()
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(m(x), m.norm(F.gelu(m.proj(x))))

    def test_ct_default_stride(self) -> None:
        """CT7 has conv stride 2 (k//2 - 1), padding 3, so a 32 px image gives 8x8."""
        m = make_block(_layer("CT", "stem", kernel_size=7), CONTEXT)
        assert m.conv.stride == (2, 2) and m.conv.padding == (3, 3) and m.stride == 4 and m.conv.bias is None
        assert m(torch.randn(1, DIM, 32, 32)).shape == (1, DIM, 8, 8)

    def test_ct_norm(self) -> None:
        """CT3(norm=bn) is conv -> BatchNorm -> ReLU -> 3x3 max-pool stride 2; the default (CCT) has no norm."""
        assert isinstance(make_block(_layer("CT", "stem"), CONTEXT).norm, nn.Identity)
        m = make_block(_layer("CT", "stem", norm="bn"), CONTEXT).eval()
        x = torch.randn(2, DIM, 8, 8)
        with torch.no_grad():
            m.norm.running_mean.uniform_(-1, 1)
            m.norm.weight.uniform_(0.5, 2)
        torch.testing.assert_close(m(x), F.max_pool2d(F.relu(m.norm(m.conv(x))), 3, 2, 1))
        assert m(x).shape == (2, DIM, 4, 4)

    def test_seqpool(self) -> None:
        """SEQPOOL is the softmax(attention_pool)-weighted mean of the normed image tokens."""
        m = SeqPool(DIM)
        x = torch.randn(2, DIM, 3, 3)
        s = F.layer_norm(x.flatten(2).transpose(1, 2), (DIM,), m.norm.weight, m.norm.bias, eps=1e-5)
        w = torch.softmax(m.attention_pool(s).squeeze(-1), dim=1)
        torch.testing.assert_close(m(x, x.new_zeros(2, 0, DIM)), (w.unsqueeze(-1) * s).sum(1))

    def test_mlp_head_and_reset(self) -> None:
        """The head MLP is LN -> Linear -> tanh -> Linear; reset_classifier swaps the last Linear."""
        m = MlpHead(DIM, CLASSES, hidden=12)
        f = torch.randn(2, DIM)
        torch.testing.assert_close(m(f), m.fc(torch.tanh(m.pre(m.norm(f)))))
        m.reset_classifier(3)
        assert m(f).shape == (2, 3)
        m.reset_classifier(0)
        assert m(f).shape == (2, 12) and m.out_dim == 12
        lin = LinearHead(DIM, CLASSES, norm="none", bias=False)
        lin.reset_classifier(7)
        assert lin.fc.bias is None and lin(f).shape == (2, 7)

    def test_down_without_tokens(self) -> None:
        """DOWN has no token projection when the network has no tokens, and maps (B, 0, C) to (B, 0, out)."""
        m = Downsample(DIM, 2, dim=16, num_tokens=0)
        assert not any(isinstance(c, nn.Linear) for c in m.modules())
        x, t = m(torch.randn(2, DIM, 4, 4), torch.zeros(2, 0, DIM))
        assert x.shape == (2, 16, 2, 2) and t.shape == (2, 0, 16)


class TestEmbeddings:
    """POS and NEMB at the native grid and resampled to another."""

    def test_pos_native_and_resampled(self) -> None:
        """At the native grid the table is added as is; at another grid, bicubic-resampled."""
        m = PosEmbed(DIM, (4, 4))
        x = torch.zeros(1, DIM, 4, 4)
        assert torch.equal(m(x), m.pos_embed.expand_as(x))
        want = F.interpolate(m.pos_embed, size=(6, 5), mode="bicubic", align_corners=False)
        torch.testing.assert_close(m(torch.zeros(1, DIM, 6, 5)), want)

    def test_nemb_is_neighbourhood_mean(self) -> None:
        """Token (i, j) gets the mean of table[i:i+k, j:j+k]; other grids resample the table first."""
        m = NeighbourEmbed(DIM, (4, 4), kernel_size=3)
        assert m.table.shape == (1, DIM, 6, 6)
        y = m(torch.zeros(1, DIM, 4, 4))
        torch.testing.assert_close(y[0, :, 1, 2], m.table[0, :, 1:4, 2:5].mean((1, 2)))
        assert m(torch.zeros(1, DIM, 7, 7)).shape == (1, DIM, 7, 7)


class TestTimmParity:
    """ENC and CM hold timm's layers: timm weights load by name (ENC) or by a fixed map (CM), same outputs."""

    def test_enc_equals_timm_block(self) -> None:
        """ENC over [tokens, image] equals timm's ViT Block over the same sequence."""
        vit = pytest.importorskip("timm.models.vision_transformer")
        torch.manual_seed(0)
        ref = vit.Block(32, 4, qkv_bias=True, qk_norm=True,
                        norm_layer=functools.partial(nn.LayerNorm, eps=1e-6)).eval()
        enc = EncoderBlock(32, num_heads=4, qk_norm=True).eval()
        enc.load_state_dict(ref.state_dict(), strict=True)
        x, t = torch.randn(2, 32, 3, 4), torch.randn(2, 2, 32)
        xo, to = enc(x, t)
        want = ref(torch.cat([t, x.flatten(2).transpose(1, 2)], 1))
        torch.testing.assert_close(torch.cat([to, xo.flatten(2).transpose(1, 2)], 1), want)

    def test_cm_equals_timm_convmixer_block(self) -> None:
        """CM equals a block of timm's ConvMixer with weights mapped 0.fn.0/0.fn.2/1/3."""
        convmixer = pytest.importorskip("timm.models.convmixer")
        torch.manual_seed(0)
        ref = convmixer.ConvMixer(16, 1, kernel_size=5, patch_size=2, num_classes=3).blocks[0]
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
        names = {"0.fn.0": "conv_dw", "0.fn.2": "norm1", "1": "conv_pw", "3": "norm2"}
        sd = {names[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in ref.state_dict().items()}
        cm = ConvMixerLayer(16, 5)
        cm.load_state_dict(sd, strict=True)
        x = torch.randn(2, 16, 6, 6)
        torch.testing.assert_close(cm.eval()(x), ref.eval()(x))
        assert cm.conv_dw.padding == "same"
