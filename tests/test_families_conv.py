"""The convolutional families against timm: ResNet (``BASIC``, ``BOTTLE``), MobileNet and EfficientNet (``DS``,
``IR`` with squeeze-excitation). The zoo specs ``resnet18``, ``resnet50``, ``efficientnet_b0`` and
``mobilenetv3_large_100``, and variants no zoo file holds (written here as spec strings), have timm's parameter
counts, logits (weights copied by ``sdpnet.models.convert``, BatchNorm statistics perturbed) and FLOPs; the blocks'
rules (widths, SE widths, shortcuts, drop-path) are checked against their definitions and against timm."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sdpnet
from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import DropPath
from sdpnet.blocks.layers.helpers import make_divisible
from sdpnet.blocks.layers.se import SqueezeExcite, se_width
from sdpnet.blocks.mbconv import DepthwiseSeparable, InvertedResidual
from sdpnet.blocks.resnet import BasicBlock, Bottleneck
from sdpnet.models.builder import count_params
from sdpnet.models.convert import from_timm
from sdpnet.models.summary import summarize
from timm_parity import assert_same_logits, random_timm_model, timm, timm_flops

ZOO = Path(__file__).resolve().parents[1] / "specs" / "zoo"
NAMED = ("resnet18", "resnet50", "efficientnet_b0", "mobilenetv3_large_100")

_MNV3 = dict(act="hardswish", se_base="mid", se_divisor=8, se_act="relu", se_gate="hardsigmoid")
#: timm models no zoo file holds, written with the same vocabulary: (arch, hyperparameters)
VARIANTS = {
    "resnet34": ("CT7(norm=bn)-BASICx3-BASIC(d=128,s=2)+BASICx3-BASIC(d=256,s=2)+BASICx5-BASIC(d=512,s=2)+BASICx2"
                 "-GAP+LIN(norm=none)", dict(dim=64)),
    "resnet26d": ("CONV3(d=32,s=2)+CONV3(d=32)+CT3(norm=bn)-BOTTLE(d=256)x2-BOTTLE(d=512,s=2)+BOTTLE"
                  "-BOTTLE(d=1024,s=2)+BOTTLE-BOTTLE(d=2048,s=2)+BOTTLE-GAP+LIN(norm=none)",
                  dict(dim=64, act="relu", down="avg")),
    "efficientnet_b1": ("CONV3(s=2)-DS3(d=16)x2-IR3(d=24,s=2)+IR3x2-IR5(d=40,s=2)+IR5x2-IR3(d=80,s=2)+IR3x3"
                        "-IR5(d=112)x4-IR5(d=192,s=2)+IR5x4-IR3(d=320)x2-CONV1(d=1280)-GAP+LIN(norm=none)",
                        dict(dim=32, act="silu", se_ratio=0.25, img_size=240)),
    "mobilenetv3_small_100": ("CONV3(s=2)-DS3(s=2,se=0.25,act=relu)"
                              "-IR3(d=24,s=2,e=4.5,act=relu)+IR3(e=3.67,act=relu)-IR5(d=40,s=2,e=4,se=0.25)+IR5(se=0.25)x2-IR5(d=48,e=3,se=0.25)x2"
                              "-IR5(d=96,s=2,se=0.25)+IR5(se=0.25)x2-CONV1(d=576)-GAP+MLP(h=1024,hact=hardswish,pnorm=none)",
                              dict(dim=16, **_MNV3)),
    "mobilenetv2_100": ("CONV3(s=2)-DS3(d=16)-IR3(d=24,s=2)+IR3-IR3(d=32,s=2)+IR3x2-IR3(d=64,s=2)+IR3x3-IR3(d=96)x3"
                        "-IR3(d=160,s=2)+IR3x2-IR3(d=320)-CONV1(d=1280)-GAP+LIN(norm=none)", dict(dim=32, act="relu6")),
}
MODELS = NAMED + tuple(VARIANTS)
RES = 64  # parity resolution: every model has stride 32


def spec_of(name: str, **overrides) -> sdpnet.spec.files.ModelSpec:
    """The zoo spec file of ``name``, or its spec string from :data:`VARIANTS` with its hyperparameters."""
    if name in VARIANTS:
        arch, hparams = VARIANTS[name]
        return sdpnet.load_spec(arch, **{"num_classes": 1000, **hparams, **overrides})
    return sdpnet.load_spec(ZOO / f"{name}.json", **overrides)


class TestZooSpecs:
    """The four named models are zoo spec files named as timm names them, each one line."""

    @pytest.mark.parametrize("name", NAMED)
    def test_spec_file(self, name: str) -> None:
        """The file's name is timm's and its architecture is one canonical spec string (repeats folded): it
        prints back exactly as written."""
        spec = sdpnet.load_spec(ZOO / f"{name}.json")
        assert spec.hparams["name"] == name and spec.hparams["img_size"] == 224
        written = json.loads((ZOO / f"{name}.json").read_text())["arch"]
        assert str(spec.arch) == written and "\n" not in written

    @pytest.mark.parametrize("name", MODELS)
    def test_parameter_count_equals_timm(self, name: str) -> None:
        """Our build has exactly the parameters of timm's model of the same name (1000 classes)."""
        with torch.device("meta"):
            ours = sdpnet.build(spec_of(name))
            ref = timm.create_model(name, pretrained=False)
        assert count_params(ours) == count_params(ref)


@pytest.mark.parametrize("name", MODELS)
def test_logits_equal_timm(name: str) -> None:
    """timm's weights and BatchNorm statistics copied by from_timm give timm's logits within 1e-4 (eval mode,
    64 px, random weights)."""
    ref = random_timm_model(name, seed=1)
    ours = from_timm(ref, spec_of(name, img_size=RES)).eval()
    assert_same_logits(ours, ref, RES, min_spread=0.05)


@pytest.mark.parametrize("name", MODELS)
def test_flops_equal_timm(name: str) -> None:
    """summarize() at timm's input size counts what FlopCounterMode counts on timm's model (within 0.1%;
    equal in fact)."""
    want, res = timm_flops(name)
    with torch.device("meta"):
        ours = sdpnet.build(spec_of(name)).eval()
    assert ours.plan.img_size == res
    got = summarize(ours, res)["flops"]
    assert abs(got - want) <= 1e-3 * want and got == want


class TestTraining:
    """Each named model trains at a small size with stochastic depth on."""

    @pytest.mark.parametrize("name", NAMED)
    def test_forward_backward_with_drop_path(self, name: str) -> None:
        """At 32 px, 10 classes, drop_path 0.2 in train mode: finite logits, a gradient for every parameter, and
        BatchNorm statistics updated."""
        torch.manual_seed(0)
        model = sdpnet.build(spec_of(name, num_classes=10, img_size=32, drop_path=0.2)).train()
        assert any(isinstance(m, DropPath) for m in model.modules())
        bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        before = bn.running_mean.clone()
        logits = model(torch.randn(4, 3, 32, 32))
        assert logits.shape == (4, 10) and torch.isfinite(logits).all()
        F.cross_entropy(logits, torch.arange(4)).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{name}: no gradient for {missing}"
        assert not torch.equal(bn.running_mean, before)

    @pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "mobilenetv3_large_100"])
    def test_drop_path_rates_follow_timm(self, name: str) -> None:
        """Each block with a shortcut drops its branch at timm's rate for the same model. ResNet's rule is the
        builder's (rate x i / (n - 1) over the n residual blocks); timm's EfficientNet builder gives rate x i / n
        over the n blocks of its stages, which is the builder's rule at rate x (m - 1) / n for the m residual
        blocks that come first (MobileNetV3's final 1x1 conv is a block there, a CONV here)."""
        rate = 0.2
        with torch.device("meta"):
            ref = timm.create_model(name, pretrained=False, drop_path_rate=rate)
        blocks = [b for b in ref.modules() if hasattr(b, "has_skip")]  # EfficientNet's builder's blocks
        spec = spec_of(name)
        m = sum(1 for layer in sdpnet.spec.resolve(spec).layers if "drop_path" in layer.kwargs)
        ours = sdpnet.build(spec, drop_path=rate * (m - 1) / len(blocks) if blocks else rate)

        def rates(model: nn.Module) -> list[float]:
            return [round(d.drop_prob, 9) for b in model.modules() if getattr(b, "has_skip", True)
                    for d in b.children() if type(d).__name__ == "DropPath"]

        assert rates(ours) == rates(ref) and len(rates(ref)) > 5


class TestBlocks:
    """The blocks compute what their docs say."""

    def test_make_divisible(self) -> None:
        """timm's rounding: nearest multiple of 8, at least 8, up one step when rounding lost over 10%."""
        assert [make_divisible(v) for v in (16 * 4.5, 24 * 3.67, 12, 3, 80 * 2.3, 100)] == [72, 88, 16, 8, 184, 104]
        assert make_divisible(10, 4) == 12 and make_divisible(36.4, 1) == 36

    def test_se_width_rules(self) -> None:
        """EfficientNet's SE width follows the block's input (round(mid * se / e)); MobileNetV3's is a multiple of
        8 of the expanded width, with ReLU and a hard-sigmoid gate."""
        eff = InvertedResidual(40, 5, dim=80, exp_ratio=6.0, se_ratio=0.25, se_act="silu")
        assert eff.conv_pw.out_channels == 240 and eff.se.conv_reduce.out_channels == 10
        assert isinstance(eff.se.act, nn.SiLU) and isinstance(eff.se.gate, nn.Sigmoid)
        mnv3 = InvertedResidual(40, 5, dim=40, exp_ratio=3.0, se_ratio=0.25, se_base="mid", se_divisor=8,
                                se_act="relu", se_gate="hardsigmoid")
        assert mnv3.se.conv_reduce.out_channels == make_divisible(120 * 0.25) == 32
        assert isinstance(mnv3.se.act, nn.ReLU) and isinstance(mnv3.se.gate, nn.Hardsigmoid)
        assert se_width(96, 0.25 / 6) == 4 and se_width(10, 0.25) == 2  # Python's round: 2.5 -> 2
        assert isinstance(InvertedResidual(8, 3, dim=8, se_act="relu").se, nn.Identity)

    def test_se_act_defaults_to_the_blocks(self) -> None:
        """In a spec, the SE's activation is the block's unless seact= (or se_act) says otherwise."""
        model = sdpnet.build("CONV3(d=16)-IR3(se=0.25,act=silu)+IR3(se=0.25,act=silu,seact=relu)-GAP+LIN",
                             img_size=16)
        assert isinstance(model.body[0].se.act, nn.SiLU) and isinstance(model.body[1].se.act, nn.ReLU)

    def test_squeeze_excite(self) -> None:
        """SE multiplies each channel by gate(expand(act(reduce(mean over H, W))))."""
        se = SqueezeExcite(8, 2, act="relu", gate="hardsigmoid").eval()
        x = torch.randn(2, 8, 5, 5)
        s = se.conv_expand(F.relu(se.conv_reduce(x.mean((2, 3), keepdim=True))))
        torch.testing.assert_close(se(x), x * F.hardsigmoid(s))

    def test_inverted_residual(self) -> None:
        """IR is bn3(pwl(act(bn2(dw(act(bn1(pw(x)))))))) plus x when the shape is kept and skip is on."""
        m = InvertedResidual(16, 5, dim=16, exp_ratio=4.0, act="hardswish", se_act="relu").eval()
        x = torch.randn(2, 16, 7, 7)
        y = m.bn3(m.conv_pwl(F.hardswish(m.bn2(m.conv_dw(F.hardswish(m.bn1(m.conv_pw(x))))))))
        assert m.conv_dw.groups == 64 and m.conv_dw.padding == (2, 2)
        torch.testing.assert_close(m(x), x + y)
        no_skip = InvertedResidual(16, 5, dim=16, skip=False, se_act="relu").eval()
        strided = InvertedResidual(16, 3, dim=16, stride=2, se_act="relu").eval()
        assert not no_skip.has_skip and not strided.has_skip and strided(x).shape == (2, 16, 4, 4)

    def test_depthwise_separable(self) -> None:
        """DS is bn2(pw(act(bn1(dw(x))))) (act after bn2 with pw_act), plus x when the shape is kept."""
        m = DepthwiseSeparable(8, 3, dim=8, act="relu6", se_act="relu").eval()
        x = torch.randn(2, 8, 6, 6)
        torch.testing.assert_close(m(x), x + m.bn2(m.conv_pw(F.relu6(m.bn1(m.conv_dw(x))))))
        wide = DepthwiseSeparable(8, 3, dim=16, act="relu", pw_act=True, se_act="relu").eval()
        assert not wide.has_skip and (wide(x) >= 0).all()

    def test_basic_block_shortcuts(self) -> None:
        """BASIC keeps the identity shortcut when nothing changes; a new width or stride gets a strided 1x1
        conv + BN, or with down=avg a 2x2 average pool (ceil mode, padding not counted) then a 1x1 conv + BN."""
        x = torch.randn(2, 8, 7, 7)
        same = BasicBlock(8, 8).eval()
        assert isinstance(same.downsample, nn.Identity)
        y = same.bn2(same.conv2(F.relu(same.bn1(same.conv1(x)))))
        torch.testing.assert_close(same(x), F.relu(y + x))
        conv = BasicBlock(8, 16, stride=2).eval()
        assert conv.downsample[1].stride == (2, 2) and isinstance(conv.downsample[2], nn.BatchNorm2d)
        avg = BasicBlock(8, 16, stride=2, down="avg").eval()
        pool = avg.downsample[0]
        assert isinstance(pool, nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
        assert avg.downsample[1].stride == (1, 1)
        assert conv(x).shape == avg(x).shape == (2, 16, 4, 4)  # a 7x7 grid rounds up, as the 3x3 conv does

    def test_bottleneck_widths(self) -> None:
        """BOTTLE's 3x3 runs at r x the output width and is the strided conv."""
        m = Bottleneck(64, 256, stride=2)
        assert (m.conv1.out_channels, m.conv2.stride, m.conv3.out_channels) == (64, (2, 2), 256)
        assert Bottleneck(64, 256, mid_ratio=0.5).conv2.in_channels == 128

    def test_new_activations(self) -> None:
        """relu6, hardswish, hardsigmoid and sigmoid are the PyTorch functions of those names."""
        x = torch.linspace(-8, 8, 33)
        for name, fn in (("relu6", F.relu6), ("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid),
                         ("sigmoid", torch.sigmoid)):
            torch.testing.assert_close(get_act(name)(x), fn(x))

    def test_head_without_feature_norm(self) -> None:
        """The head MLP with pnorm=none is MobileNetV3's head: fc(act(pre(pooled features)))."""
        head = sdpnet.build("CONV3(d=8)-GAP+MLP(h=16,hact=hardswish,pnorm=none)", num_classes=3, img_size=8).head[0]
        f = torch.randn(2, 8)
        assert isinstance(head.norm, nn.Identity)
        torch.testing.assert_close(head(f), head.fc(F.hardswish(head.pre(f))))

    def test_stride_in_the_plan(self) -> None:
        """s= divides the planned grid and d= sets the width, as the modules do (the build-time probe agrees)."""
        model = sdpnet.build("CT7(norm=bn)-BOTTLE(d=32,s=2)-IR5(d=24,s=2,e=4)-DS3(d=16,s=2)-GAP+LIN", dim=16,
                             img_size=64)
        assert [(layer.out_dim, layer.stride) for layer in model.plan.layers if layer.role == "body"] == \
            [(32, 2), (24, 2), (16, 2)]
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 16, 2, 2) and model.stride == 32
