"""bf16 autocast on the CPU: ``--training.amp`` resolved, and attention written out for bf16 (``attend``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import sdpnet
from sdpnet.blocks.attention import attend
from sdpnet.train.precision import autocast_on, native_bf16

ZOO = Path(__file__).resolve().parents[1] / "specs" / "zoo"


class TestAutocastRule:
    def test_requests(self):
        """bf16 and off are what they say on every device; auto follows whether bf16 is native there."""
        for device in ("cpu", "cuda"):
            assert autocast_on("bf16", device) and not autocast_on("off", device)
            assert autocast_on("auto", device) == native_bf16(device)
        assert native_bf16("cuda") and not native_bf16("mps")

    def test_cpu_follows_amx(self):
        """auto on the CPU is on exactly with AMX tiles (torch's own probe of the CPU)."""
        assert native_bf16("cpu") == torch.cpu._is_amx_tile_supported()

    def test_bad_request(self):
        with pytest.raises(ValueError, match="expected one of auto, bf16, off"):
            autocast_on("fp16", "cpu")


class TestAttend:
    def _qkv(self, dtype: torch.dtype) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return [torch.randn(4, 3, 49, 16, generator=g).to(dtype).requires_grad_() for _ in range(3)]

    def test_fp32_is_the_fused_kernel(self):
        q, k, v = self._qkv(torch.float32)
        assert torch.equal(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))

    def test_bf16_written_out_matches_fp32(self):
        """bf16 on the CPU: the written-out form gives the fp32 attention, and its gradients, to bf16 precision."""
        q, k, v = self._qkv(torch.bfloat16)
        out = attend(q, k, v)
        assert out.dtype == torch.bfloat16
        q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
        ref = F.scaled_dot_product_attention(q32, k32, v32)
        torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
        out.float().square().sum().backward()
        ref.square().sum().backward()
        for a, b in ((q, q32), (k, k32), (v, v32)):
            torch.testing.assert_close(a.grad.float(), b.grad, atol=0.1, rtol=0.1)

    def test_bf16_dropout(self):
        """Dropout on the attention weights: seeded, and it changes the output."""
        q, k, v = self._qkv(torch.bfloat16)
        torch.manual_seed(1)
        a = attend(q, k, v, 0.5)
        torch.manual_seed(1)
        assert torch.equal(a, attend(q, k, v, 0.5)) and not torch.equal(a, attend(q, k, v))

    @pytest.mark.parametrize("spec, res, atol", [
        ("CONV3(act=relu,d=32),CT3(d=32,norm=bn)-POS-ENC(h=4)x2-GAP+LIN", 28, 0.1),
        # CoAtNet: attention written out with the float32 relative position bias cast to bf16
        (ZOO / "coatnet_nano_rw_224.json", 64, 0.05),
        ("P4(d=32)+CLS-ENC(h=4,pos=relbias)x2-TOKS+LIN", 32, 0.1),
    ])
    def test_encoder_model_under_cpu_autocast(self, spec, res, atol):
        """A hybrid with encoders trains a step under bf16 autocast; its logits are the fp32 ones to bf16 precision."""
        torch.manual_seed(0)
        model = sdpnet.build(spec, num_classes=10, img_size=res).eval()
        x = torch.randn(8, 3, res, res)
        with torch.no_grad():
            ref = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), ref, atol=atol, rtol=0.05)
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), torch.arange(8))
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
