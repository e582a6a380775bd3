"""``--logging.tensorboard=1``: the event files hold every epoch's scalars, the hyperparameters and the spec, read back
with TensorBoard's own reader. (A real train_ffcv.py run writes them in tests/test_search.py's search.)"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from sdpnet.train.config import options_dict  # noqa: E402
from sdpnet.train.options import read_options  # noqa: E402
from sdpnet.train.tracking import SCALARS, open_tracker  # noqa: E402

SPEC = "P4(d=16)+CLS1-DWC3+MLP,ENC(h=2)-LIN"
ROWS = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 1.5 / e, "top1": 0.5 + 0.1 * e, "top5": 0.9,
         "ema_val_loss": 1.6 / e, "ema_top1": 0.45 + 0.1 * e, "ema_top5": 0.9, "lr": 0.003 / e, "res": 28,
         "img_per_s": 800.0 + e, "epoch_time": 10.0} for e in (1, 2, 3)]


def read_events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_of(acc: EventAccumulator) -> dict:
    """The hyperparameters of the run's HParams session-start summary."""
    data = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(data["_hparams_/session_start_info"]).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


class TestEvents:
    def test_scalars_hparams_and_spec(self, tmp_path):
        """Each metrics row is a scalar per tag and epoch; the options and the spec are hyperparameters."""
        record = options_dict(read_options(["--spec", SPEC, "--lr.lr=0.003"])) | {"git": "abc", "peak_lr": 0.003}
        tracker = open_tracker(tmp_path, record, SPEC, fresh=True)
        for row in ROWS:
            tracker.epoch(row)
        tracker.close()
        acc = read_events(tmp_path)
        tags = acc.Tags()["scalars"]
        assert {SCALARS[k] for k in ROWS[0] if k != "epoch"} <= set(tags)
        top1 = acc.Scalars("val/top1")
        assert [e.step for e in top1] == [1, 2, 3]
        assert [round(e.value, 5) for e in top1] == [round(r["top1"], 5) for r in ROWS]
        assert [round(e.value, 6) for e in acc.Scalars("lr")] == [round(r["lr"], 6) for r in ROWS]
        hp = hparams_of(acc)
        assert hp["spec"] == SPEC and hp["lr.lr"] == pytest.approx(0.003) and hp["training.epochs"] == 200
        assert hp["logging.tensorboard"] == 0 and hp["peak_lr"] == pytest.approx(0.003)   # booleans as numbers (torch)
        texts = acc.Tags()["tensors"]
        assert "spec/text_summary" in texts and "config/text_summary" in texts

    def test_resumed_run_appends_epochs(self, tmp_path):
        """A resumed run logs its new epochs only, without a second hyperparameter session."""
        first = open_tracker(tmp_path, {"training": {"epochs": 3}}, SPEC, fresh=True)
        first.epoch(ROWS[0])
        first.close()
        again = open_tracker(tmp_path, {"training": {"epochs": 3}}, SPEC, fresh=False)
        for row in ROWS[1:]:
            again.epoch(row)
        again.close()
        assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
        acc = read_events(tmp_path)
        assert [e.step for e in acc.Scalars("ema/top1")] == [1, 2, 3]
