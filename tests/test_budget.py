"""Time budgets: the lr schedule laid over the training time available (progress = time spent / budget)."""
from __future__ import annotations

import math

import pytest

from sdpnet.train.schedule import TimeBudget, lr_at, lr_at_progress

KW = dict(peak_lr=3e-3, warmup_epochs=0.5, t0_epochs=5, eta_min=1e-5)


class TestLaidSchedule:
    def test_same_curve_as_the_epoch_schedule(self):
        """At progress p the lr is the epoch schedule's at step p x epochs x steps_per_epoch."""
        for p in (0.0, 0.05, 0.1, 0.37, 0.5, 0.99):
            assert lr_at_progress(p, epochs=5, steps_per_epoch=100, **KW) == pytest.approx(lr_at(math.floor(p * 500), steps_per_epoch=100, **KW))

    def test_shape_does_not_depend_on_speed(self):
        """A fast and a slow design see the same lr at the same share of the budget, whatever their step counts."""
        for p in (0.3, 0.55, 0.8):
            fast = lr_at_progress(p, epochs=5, steps_per_epoch=400, **KW)
            slow = lr_at_progress(p, epochs=5, steps_per_epoch=40, **KW)
            assert fast == pytest.approx(slow, rel=0.05)

    def test_warmup_share_and_end(self):
        """Warm-up takes warmup_epochs / epochs of the budget; the cosine reaches eta_min when the time is up."""
        peak_at = lr_at_progress(0.1, epochs=5, steps_per_epoch=100, **KW)
        assert lr_at_progress(0.05, epochs=5, steps_per_epoch=100, **KW) < peak_at
        assert peak_at == pytest.approx(max(lr_at_progress(i / 1000, epochs=5, steps_per_epoch=100, **KW)
                                            for i in range(1000)))
        end = lr_at(499, steps_per_epoch=100, **KW)   # the last step of the 500-step schedule
        assert end == pytest.approx(KW["eta_min"], rel=0.01)
        assert lr_at_progress(1.0, epochs=5, steps_per_epoch=100, **KW) == end
        assert lr_at_progress(1.7, epochs=5, steps_per_epoch=100, **KW) == end


class TestTimeBudget:
    def clock(self, times):
        it = iter(times)
        return lambda: next(it)

    def test_counts_steps_not_the_first_nor_evaluation(self):
        """The first step (compilation) and the time between pause and resume are not spent."""
        b = TimeBudget(10, clock=self.clock([0, 5, 6, 7, 100, 101, 103]))
        b.resume()          # t=0
        b.tick()            # t=5: first step, excluded
        b.tick()            # t=6: +1
        b.pause()           # t=7: +1 (end of epoch, the last sync)
        b.resume()          # t=100 after evaluation
        b.tick()            # t=101: +1
        b.tick()            # t=103: +2
        assert b.spent == 5 and b.excluded == 5 and b.progress == 0.5 and not b.done

    def test_done_and_resumed(self):
        """A resumed run starts from the time it had spent; progress stops at 1."""
        b = TimeBudget(4, spent=3, clock=self.clock([0, 1, 2, 4]))
        b.resume()
        b.tick()             # first step of this process: excluded
        b.tick()
        assert b.spent == 4 and b.done and b.progress == 1.0
        b.tick()
        assert b.spent == 6 and b.progress == 1.0

    def test_refuses_no_budget(self):
        with pytest.raises(ValueError, match="> 0"):
            TimeBudget(0)
