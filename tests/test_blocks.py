"""The built-in blocks: every registered block runs forward/backward and round-trips its state dict; the
block semantics (KeLU, drop-path, LayerScale, norms, embeddings, pooling) match their definitions; ENC and
CM match timm's layers weight for weight."""
from __future__ import annotations

import dataclasses
import functools
import inspect
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
from sdpnet.models.builder import build, make_block
from sdpnet.registry import Derived, get_block, get_schema, list_blocks
from sdpnet.spec import SpecError, load_spec, resolve
from sdpnet.spec.plan import LayerPlan
from sdpnet.vocabulary import ACTS, NORMS

DIM, CLASSES, TOKENS, RES = 8, 5, 3, 8


def _spec(name: str, role: str, arg: int | None) -> str:
    """A small spec in which block ``name`` stands in ``role`` (with 3 class tokens for token-aware blocks)."""
    block = name + ("" if arg is None else str(arg))
    if role == "stem":
        return f"{block}-GAP+LIN" if get_schema(name).tokenizer else f"P1+{block}-GAP+LIN"
    if role == "body":
        return f"P1+CLS{TOKENS}-{block}-GAP+LIN"
    return f"P1+CLS{TOKENS}-{block}+LIN" if get_schema(name).kind_in("head") == "pool" else f"P1+CLS{TOKENS}-TOKS+{block}"


def _layer(name: str, role: str, **given) -> LayerPlan:
    """The plan of block ``name`` in ``role``, resolved from a small spec at width 8, 8 px, 5 classes, with its
    schema defaults (a small main argument if required) and ``given`` constructor keywords."""
    schema = get_schema(name)
    arg = 3 if schema.arg_required else None
    plan = resolve(load_spec(_spec(name, role, arg), dim=DIM, img_size=RES, num_classes=CLASSES))
    layer = next(layer for layer in plan.layers if layer.name == name and layer.role == role)
    return dataclasses.replace(layer, kwargs={**layer.kwargs, **given})


def _inputs(layer: LayerPlan) -> tuple[torch.Tensor, ...]:
    """Random inputs in the calling convention of the layer's kind."""
    x = torch.randn(2, layer.in_dim, *layer.grid, requires_grad=True)
    t = torch.randn(2, TOKENS, layer.in_dim, requires_grad=True)
    if layer.kind == "classifier":
        return (torch.randn(2, layer.in_dim, requires_grad=True),)
    if layer.kind == "sequence":
        return (torch.cat([t, x.flatten(2).transpose(1, 2)], 1),)
    if layer.kind in ("tokens", "pool"):
        return x, t
    return (x,)


def _expected(layer: LayerPlan) -> list[tuple[int, ...]]:
    """The output shapes the plan promises for the layer."""
    grid = tuple(g // layer.stride for g in layer.grid)
    return {
        "layer": [(2, layer.out_dim, *grid)],
        "tokens": [(2, layer.out_dim, *grid), (2, TOKENS, layer.out_dim)],
        "sequence": [(2, TOKENS + layer.grid[0] * layer.grid[1], layer.out_dim)],
        "pool": [(2, layer.out_dim)],
        "classifier": [(2, CLASSES)],
    }[layer.kind]


def _outputs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    out = module(*inputs)
    return list(out) if isinstance(out, tuple) else [out]


BLOCKS = [(n, r) for n in list_blocks() for r in get_schema(n).roles if get_schema(n).kind_in(r) != "declaration"]


@pytest.mark.parametrize("name,role", BLOCKS, ids=[f"{n}-{r}" for n, r in BLOCKS])
class TestEveryBlock:
    """Every registered block (built-in or not), built from a resolved plan with small dims."""

    def test_forward_backward(self, name: str, role: str) -> None:
        """Output shapes are what the plan says (width, grid, kind), and every parameter gets a gradient."""
        torch.manual_seed(0)
        layer = _layer(name, role)
        module = make_block(layer).train()
        outs = _outputs(module, _inputs(layer))
        assert [tuple(o.shape) for o in outs] == _expected(layer)
        sum(o.square().mean() for o in outs).backward()
        for n, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {n}"

    def test_state_dict_round_trip(self, name: str, role: str) -> None:
        """A second instance loading the first's state dict computes the same outputs."""
        torch.manual_seed(0)
        layer = _layer(name, role)
        a = make_block(layer)
        for m in a.modules():  # make BN statistics matter
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        torch.manual_seed(1)
        b = make_block(layer)
        b.load_state_dict(a.state_dict())
        a.eval(), b.eval()
        inputs = _inputs(layer)
        for oa, ob in zip(_outputs(a, inputs), _outputs(b, inputs)):
            torch.testing.assert_close(oa, ob, rtol=0, atol=0)

    def test_compiles_without_graph_breaks(self, name: str, role: str) -> None:
        """``torch.compile(fullgraph=True)`` traces the block in one graph (eager backend: no codegen cost)."""
        layer = _layer(name, role)
        module = make_block(layer).eval()
        inputs = tuple(i.detach() for i in _inputs(layer))
        torch._dynamo.reset()
        compiled = torch.compile(module, fullgraph=True, backend="eager")
        for want, got in zip(_outputs(module, inputs), _outputs(compiled, inputs)):
            torch.testing.assert_close(got, want)

    def test_schema_defaults_are_the_constructor_defaults(self, name: str, role: str) -> None:
        """Defaults live in one place: where the constructor has a default it equals the schema's; a derived
        default (or the width the resolver sets) has none in the constructor."""
        schema = get_schema(name)
        accepted = inspect.signature(get_block(name, role)).parameters
        width_target = schema.param(schema.width.key).target if schema.width.key else None
        for p in schema.params_for(role):
            ctor = accepted[p.target].default
            if isinstance(p.default, Derived) or p.target == width_target:
                assert ctor is inspect.Parameter.empty, f"{name}.{p.target}: the constructor repeats a default"
            elif ctor is not inspect.Parameter.empty:
                assert ctor == p.default and type(ctor) is type(p.default), f"{name}.{p.target}: {ctor!r} != {p.default!r}"


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

    @pytest.mark.parametrize("text", ["P4-CONV4", "P4-DWC2", "P4-DWC4"])
    def test_even_conv_kernel(self, text: str) -> None:
        """CONV and DWC with an even kernel are refused by the parser (padding k // 2 would change the grid)."""
        with pytest.raises(SpecError, match="must be odd"):
            load_spec(text)

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

    def test_drop_block(self) -> None:
        """DROP(p=...) zeroes about p of the image-token elements in training and rescales the rest by 1/(1-p);
        eval is the identity, in a whole model too; p must be in [0, 1)."""
        torch.manual_seed(0)
        layer = _layer("DROP", "body", p=0.3)
        m = make_block(layer)
        x = torch.ones(64, layer.in_dim, 4, 4)
        assert torch.equal(m.eval()(x), x)
        y = m.train()(x)
        kept = y[y != 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.7))
        assert abs((y == 0).float().mean().item() - 0.3) < 0.03
        net = build("P2+CLS2-DROP(p=0.5)-ENC-TOKS+LIN", dim=DIM, img_size=RES, num_classes=CLASSES)
        img = torch.randn(4, 3, RES, RES)
        assert torch.equal(net.eval()(img), net(img))
        assert not torch.equal(net.train()(img), net.eval()(img))
        with pytest.raises(SpecError, match=r"must be < 1"):
            load_spec("P4-DROP(p=1.0)-GAP+LIN")

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
        layer = resolve(load_spec("CT7-GAP+LIN", dim=DIM)).layers[0]
        m = make_block(layer)
        assert m.conv.stride == (2, 2) and m.conv.padding == (3, 3) and layer.stride == 4 and m.conv.bias is None
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, DIM, 8, 8)

    def test_ct_norm(self) -> None:
        """CT3(norm=bn) is conv -> BatchNorm -> ReLU -> 3x3 max-pool stride 2; the default (CCT) has no norm."""
        assert isinstance(make_block(_layer("CT", "stem")).norm, nn.Identity)
        m = make_block(_layer("CT", "stem", norm="bn")).eval()
        x = torch.randn(2, 3, 8, 8)
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
        """The head MLP is LN -> Linear -> tanh -> Linear; reset_classifier swaps the last Linear and keeps the
        hidden one; 0 classes drop both (the output is the normed features, pre_logits), more make both anew."""
        m = MlpHead(DIM, CLASSES, hidden=12)
        f = torch.randn(2, DIM)
        torch.testing.assert_close(m(f), m.fc(torch.tanh(m.pre(m.norm(f)))))
        pre = m.pre
        m.reset_classifier(3)
        assert m(f).shape == (2, 3) and m.pre is pre
        m.reset_classifier(0)
        assert m(f).shape == (2, DIM) and not list(m.pre.parameters())
        torch.testing.assert_close(m(f), m.pre_logits(f))
        m.reset_classifier(4)
        assert m(f).shape == (2, 4) and m.pre.weight.shape == (12, DIM)
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
        s = torch.cat([t, x.flatten(2).transpose(1, 2)], 1)
        torch.testing.assert_close(enc(s), ref(s))

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
