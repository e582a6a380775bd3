"""Unit tests of the training pieces in sdpnet/train (no data, no training run)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from sdpnet.train import (BatchAugment, Meter, MixCut, ModelEma, load_checkpoint, lr_at, make_criterion,
                          res_at, rng_state, save_checkpoint, scaled_lr, set_rng_state, soft_targets,
                          topk_correct)


class TestLrSchedule:
    KW = dict(peak_lr=1e-3, steps_per_epoch=10, warmup_epochs=5, eta_min=1e-6)

    def test_linear_scaling_rule(self):
        """lr = 0.001 x global batch / 512: batch 1024 gives 0.002, 960 gives the seed's 0.001875."""
        assert scaled_lr(0.001, 1024) == pytest.approx(0.002)
        assert scaled_lr(0.001, 960) == pytest.approx(0.001875)

    def test_warmup_ramps_to_the_cosine(self):
        """Step 0 is 1/W of the target, step W-1 reaches the cosine's value at step W, monotonically."""
        kw = dict(self.KW, t0_epochs=100)
        w = 50
        target = 1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * w / 1000))
        assert lr_at(0, **kw) == pytest.approx(target / w)
        assert lr_at(w - 1, **kw) == pytest.approx(target)
        assert lr_at(w, **kw) == pytest.approx(target)
        ramp = [lr_at(s, **kw) for s in range(w)]
        assert all(a < b for a, b in zip(ramp, ramp[1:]))

    def test_plain_cosine_when_t0_is_all_epochs(self):
        """t0 = epochs: half the peak (above eta_min) at the middle, eta_min at the end, never a restart."""
        kw = dict(self.KW, t0_epochs=100)
        assert lr_at(500, **kw) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
        assert lr_at(999, **kw) == pytest.approx(1e-6, abs=1e-8)
        after = [lr_at(s, **kw) for s in range(50, 1000)]
        assert all(a >= b for a, b in zip(after, after[1:]))

    def test_warm_restarts(self):
        """T_0=20 epochs, T_mult=2: restarts to the peak at epochs 20 and 60, the minimum just before."""
        kw = dict(self.KW, t0_epochs=20, t_mult=2)
        assert lr_at(199, **kw) < 2e-6
        assert lr_at(200, **kw) == pytest.approx(1e-3)
        assert lr_at(200 + 200, **kw) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)  # middle of cycle 2
        assert lr_at(599, **kw) < 2e-6
        assert lr_at(600, **kw) == pytest.approx(1e-3)

    def test_restarts_with_t_mult_one(self):
        """T_mult=1: identical cycles."""
        kw = dict(self.KW, t0_epochs=10, t_mult=1)
        assert lr_at(100, **kw) == pytest.approx(1e-3)
        assert lr_at(150, **kw) == pytest.approx(lr_at(250, **kw))


class TestResolution:
    KW = dict(min_res=160, max_res=192, start_ramp=10, end_ramp=20)

    @pytest.mark.parametrize("epoch,stride,expected", [
        (0, 16, 160), (10, 16, 160), (15, 1, 176), (15, 16, 176), (16, 16, 176), (17, 16, 176),
        (19, 32, 160), (20, 16, 192), (99, 16, 192), (12, 14, 154), (20, 14, 182)])
    def test_ramp_rounded_down_to_stride(self, epoch, stride, expected):
        """Linear between the ramp epochs, flat outside, rounded down to a multiple of the stride."""
        assert res_at(epoch, stride=stride, **self.KW) == expected

    def test_bad_ranges(self):
        """min_res above max_res is refused with both values in the message."""
        with pytest.raises(ValueError, match="160"):
            res_at(0, min_res=192, max_res=160, start_ramp=0, end_ramp=1)


class TestEma:
    def _model(self):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))

    def test_update_is_a_lerp(self):
        """After one update each EMA parameter is d*old + (1-d)*new and buffers are copied."""
        model = self._model()
        ema = ModelEma(model, decay=0.9)
        old = [p.clone() for p in ema.module.parameters()]
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model.train()(torch.randn(16, 4))  # moves BN running stats
        ema.update(model, step=1000)
        for o, e, p in zip(old, ema.module.parameters(), model.parameters()):
            torch.testing.assert_close(e, 0.9 * o + 0.1 * p)
        for e, b in zip(ema.module.buffers(), model.buffers()):
            torch.testing.assert_close(e, b)
        assert not any(p.requires_grad for p in ema.module.parameters())

    def test_warmup_decay(self):
        """With warm-up the decay is (1+t)/(10+t) until it reaches the set decay."""
        ema = ModelEma(self._model(), decay=0.999, warmup=True)
        assert ema.decay_at(0) == pytest.approx(0.1)
        assert ema.decay_at(90) == pytest.approx(0.91)
        assert ema.decay_at(10 ** 6) == 0.999
        assert ModelEma(self._model(), decay=0.999).decay_at(0) == 0.999


class TestMixing:
    @pytest.mark.parametrize("mixup,cutmix", [(0.8, 1.0), (0.8, 0.0), (0.0, 1.0), (0.0, 0.0)])
    def test_label_mass_sums_to_one(self, mixup, cutmix):
        """Soft targets are non-negative and every row sums to 1, whichever mixing ran."""
        torch.manual_seed(0)
        mix = MixCut(10, mixup_alpha=mixup, cutmix_alpha=cutmix, smoothing=0.1)
        x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
        for _ in range(20):
            xm, t = mix(x, y)
            assert xm.shape == x.shape and t.shape == (16, 10)
            assert (t >= 0).all()
            torch.testing.assert_close(t.sum(1), torch.ones(16))

    def test_cutmix_target_matches_pasted_area(self):
        """CutMix target weight of the partner equals the fraction of pixels taken from it."""
        torch.manual_seed(1)
        mix = MixCut(4, mixup_alpha=0.0, cutmix_alpha=1.0, smoothing=0.0)
        x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 32, 32).contiguous()
        y = torch.arange(4)
        for _ in range(10):
            xm, t = mix(x, y)
            partner = (xm[0] == 3.0).float().mean()  # image 0 is mixed with image 3 (flip)
            assert t[0, 3] == pytest.approx(float(partner))
            assert t[0, 0] == pytest.approx(1 - float(partner))

    def test_no_mixing_is_smoothed_one_hot(self):
        """Both alphas 0: images untouched, targets 0.9 + 0.1/C on the label."""
        mix = MixCut(10, mixup_alpha=0.0, cutmix_alpha=0.0, smoothing=0.1)
        x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 3, 9, 3])
        xm, t = mix(x, y)
        assert xm is x
        torch.testing.assert_close(t, soft_targets(y, 10, 0.1))
        assert t[1, 3] == pytest.approx(0.91) and t[1, 0] == pytest.approx(0.01)


class TestLoss:
    def test_soft_ce_equals_torch_cross_entropy(self):
        """Cross-entropy on smoothed one-hot targets equals F.cross_entropy(label_smoothing=0.1)."""
        logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
        ce = make_criterion(bce=False)(logits, soft_targets(y, 10, 0.1))
        torch.testing.assert_close(ce, nn.functional.cross_entropy(logits, y, label_smoothing=0.1))

    def test_bce(self):
        """The BCE option is per-class binary cross-entropy on the soft targets."""
        logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
        t = soft_targets(y, 10, 0.0)
        torch.testing.assert_close(make_criterion(bce=True)(logits, t),
                                   nn.functional.binary_cross_entropy_with_logits(logits, t))


class TestMetrics:
    def test_topk_correct(self):
        """Counts of labels in the top-1 and top-2 logits."""
        logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
        y = torch.tensor([0, 2, 0])
        torch.testing.assert_close(topk_correct(logits, y, (1, 2, 5)), torch.tensor([1.0, 2.0, 3.0]))

    def test_meter_means(self):
        """Meter returns sums divided by the count, accumulated from device tensors."""
        m = Meter(("loss", "top1"), torch.device("cpu"))
        m.add(4, loss=torch.tensor(8.0), top1=torch.tensor(3.0))
        m.add(6, loss=torch.tensor(2.0), top1=torch.tensor(6.0))
        assert m.read() == {"loss": 1.0, "top1": 0.9, "count": 10.0}
        m.reset()
        assert m.read()["count"] == 0


class TestAugment:
    def test_per_image_and_shape(self):
        """RandAugment + erasing keep shape and layout, change images, and differ between identical images."""
        torch.manual_seed(0)
        mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
        aug = BatchAugment(mean, std, randaug_n=2, randaug_m=9, erase_p=0.25)
        x = torch.rand(1, 3, 32, 32).expand(64, 3, 32, 32)
        x = ((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        x = x.contiguous(memory_format=torch.channels_last)
        out = aug(x)
        assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
        distinct = {tuple(o.flatten()[:200].tolist()) for o in out}
        assert len(distinct) > 16  # identical inputs, per-image draws
        assert torch.isfinite(out).all()

    def test_off_is_identity(self):
        """n=0 and p=0 leave the batch as it is."""
        aug = BatchAugment((0.5,) * 3, (0.25,) * 3, randaug_n=0, erase_p=0.0)
        x = torch.randn(4, 3, 8, 8)
        torch.testing.assert_close(aug(x), x)

    def test_bad_values(self):
        """Out-of-range magnitude or probability is refused with the value in the message."""
        with pytest.raises(ValueError, match="30"):
            BatchAugment((0.5,) * 3, (0.25,) * 3, randaug_n=2, randaug_m=31)
        with pytest.raises(ValueError, match="1.5"):
            BatchAugment((0.5,) * 3, (0.25,) * 3, erase_p=1.5)


class TestCheckpoint:
    def test_rng_round_trip(self, tmp_path):
        """Saved RNG states reload with weights_only and replay torch, numpy and Python draws."""
        np.random.randn()  # populate numpy's cached gaussian state
        save_checkpoint(tmp_path / "ck.pt", {"rng": rng_state(), "epoch": 3})
        first = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
        state = load_checkpoint(tmp_path / "ck.pt")
        set_rng_state(state["rng"])
        second = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
        torch.testing.assert_close(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])
        assert first[2:] == second[2:] and state["epoch"] == 3
        assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind
