"""After training: evaluate, predict, export and attention on a real Fashion-MNIST run, as subprocesses.

The run is the demo's (``specs/fashion_mnist.json``, ``configs/fashion_mnist.yaml``, as ``make demo`` trains it),
for one epoch on a subset. Every command is run as a user runs it (``python -m sdpnet ...``) on real files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdpnet
from sdpnet.data.sidecar import read_sidecar
from sdpnet.data.sources import FASHION_MNIST_CLASSES, ArraySource, read_fashion_mnist
from sdpnet.data.loaders import subset_indices

REPO = Path(__file__).resolve().parents[1]
FMNIST = "/usr/share/datasets/fashion-mnist"
VAL_SUBSET = 500
CLS_SPEC = "CT3(d=32,norm=bn),CONV3(act=relu,d=64),CT3(d=128,norm=bn)+CLS2-POS-DWC3+MLP(r=2.0),ENC(h=4,r=2.0)-LIN"


def run_py(*args: str, timeout: float = 600, block: Path | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root, as a user runs it; with ``block`` (the ``ffcv_blocker`` fixture)
    first on its path, ``import ffcv`` fails there."""
    path = [str(block) if block else None, os.environ.get("PYTHONPATH"), str(REPO)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env.pop("SDPNET_BLOCK_FFCV", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def sdpnet_cli(*args: str) -> subprocess.CompletedProcess:
    return run_py("-m", "sdpnet", *args)


@pytest.fixture(scope="module")
def demo_run(fashion_mnist_betons: Path, tmp_path_factory) -> Path:
    """The demo spec and recipe for one epoch on 1,536 training images, validated on 500."""
    d = fashion_mnist_betons
    run = tmp_path_factory.mktemp("demo") / "run"
    res = run_py("train_ffcv.py", "--spec", "specs/fashion_mnist.json", "-C", "configs/fashion_mnist.yaml",
                 f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
                 "--data.train_subset=1536", f"--data.val_subset={VAL_SUBSET}", "--training.epochs=1",
                 "--logging.progress=0", f"--logging.folder={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def cls_run(fashion_mnist_betons: Path, tmp_path_factory) -> Path:
    """A hybrid whose 2 class tokens read the image through one encoder (the previous demo), one epoch on 512
    training images: the attention tool draws what class tokens look at."""
    d = fashion_mnist_betons
    run = tmp_path_factory.mktemp("cls") / "run"
    res = run_py("train_ffcv.py", "--spec", CLS_SPEC, "-C", "configs/fashion_mnist.yaml",
                 f"--data.train_path={d / 'train.beton'}",
                 f"--data.val_path={d / 'val.beton'}", "--data.train_subset=512", f"--data.val_subset={VAL_SUBSET}",
                 "--training.epochs=1", "--logging.progress=0", f"--logging.folder={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def val_images(fashion_mnist_betons: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 40 images (28x28 grey) and labels of the run's validation subset, from the IDX files."""
    src = read_fashion_mnist(FMNIST, "val")
    keep = subset_indices(len(src), VAL_SUBSET, 0)[:40]
    return src.images[keep], src.labels[keep]


def evaluate_json(folder: Path) -> dict:
    return json.loads((folder / "evaluate.json").read_text())


class TestEvaluate:
    @pytest.mark.parametrize("weights,key", [("model", "top1"), ("ema", "ema_top1")])
    def test_same_top1_as_the_run(self, demo_run, tmp_path, weights, key):
        """Same weights, same resolution, same val set: exactly the top-1 in metrics.jsonl."""
        res = sdpnet_cli("evaluate", str(demo_run), f"--weights={weights}", f"--out={tmp_path}")
        assert res.returncode == 0, res.stderr[-3000:]
        rep = evaluate_json(tmp_path)
        row = [json.loads(line) for line in (demo_run / "metrics.jsonl").read_text().splitlines()][-1]
        assert rep["sweep"][0]["top1"] == row[key]
        assert rep["recorded"] == {"epoch": 1, "key": key, "top1": row[key], "matches": True}
        assert "(the same)" in res.stdout
        assert rep["sweep"][0]["top5"] == row[key.replace("top1", "top5")]
        assert rep["sweep"][0]["loss"] == pytest.approx(row[key.replace("top1", "val_loss")], rel=1e-5)  # sums in another order

    def test_per_class_confusion_and_sweep(self, demo_run, tmp_path):
        res = sdpnet_cli("evaluate", str(demo_run / "checkpoint.pt"), "--res", "28,56,84", f"--out={tmp_path}")
        assert res.returncode == 0, res.stderr[-3000:]
        rep = evaluate_json(tmp_path)
        assert [r["res"] for r in rep["sweep"]] == [28, 56, 84]
        assert all(r["images"] == VAL_SUBSET and r["images_per_s"] > 0 for r in rep["sweep"])
        assert [c["class"] for c in rep["per_class"]] == FASHION_MNIST_CLASSES
        cm = np.array(rep["confusion"])
        assert cm.shape == (10, 10) and cm.sum() == VAL_SUBSET
        assert np.trace(cm) / VAL_SUBSET == pytest.approx(rep["sweep"][0]["top1"])
        for c in rep["per_class"]:
            assert c["samples"] == cm[c["index"]].sum()
        with Image.open(tmp_path / "confusion.png") as im:
            assert im.format == "PNG" and min(im.size) > 300
        assert "Ankle boot" in res.stdout and "top-1" in res.stdout

    def test_flip_test_time_augmentation(self, demo_run, val_images, tmp_path):
        """``flip``: the logits are the mean over the image and its mirror, so mirrored inputs score the same."""
        from sdpnet.tools.evaluate import evaluate
        from sdpnet.tools.runs import open_trained

        trained = open_trained(str(demo_run), "model")
        mean, std = (torch.tensor(trained.preprocess[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        images, labels = val_images
        x = (torch.from_numpy(images).float()[:, None].expand(-1, 3, -1, -1) - mean) / std
        y = torch.from_numpy(labels).long()
        model = trained.model
        plain = evaluate({"model": model}, [(x, y)], amp=False)
        tta = evaluate({"model": model}, [(x, y)], amp=False, flip=True)
        mirrored = evaluate({"model": model}, [(x.flip(-1), y)], amp=False, flip=True)
        with torch.no_grad():
            by_hand = (model(x) + model(x.flip(-1))) / 2
        assert tta["top1"] == pytest.approx((by_hand.argmax(1) == y).float().mean().item())
        assert tta["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(by_hand, y).item(), rel=1e-5)
        assert mirrored["top1"] == tta["top1"] and mirrored["val_loss"] == pytest.approx(tta["val_loss"], rel=1e-5)
        assert plain["val_loss"] != pytest.approx(tta["val_loss"], rel=1e-5)
        res = sdpnet_cli("evaluate", str(demo_run), "--flip=1", f"--out={tmp_path}")
        assert res.returncode == 0, res.stderr[-3000:]
        rep = evaluate_json(tmp_path)
        assert rep["flip"] is True and "flip test-time augmentation" in res.stdout
        if json.loads((demo_run / "config.json").read_text())["validation"]["flip"]:
            assert rep["recorded"]["matches"]   # the run's own validation
        else:
            assert "recorded" not in rep   # not the run's validation: nothing to compare with

    def test_usage_errors(self, demo_run, tmp_path):
        stride = sdpnet.build(REPO / "specs" / "fashion_mnist.json").stride
        cases = [(["evaluate", str(tmp_path / "nope")], "does not exist"),
                 (["evaluate", str(demo_run), "--res", "30"],
                  f"multiple of the model's stride {stride}; use {max(stride, 30 // stride * stride)}"),
                 (["evaluate", str(demo_run), "--data.val_path=missing.beton"], "not found")]
        for args, msg in cases:
            res = sdpnet_cli(*args)
            assert res.returncode == 2 and msg in res.stderr, (args, res.stderr[-2000:])
            assert len(res.stderr.strip().splitlines()) == 1


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    """Each image in another mode: grey, RGB, RGBA, 16-bit grey, palette... (all lossless)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, a in enumerate(images):
        kind = i % 4
        if kind == 0:
            im = Image.fromarray(a, "L")
        elif kind == 1:
            im = Image.fromarray(np.dstack([a, a, a]), "RGB")
        elif kind == 2:
            im = Image.fromarray(np.dstack([a, a, a, np.full_like(a, 77)]), "RGBA")
        else:
            im = Image.fromarray(a.astype(np.uint16) * 257)   # 16-bit grey, full range
        p = folder / f"{i:03d}.png"
        im.save(p)
        paths.append(p)
    return paths


class TestPredict:
    def test_agrees_with_evaluate(self, demo_run, val_images, tmp_path, fashion_mnist_betons):
        """PNG files of test images -> predict; the same pixels as a .beton -> evaluate: same confusion matrix."""
        from sdpnet.data.writer import write_beton

        images, labels = val_images
        files = write_pngs(tmp_path / "png", images)
        meta = read_sidecar(fashion_mnist_betons / "val.beton")
        beton = tmp_path / "forty.beton"
        write_beton(ArraySource(images, labels), beton, {k: meta[k] for k in ("num_classes", "classes", "mean", "std")},
                    strict=True, labels=labels, max_image_bytes=28 * 28 * 3)
        out = tmp_path / "eval"
        # predict sees each image once: evaluate without the run's flip test-time augmentation
        res = sdpnet_cli("evaluate", str(demo_run), f"--data.val_path={beton}", f"--out={out}", "--flip=0")
        assert res.returncode == 0, res.stderr[-3000:]
        cm_eval = np.array(evaluate_json(out)["confusion"])
        res = sdpnet_cli("predict", str(demo_run), *map(str, files), "--topk", "3", "--json", str(tmp_path / "p.json"))
        assert res.returncode == 0, res.stderr[-3000:]
        preds = json.loads((tmp_path / "p.json").read_text())["predictions"]
        assert [Path(p["file"]).name for p in preds] == [f.name for f in files]
        cm_pred = np.zeros((10, 10), int)
        for p, y in zip(preds, labels):
            cm_pred[y, p["top"][0]["index"]] += 1
            probs = [t["prob"] for t in p["top"]]
            assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
            assert p["top"][0]["class"] == FASHION_MNIST_CLASSES[p["top"][0]["index"]]
        assert (cm_pred == cm_eval).all()
        # the same garment in any mode gets the same probabilities (grey, RGB, RGBA, 16-bit)
        again = sdpnet_cli("predict", str(demo_run), *map(str, write_pngs(tmp_path / "same", images[[0] * 4])))
        assert len({line.split(": ", 1)[1] for line in again.stdout.splitlines()}) == 1

    def test_bad_files_are_reported_the_rest_classified(self, demo_run, val_images, tmp_path):
        images, _ = val_images
        good = write_pngs(tmp_path, images[:2])
        Image.fromarray(np.dstack([images[2]] * 3)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
        (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
        res = sdpnet_cli("predict", str(demo_run), str(good[0]), str(tmp_path / "garbage.png"),
                         str(tmp_path / "missing.jpg"), str(tmp_path / "cmyk.jpg"), str(good[1]))
        assert res.returncode == 1
        err = res.stderr.strip().splitlines()
        assert any("garbage.png" in line and "not an image" in line for line in err)
        assert any("missing.jpg" in line and "no such file" in line for line in err)
        classified = [line.split(":")[0] for line in res.stdout.splitlines()]
        assert classified == [str(good[0]), str(tmp_path / "cmyk.jpg"), str(good[1])]


class TestExport:
    def test_safetensors_build_and_timm(self, demo_run, tmp_path, val_images):
        import timm
        from safetensors import safe_open

        from sdpnet.tools.runs import open_trained

        out = tmp_path / "fm.safetensors"
        res = sdpnet_cli("export", str(demo_run), "--format", "safetensors", "--out", str(out))
        assert res.returncode == 0, res.stderr[-3000:]
        assert "max |logit diff| = 0 " in res.stdout
        with safe_open(str(out), framework="pt") as f:
            meta = f.metadata()
        assert json.loads(meta["sdpnet.classes"]) == FASHION_MNIST_CLASSES
        spec = json.loads(meta["sdpnet.spec"])
        assert spec["num_classes"] == 10 and spec["img_size"] == 28
        assert json.loads(meta["sdpnet.preprocess"])["crop_ratio"] == 1.0

        ref = open_trained(demo_run).model   # the EMA weights, as exported
        x = torch.randn(3, 3, 28, 28)
        built = sdpnet.build("specs/fashion_mnist.json", pretrained=out).eval()
        made = timm.create_model("sdpnet_fashion_mnist", pretrained=True, pretrained_cfg_overlay=dict(file=str(out)))
        with torch.no_grad():
            want = ref(x)
            assert torch.equal(built(x), want)
            assert torch.equal(made.eval()(x), want)
            # another class count: a new classifier, every other tensor loaded; another resolution: resampled
            five = sdpnet.build("specs/fashion_mnist.json", pretrained=out, num_classes=5, img_size=56).eval()
            assert five(torch.randn(2, 3, 56, 56)).shape == (2, 5)
        assert torch.equal(next(five.stem.parameters()), next(ref.stem.parameters()))
        with pytest.raises(ValueError, match="does not fit this model"):
            sdpnet.build("P4(d=32)-ENC-LIN", pretrained=out)

    @pytest.mark.parametrize("fmt", ["onnx", "pt2"])
    def test_onnx_and_pt2_match_eager(self, demo_run, tmp_path, val_images, fmt):
        from sdpnet.tools.images import prepare
        from sdpnet.tools.runs import open_trained

        out = tmp_path / f"fm.{fmt}"
        res = sdpnet_cli("export", str(demo_run), "--format", fmt, "--out", str(out))
        assert res.returncode == 0, res.stderr[-3000:]
        line = next(s for s in res.stdout.splitlines() if s.startswith("check:"))
        assert "real images" in line and "OK" in line
        assert float(line.split("max |logit diff| = ")[1].split()[0]) <= 1e-4
        trained = open_trained(demo_run)
        x = torch.stack([prepare(np.dstack([a] * 3), trained.preprocess) for a in val_images[0][:7]])  # batch 7
        with torch.no_grad():
            want = trained.model(x).numpy()
        if fmt == "onnx":
            import onnx
            import onnxruntime as ort

            got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
            props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
            assert json.loads(props["sdpnet.classes"]) == FASHION_MNIST_CLASSES
        else:
            got = torch.export.load(str(out)).module()(x).detach().numpy()
        assert got.shape == (7, 10) and np.abs(got - want).max() <= 1e-4

    def test_refuses_to_overwrite(self, demo_run, tmp_path):
        out = tmp_path / "m.safetensors"
        out.write_text("keep me")
        res = sdpnet_cli("export", str(demo_run), "--format", "safetensors", "--out", str(out))
        assert res.returncode == 2 and "--force" in res.stderr and out.read_text() == "keep me"


class KeyBias(torch.nn.Module):
    """A position scheme (the ``pos`` contract) adding a fixed random bias per head and key, from every query."""

    def __init__(self, num_heads: int, num_keys: int) -> None:
        super().__init__()
        self.register_buffer("bias", 3 * torch.randn(num_heads, 1, num_keys, generator=torch.Generator().manual_seed(0)))

    def forward(self, q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]):
        return q, k, self.bias


class TestAttention:
    def test_cli_maps_are_distributions(self, cls_run, val_images, tmp_path):
        files = write_pngs(tmp_path / "img", val_images[0][:2])
        out = tmp_path / "maps"
        res = sdpnet_cli("attention", str(cls_run), *map(str, files), "--out", str(out))
        assert res.returncode == 0, res.stderr[-3000:]
        for f in files:
            with Image.open(out / f"{f.stem}_attention.png") as im:
                assert im.format == "PNG"
            z = np.load(out / f"{f.stem}_attention.npz")
            assert list(z["names"]) == ["body.3.attn"]          # the one ENC
            w, (gh, gw) = z["layer0"], z["grids"][0]
            assert (gh, gw) == (7, 7) and int(z["num_tokens"]) == 2
            assert w.shape == (2, 4, 2 + 49)                    # class tokens, heads, tokens that exist
            assert (w >= 0).all() and np.allclose(w.sum(-1), 1, atol=1e-5)

    def test_every_attention_layer_with_registers(self):
        """Two encoder runs around a mixer, 3 class and 2 register tokens: one map per ENC, over T + HW tokens."""
        from sdpnet.tools.attention import attention_layers, attention_maps

        torch.manual_seed(0)
        model = sdpnet.build("P4+CLS3+REG2-POS-ENC(h=2)x2-DWC3-ENC(h=4)-MLP", dim=32, num_classes=7,
                             img_size=32).eval()
        layers = attention_layers(model)
        assert [a.name for a in layers] == ["body.1.attn", "body.2.attn", "body.4.attn"]
        before = [len(m._forward_hooks) for m in model.modules()]
        for res in (32, 48):   # the grid follows the input
            _, maps = attention_maps(model, torch.randn(2, 3, res, res))
            n = 5 + (res // 4) ** 2
            assert [tuple(m.shape) for m in maps] == [(2, 3, 2, n), (2, 3, 2, n), (2, 3, 4, n)]
            for m in maps:
                assert (m >= 0).all() and torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)
        assert [len(m._forward_hooks) for m in model.modules()] == before   # hooks removed

    @pytest.mark.parametrize("pos", ["none", "rope", "relbias", "bias"])
    def test_maps_are_the_attention_the_layer_used(self, pos):
        """Weights from the hooks reproduce the attention output: sum_j w_ij v_j, then the output projection,
        whatever the position scheme: rope turns q and k, relbias adds a bias (zero in the class tokens' rows),
        and ``bias`` is a scheme whose additive bias favours some keys from every query, class tokens included."""
        from sdpnet.tools.attention import attention_maps

        torch.manual_seed(1)
        model = sdpnet.build(f"P4+CLS2-ENC(h=2,qkn=1,pos={'none' if pos == 'bias' else pos})-TOKS+LIN", dim=16,
                             num_classes=3, img_size=16).eval()
        if pos == "bias":
            model.body[0].attn.pos = KeyBias(num_heads=2, num_keys=2 + 16)
        x = torch.randn(1, 3, 16, 16)
        (layer,), (w,) = attention_maps(model, x)
        attn = layer.module
        seen = {}
        h = attn.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
        model(x)
        h.remove()
        s = seen["inp"]   # the normed sequence (1, N, C)
        v = attn.qkv(s)[..., 2 * 16:].reshape(1, -1, 2, 8).transpose(1, 2)   # (1, heads, N, head_dim)
        mixed = (w.transpose(1, 2) @ v).transpose(1, 2).reshape(1, 2, 16)     # class tokens
        assert torch.allclose(attn.proj(mixed), seen["out"][:, :2], atol=1e-5)


class TestWithoutFFCV:
    NOTE = "note: FFCV is not importable (ImportError: ffcv is blocked for this test); reading .beton files with " \
           "the torch engine"

    def test_every_command_runs(self, demo_run, cls_run, val_images, ffcv_blocker, tmp_path):
        """With ``import ffcv`` failing: evaluate repeats the run's top-1 (torch engine, with the note), predict
        prints what it prints with FFCV, export's check on the validation .beton passes, attention draws its maps."""
        files = write_pngs(tmp_path / "png", val_images[0][:4])

        def blocked(*args: str) -> subprocess.CompletedProcess:
            res = run_py("-m", "sdpnet", *args, block=ffcv_blocker)
            assert res.returncode == 0, res.stderr[-3000:]
            return res

        ev = blocked("evaluate", str(demo_run), f"--out={tmp_path / 'ev'}", "--device", "cpu")
        assert self.NOTE in ev.stderr.splitlines()
        rep = evaluate_json(tmp_path / "ev")
        assert rep["engine"] == "torch" and rep["recorded"]["matches"], rep["recorded"]
        pred = blocked("predict", str(demo_run), *map(str, files))
        assert len(pred.stdout.splitlines()) == 4
        assert pred.stdout == sdpnet_cli("predict", str(demo_run), *map(str, files)).stdout
        ex = blocked("export", str(demo_run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors"))
        assert "max |logit diff| = 0 " in ex.stdout and (tmp_path / "m.safetensors").is_file()
        blocked("attention", str(cls_run), str(files[0]), "--out", str(tmp_path / "maps"))
        assert np.load(tmp_path / "maps" / f"{files[0].stem}_attention.npz")["layer0"].shape == (2, 4, 51)

    def test_library_builds_and_trains_a_step(self, ffcv_blocker):
        """``import sdpnet; sdpnet.build(...)`` and a training step need no FFCV (nor does ``import sdpnet.data``)."""
        code = ("import sys, torch, sdpnet, sdpnet.data\n"
                "m = sdpnet.build('specs/fashion_mnist.json')\n"
                "m(torch.randn(2, 3, 28, 28)).logsumexp(1).sum().backward()\n"
                "print(sorted(k for k in sys.modules if k.split('.')[0] == 'ffcv'), m.num_classes)")
        res = run_py("-c", code, block=ffcv_blocker)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.split() == ["[]", "10"]
        assert "blocked" in run_py("-c", "import ffcv", block=ffcv_blocker).stderr   # the blocker does block


class TestWeights:
    def test_adapt_reports_by_name_and_resamples(self):
        from sdpnet.models.weights import adapt_state_dict

        torch.manual_seed(0)
        src = sdpnet.build(CLS_SPEC, num_classes=10, img_size=28)
        dst = sdpnet.build(CLS_SPEC, num_classes=4, img_size=56)
        fitted, rep = adapt_state_dict(dst, src.state_dict())
        assert [n for n, _, _ in rep.resampled] == ["body.0.pos_embed"]
        assert rep.resampled[0][1:] == ((1, 128, 7, 7), (1, 128, 14, 14))
        assert [n for n, _, _ in rep.mismatched] == ["head.0.fc.weight", "head.0.fc.bias"]
        assert rep.classifier == "head.0.fc." and not rep.missing and not rep.unexpected
        assert not rep.not_loaded(outside_classifier=True)
        assert any("new layer for the new class count" in line for line in rep.lines())
        dst.load_state_dict(fitted)
        # the resampled table is what the block itself would use at 56 px
        from sdpnet.blocks.embed import resample
        assert torch.allclose(dst.body[0].pos_embed, resample(src.body[0].pos_embed, (14, 14)))
