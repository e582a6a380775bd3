"""SpecNet built from specs: forward/backward at several resolutions, token routing, timm-style API,
torch.compile without graph breaks, torch.export, and every spec file in specs/."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import sdpnet
from sdpnet.blocks import DropPath
from sdpnet.models.builder import SpecNet, build, count_params
from sdpnet.spec import SpecError, load_spec, resolve

REPO = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted(REPO.glob("specs/**/*.json"))
TINY = {"dim": 32, "heads": 2, "num_classes": 10, "img_size": 32}


def _loss_step(model: nn.Module, res: int, batch: int = 2) -> torch.Tensor:
    x = torch.randn(batch, 3, res, res)
    y = model(x)
    y.logsumexp(-1).mean().backward()
    return y


class TestCardExample:
    """The design card's example spec builds and trains."""

    def test_card_dim96(self) -> None:
        """P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP at dim 96 runs forward/backward at 64 px, batch 2."""
        torch.manual_seed(0)
        model = sdpnet.build("P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP", dim=96, heads=2)
        assert model.num_cls == 5 and len(model.body) == 17 * 5 + 1
        y = _loss_step(model, 64)
        assert y.shape == (2, 1000) and torch.isfinite(y).all()
        assert model.cls_token.grad.abs().sum() > 0


class TestResolution:
    """Any input size runs; sizes that are not multiples of the stride round as the strided layers do."""

    @pytest.mark.parametrize("arch", ["P4+POS+CLS2-DWC3+MLP,ENC-TOKS+LIN", "P4+NEMB3+REG2-ENC,DWC3-GAP+LIN"])
    def test_two_resolutions(self, arch: str) -> None:
        """A model created for 32 px runs forward/backward at 32 and at 48 px (position tables resampled)."""
        model = build(arch, **TINY)
        for res in (32, 48):
            model.zero_grad()
            assert _loss_step(model, res).shape == (2, 10)

    def test_size_not_a_multiple_of_the_stride(self) -> None:
        """100 px through a patch-16 stem floors to a 6x6 grid, as the strided convolution does (no error)."""
        model = build("P16+CLS1-DWC3,ENC-GAP+LIN", dim=16, heads=2, num_classes=3)
        assert model.stride == 16
        assert model(torch.zeros(1, 3, 100, 100)).shape == (1, 3)
        assert model.forward_features(torch.zeros(1, 3, 100, 100)).shape == (1, 1 + 6 * 6, 16)

    def test_channels_last(self) -> None:
        """A channels_last model and input give the same logits as contiguous ones."""
        torch.manual_seed(0)
        model = build("P4+CLS1-DWC3(norm=ln)+MLP,ENC-TOKS+LIN", **TINY).eval()
        x = torch.randn(2, 3, 32, 32)
        want = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), want, rtol=1e-4, atol=1e-5)

    def test_stride_multiplies(self) -> None:
        """Strides multiply through the stem and DOWN blocks (CT3x2: 4, DOWN2: 8)."""
        model = build("CT3x2-DWC3,DOWN2,ENC-SEQPOOL+LIN(norm=none)", dim=16, heads=2, num_classes=3)
        assert model.stride == 8
        assert model(torch.zeros(2, 3, 24, 40)).shape == (2, 3)


class TestTokens:
    """Class tokens reach the image only through ENC."""

    def test_no_gradient_through_conv_blocks(self) -> None:
        """With no ENC, a loss on the image (GAP head) gives the class tokens no gradient."""
        model = build("P4+CLS2-DWC3+MLP-GAP+LIN", **TINY)
        _loss_step(model, 32)
        assert model.cls_token.grad is None or not model.cls_token.grad.any()

    def test_gradient_through_enc(self) -> None:
        """With an ENC, the same image loss reaches the class and register tokens."""
        model = build("P4+CLS2+REG1-DWC3,ENC-GAP+LIN", **TINY)
        _loss_step(model, 32)
        assert model.cls_token.grad.abs().sum() > 0 and model.reg_token.grad.abs().sum() > 0

    def test_registers_dropped_before_head(self) -> None:
        """TOKS pools the class tokens only: the register tokens' values do not change the pooled features."""
        model = build("P4+CLS2+REG3-ENC-TOKS+LIN", **TINY).eval()
        s = model.forward_features(torch.randn(2, 3, 32, 32))
        assert s.shape == (2, 5 + 8 * 8, 32)  # [2 class tokens, 3 register tokens, 8x8 image tokens]
        f = model.forward_head(s, pre_logits=True)
        s2 = s.clone()
        s2[:, 2:5] = 7.0
        torch.testing.assert_close(model.forward_head(s2, pre_logits=True), f)
        torch.testing.assert_close(f, model.head[-1].norm(s[:, :2].mean(1)))

    def test_down_projects_tokens(self) -> None:
        """DOWN widens the image and the tokens together."""
        model = build("P4+CLS1-ENC,DOWN2(d=48),ENC-TOKS+LIN", dim=32, heads=2, num_classes=4)
        s = model.forward_features(torch.randn(2, 3, 32, 32))
        assert s.shape == (2, 1 + 4 * 4, 48) and model.num_features == 48


class TestModelApi:
    """timm-style attributes and methods."""

    def test_features_head_and_reset(self) -> None:
        """forward_features/forward_head compose to forward; reset_classifier changes the output width."""
        torch.manual_seed(0)
        model = build("P4+CLS1-DWC3,ENC-MLP(h=20)", **TINY).eval()
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.head_hidden_size)
        assert model.head_hidden_size == 32 == model.num_features  # MLP(h=20): its hidden layer is the classifier's
        model.reset_classifier(7)
        assert model(x).shape == (2, 7) and model.num_classes == 7 and model.pretrained_cfg["num_classes"] == 7
        model.reset_classifier(0)
        assert model(x).shape == (2, 32)
        assert model.pretrained_cfg["classifier"] == "head.0.fc" and model.pretrained_cfg["first_conv"] == "stem.0.proj"

    def test_no_weight_decay(self) -> None:
        """Tokens and position tables are excluded from weight decay, by parameter name."""
        model = build("P4+POS+CLS2+REG1-NEMB3,ENC-TOKS+LIN", **TINY)
        names = model.no_weight_decay()
        assert names == {"cls_token", "reg_token", "stem.1.pos_embed", "body.0.table"}
        assert names <= dict(model.named_parameters()).keys()

    def test_drop_path_linear(self) -> None:
        """Drop-path rates grow linearly from 0 to drop_path over the residual body blocks."""
        model = build("P4-DWC3,MLP,ENC,CM3-GAP+LIN", drop_path=0.3, **TINY)
        rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
        assert rates == pytest.approx([0.1, 0.2, 0.2, 0.3])  # DWC 0 is Identity; ENC has two
        assert isinstance(model.body[0].drop_path, nn.Identity)

    def test_deterministic(self) -> None:
        """The same seed gives the same weights."""
        states = []
        for _ in range(2):
            torch.manual_seed(3)
            states.append(build("P4+CLS2-DWC3,ENC-MLP", **TINY).state_dict())
        for k in states[0]:
            assert torch.equal(states[0][k], states[1][k]), k

    def test_deepcopy(self) -> None:
        """copy.deepcopy gives an independent model with equal outputs (timm's ModelEma deep-copies)."""
        torch.manual_seed(0)
        model = build("P4(norm=bn)+POS+CLS2+REG1-NEMB3,ENC,DWC3+MLP-MLP", **TINY).eval()
        twin = copy.deepcopy(model)
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)
        assert twin.plan == model.plan and twin.model_spec == model.model_spec
        with torch.no_grad():
            next(twin.parameters()).add_(1.0)
        assert not torch.equal(twin(x), model(x))

    def test_build_inputs(self, tmp_path: Path) -> None:
        """A spec file path, a spec string, a ModelSpec and a Plan give the same model; overrides win."""
        path = tmp_path / "tiny.json"
        path.write_text(json.dumps({"arch": "P4+CLS1-ENC-TOKS+LIN", **TINY}))
        models = []
        for spec in (str(path), path, load_spec(path), resolve(load_spec(path))):
            torch.manual_seed(0)
            models.append(build(spec))
        counts = {count_params(m) for m in models}
        assert len(counts) == 1
        assert count_params(build(path, dim=64)) > counts.pop()
        assert isinstance(models[0], SpecNet) and models[0].model_spec.hparams["dim"] == 32

    def test_bad_spec(self) -> None:
        """A bad spec raises SpecError before anything is built."""
        with pytest.raises(SpecError):
            build("P16-DWC7-ENC(h=5)-GAP", dim=64)

    def test_reference_param_counts(self) -> None:
        """SdP-Net v1 L has exactly 55,139,856 parameters (built on the meta device)."""
        with torch.device("meta"):
            model = build("P16(norm=bn)+CLS1-CM7x5-ENCx7-MLP(h=1000)", dim=768, heads=12, num_classes=1000)
        assert count_params(model) == 55_139_856
        assert count_params(model.body[0]) == 632_064 and count_params(model.body[5]) == 7_087_872
        assert count_params(model.head) == 1_771_536


class TestEncoderRuns:
    """Runs of encoders stay in sequence form, and a final encoder read through TOKS updates only the class
    tokens in ``forward``: same logits and gradients as the full ``forward_features`` + ``forward_head``."""

    @pytest.mark.parametrize("arch", ["P4+CLS2+REG1-POS(cls=true)+ENCx3-TOKS+LIN",
                                      "P4+CLS3-DWC3+MLP,ENC,DWC3,ENC-TOKS+MLP",
                                      "P4+CLS1-ENC(qkn=1,ls=0.1)-TOKS+LIN",
                                      "P4+CLS2-ENCx2,DWC3-TOKS+LIN",
                                      "P4+CLS2-ENCx2-GAP+LIN"])
    def test_forward_matches_full_features(self, arch: str) -> None:
        torch.manual_seed(0)
        model = build(arch, dim=32, heads=4, num_classes=5, img_size=16).train()
        x = torch.randn(3, 3, 16, 16)
        grads = []
        for run in (model, lambda v: model.forward_head(model.forward_features(v))):
            model.zero_grad(set_to_none=True)
            y = run(x)
            y.square().sum().backward()
            grads.append((y.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
        (y_fast, g_fast), (y_full, g_full) = grads
        torch.testing.assert_close(y_fast, y_full, rtol=1e-5, atol=1e-6)
        # forward_features' one tensor carries the image the pool may not read: its layers get zero gradients
        # there, none in forward
        params = dict(model.named_parameters())
        assert g_fast.keys() <= g_full.keys()
        for name in g_full:
            want = g_fast.get(name, torch.zeros_like(params[name]))
            torch.testing.assert_close(want, g_full[name], rtol=1e-4, atol=1e-6, msg=name)

    def test_runs(self) -> None:
        """Consecutive encoders form one run; every other block is a run of its own."""
        model = build("P4+CLS1-POS,ENCx3,DWC3,ENC,MLP,ENCx2-TOKS+LIN", dim=16, heads=2, img_size=16)
        assert model._runs == [(0, 1), (1, 4), (4, 5), (5, 6), (6, 7), (7, 9)]

    def test_final_encoder_computes_class_tokens_only(self) -> None:
        """With TOKS the last encoder's work shrinks to the class tokens' queries and MLP; with GAP it cannot."""
        from torch.utils.flop_counter import FlopCounterMode

        def flops(fn, x: torch.Tensor) -> int:
            with FlopCounterMode(display=False) as counter:
                fn(x)
            return counter.get_total_flops()

        x = torch.randn(1, 3, 32, 32)
        for head, shrinks in (("TOKS+LIN", True), ("GAP+LIN", False)):
            model = build(f"P4+CLS1-ENCx2-{head}", dim=32, heads=2, img_size=32).eval()
            fast, full = flops(model, x), flops(lambda v: model.forward_head(model.forward_features(v)), x)
            assert (fast < 0.75 * full) if shrinks else (fast == full)


class TestCompileExport:
    """The network traces as one graph."""

    SPEC = "P4+POS+CLS1+REG1-DWC3(act=kelu)+MLP(glu=1),ENC(qkn=1,ls=0.1),ENC-TOKS+LIN"

    def test_compile_fullgraph(self) -> None:
        """torch.compile(fullgraph=True) has no graph break: inductor in eval matches eager; training mode
        (drop-path, dropout) traces forward and backward as one graph too (aot_eager, to keep the test short)."""
        torch.manual_seed(0)
        model = build(self.SPEC, dim=16, heads=2, num_classes=3, img_size=16, drop_path=0.2, dropout=0.1).eval()
        x = torch.randn(2, 3, 16, 16)
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
        model.train()
        torch.compile(model, fullgraph=True, backend="aot_eager")(x).sum().backward()
        assert model.cls_token.grad.abs().sum() > 0

    def test_export(self) -> None:
        """torch.export.export gives a program that matches eager."""
        torch.manual_seed(0)
        model = build(self.SPEC, dim=16, heads=2, num_classes=3, img_size=16).eval()
        x = torch.randn(2, 3, 16, 16)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(REPO)) for p in SPEC_FILES])
def test_spec_file_builds(path: Path) -> None:
    """Every spec file builds at a small width and runs forward + backward at two resolutions."""
    model = build(path, dim=96, heads=2, num_classes=10)
    for k in (2, 3):
        model.zero_grad()
        y = _loss_step(model, k * model.stride)
        assert y.shape == (2, 10) and torch.isfinite(y).all()
