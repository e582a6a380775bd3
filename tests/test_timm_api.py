"""The timm model API, item by item, on small real models: what ``timm.create_model``, timm's ``train.py``
(``--grad-checkpointing``, ``--layer-decay``, ``--model-ema``) and torchvision's feature extraction rely on.

timm's own ``tests/test_models.py`` runs over every preset with ``tests/compat/run_timm_suite.py`` (not in CI:
it downloads timm's sources); these tests cover each item without it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sdpnet
from sdpnet.models.builder import SpecNet, build, default_out_indices

timm = pytest.importorskip("timm")
sdpnet.register_timm()

SMALL = {"dim": 32, "heads": 2, "num_classes": 10, "img_size": 32}
HYBRID = "P4+CLS2+REG1-DWC3+MLP,ENC,DOWN2(d=48),ENCx2-TOKS+MLP(h=24)"  # tokens, a stride-2 stage, an MLP head
CONV = "CT3(d=32)x2-DWC3+MLP,DOWN2(d=48),DWC3-SEQPOOL+LIN(norm=none)"  # no tokens: a feature map
PRESETS = sdpnet.list_models()


def small(arch: str, **overrides) -> SpecNet:
    torch.manual_seed(0)
    return build(arch, **{**SMALL, **overrides})


def small_preset(name: str) -> SpecNet:
    """A preset at width 32 and a 4 x 4 final grid (same layers, fewer channels and pixels), so that every
    preset runs in a unit test."""
    torch.manual_seed(0)
    stride = sdpnet.resolve(sdpnet.load_spec(name)).stride
    return build(name, dim=32, heads=2, img_size=4 * stride)


class TestCreateModel:
    def test_unknown_keyword_is_a_type_error(self) -> None:
        """timm's contract: an unknown keyword raises TypeError (naming it and the nearest valid one)."""
        with pytest.raises(TypeError, match="sdpnet_vit_cifar.. got an unexpected keyword argument 'dimm'.*did "
                                            "you mean dim"):
            timm.create_model("sdpnet_vit_cifar", dimm=64, device="meta")

    def test_timm_keywords(self) -> None:
        """timm's keywords reach the spec: classes, channels, size, dropout and drop-path rates, device, dtype."""
        model = timm.create_model("sdpnet_vit_cifar", num_classes=7, in_chans=1, img_size=64, drop_rate=0.1,
                                  drop_path_rate=0.2, device="meta", dtype=torch.float64)
        assert model.num_classes == 7 and model.in_chans == 1 and model.plan.img_size == 64
        assert model.plan.hparams["dropout"] == 0.1 and model.plan.hparams["drop_path"] == 0.2
        assert {p.device.type for p in model.parameters()} == {"meta"}
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        with pytest.raises(ValueError, match="no pretrained weights"):
            timm.create_model("sdpnet_xxs", pretrained=True)

    def test_num_classes_zero(self) -> None:
        """num_classes=0 builds no classifier: the model outputs its pooled, normed features (num_features wide;
        an MLP head's hidden layer belongs to the classifier, as timm's MetaFormer), equal to pre_logits of the
        same weights with a classifier, and to reset_classifier(0)."""
        with_fc, without = small(HYBRID), small(HYBRID, num_classes=0)
        assert not any(k.startswith(("head.0.pre", "head.0.fc")) for k in without.state_dict())
        without.load_state_dict({k: v for k, v in with_fc.state_dict().items()
                                 if not k.startswith(("head.0.pre", "head.0.fc"))})
        with_fc.eval(), without.eval()
        x = torch.randn(2, 3, 32, 32)
        pre = with_fc.forward_head(with_fc.forward_features(x), pre_logits=True)
        assert without(x).shape == (2, 48) == pre.shape
        assert without.head_hidden_size == with_fc.head_hidden_size == without.num_features == 48
        torch.testing.assert_close(without(x), pre)
        with_fc.reset_classifier(0)
        torch.testing.assert_close(with_fc(x), pre)
        timm_model = timm.create_model("sdpnet_xl", num_classes=0, device="meta")
        assert timm_model(torch.zeros(2, 3, 224, 224, device="meta")).shape == (2, 768)  # not MLP(h=1000)'s width

    def test_num_classes_zero_with_weights(self, tmp_path) -> None:
        """With your own weights, num_classes=0 loads them (classifier included), then removes the classifier:
        the same as the loaded model after reset_classifier(0)."""
        from sdpnet.models.weights import save_weights

        trained = small(HYBRID).eval()
        file = save_weights(tmp_path / "w.safetensors", trained.state_dict(), spec={**SMALL, "arch": HYBRID})
        embed = sdpnet.build(HYBRID, pretrained=file, **{**SMALL, "num_classes": 0}).eval()
        trained.reset_classifier(0)
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(embed(x), trained(x))
        assert embed.num_classes == 0 and embed(x).shape == (2, 48)

    def test_global_pool_off(self) -> None:
        """global_pool='' (at creation or reset) gives the unpooled features, or with a classifier the logits at
        every position (timm's models without pooling do the same); the spec's pool name turns it back on."""
        model = small(CONV).eval()
        x = torch.randn(2, 3, 32, 32)
        logits = model(x)
        model.reset_classifier(0, "")
        torch.testing.assert_close(model(x), model.forward_features(x))
        assert model(x).shape == (2, 48, 4, 4)
        model.reset_classifier(5, "")
        features, dense = model.forward_features(x), model(x)
        assert dense.shape == (2, 5, 4, 4)
        torch.testing.assert_close(dense[:, :, 1, 2], model.head[-1](features[:, :, 1, 2]))
        hybrid = small(HYBRID).eval()
        hybrid.reset_classifier(7, "")
        assert hybrid(x).shape == (2, 3 + 16, 7)
        with pytest.raises(ValueError, match="pools with its spec's SEQPOOL"):
            model.reset_classifier(0, "avg")
        model.reset_classifier(10, "seqpool")
        assert model(x).shape == logits.shape
        created = timm.create_model("sdpnet_convmixer_768_32", num_classes=0, global_pool="", device="meta")
        assert created(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, 768, 32, 32)


class TestFeatures:
    def test_forward_features_is_one_tensor(self) -> None:
        """With tokens: [class tokens, register tokens, image tokens] (B, T + HW, C), ViT's layout; without: the
        feature map. forward_head takes it and gives forward's logits."""
        model = small("P4+CLS2+REG1-DWC3-TOKS+LIN").eval()  # no ENC: the tokens come out as created
        x = torch.randn(2, 3, 32, 32)
        s = model.forward_features(x)
        assert s.shape == (2, 3 + 8 * 8, 32) and model.num_prefix_tokens == 3
        torch.testing.assert_close(s[:, :3], torch.cat([model.cls_token, model.reg_token], 1).expand(2, -1, -1))
        for arch, shape in ((HYBRID, (2, 3 + 4 * 4, 48)), (CONV, (2, 48, 4, 4))):
            model = small(arch).eval()
            f = model.forward_features(x)
            assert f.shape == shape and f.shape[-1 if f.ndim == 3 else 1] == model.num_features
            torch.testing.assert_close(model.forward_head(f), model(x), rtol=1e-5, atol=1e-6)

    def test_widening_pool(self) -> None:
        """num_features is forward_features' width, head_hidden_size what fc reads: a user pool that doubles
        the width (registered as docs/blocks.md shows) makes them differ, and forward_head still matches."""
        from sdpnet import Width, register_block

        if "MEANSX" not in sdpnet.list_blocks():
            @register_block("MEANSX", kind="pool", roles=("head",), width=Width(factor=2), needs=("cls",),
                            doc="pool: [mean of the image tokens, mean of the class tokens]")
            class TwoMeans(nn.Module):
                def __init__(self, in_dim: int) -> None:
                    super().__init__()

                def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                    return torch.cat([x.mean((2, 3)), t.mean(1)], dim=1)

        model = small("P4+CLS2-ENC-MEANSX+LIN").eval()
        x = torch.randn(2, 3, 32, 32)
        assert model.num_features == 32 and model.head_hidden_size == 64
        assert model.forward_features(x).shape == (2, 2 + 64, 32)
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))

    def test_feature_info(self) -> None:
        """One entry per stem and body layer: width, total stride, module name."""
        model = small(HYBRID)
        assert [(i["num_chs"], i["reduction"], i["module"]) for i in model.feature_info] == [
            (32, 4, "stem.0"), (32, 4, "body.0"), (32, 4, "body.1"), (32, 4, "body.2"), (48, 8, "body.3"),
            (48, 8, "body.4"), (48, 8, "body.5")]
        assert default_out_indices(model.feature_info) == (3, 5, 6)  # stage ends (3, 6), topped up to three
        assert default_out_indices(small(CONV).feature_info) == (0, 3, 5)  # stage ends at strides 2, 4, 8

    def test_forward_intermediates(self) -> None:
        """Each intermediate is the image tokens its layer outputs (taken with forward hooks, sequence blocks'
        outputs split); indices as timm's (None, last n, negative); NLC, prefix tokens, the final features."""
        model = small(HYBRID).eval()
        x = torch.randn(2, 3, 32, 32)
        seen = []
        modules = [model.get_submodule(i["module"]) for i in model.feature_info]
        hooks = [m.register_forward_hook(lambda m, a, out: seen.append(out)) for m in modules]
        final, inter = model.forward_intermediates(x)
        for h in hooks:
            h.remove()
        assert len(inter) == len(model.feature_info) == len(seen)
        for out, got, info in zip(seen, inter, model.feature_info):
            out = out[0] if isinstance(out, tuple) else out
            if out.ndim == 3:  # a sequence block: [3 tokens; image]
                out = out[:, 3:].transpose(1, 2).reshape(got.shape)
            torch.testing.assert_close(got, out)
            assert got.shape[1] == info["num_chs"] and got.shape[-1] == 32 // info["reduction"]
        torch.testing.assert_close(final, model.forward_features(x))
        last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
        neg = model.forward_intermediates(x, indices=[-2, -1], intermediates_only=True, output_fmt="NLC")
        torch.testing.assert_close(last2, inter[-2:])
        torch.testing.assert_close(neg, [t.flatten(2).transpose(1, 2) for t in inter[-2:]])
        early, (tap,) = model.forward_intermediates(x, indices=[2], stop_early=True, return_prefix_tokens=True)
        torch.testing.assert_close(tap[0], inter[2])
        assert tap[1].shape == (2, 3, 32) and early.shape == (2, 3 + 64, 32)
        with pytest.raises(ValueError, match="features 0 to 6"):
            model.forward_intermediates(x, indices=[7])

    def test_features_only(self) -> None:
        """features_only=True (timm's FeatureGetterNet) gives the image tokens at the stage ends (the last layer
        at each stride), NCHW, with a feature_info that matches; out_indices picks others; the weights are the
        classifier model's and the head is gone."""
        torch.manual_seed(0)
        full = timm.create_model("sdpnet_fashion_mnist").eval()
        torch.manual_seed(0)
        backbone = timm.create_model("sdpnet_fashion_mnist", features_only=True).eval()
        x = torch.randn(2, 3, 28, 28)
        feats = backbone(x)
        stage_ends = default_out_indices(full.feature_info)
        info = [full.feature_info[i] for i in stage_ends]
        assert backbone.feature_info.channels() == [i["num_chs"] for i in info]
        assert backbone.feature_info.reduction() == [i["reduction"] for i in info]
        assert len(set(backbone.feature_info.reduction())) == len(stage_ends) >= 3  # one per stride
        assert [f.shape for f in feats] == [(2, i["num_chs"], 28 // i["reduction"], 28 // i["reduction"])
                                            for i in info]
        torch.testing.assert_close(feats, full.forward_intermediates(x, indices=list(stage_ends),
                                                                     intermediates_only=True))
        picked = timm.create_model("sdpnet_fashion_mnist", features_only=True, out_indices=(0, 3))
        assert picked.feature_info.channels() == [full.feature_info[0]["num_chs"], full.feature_info[3]["num_chs"]]
        assert len(picked(x)) == 2
        assert not any(n.startswith(("model.head", "model.pool")) for n, _ in picked.named_parameters())

    def test_prune_intermediate_layers(self) -> None:
        """Pruning keeps the layers up to the last index: forward_features then ends at that tap, every kept
        parameter still gets a gradient; pruning in the stem drops the tokens; a head that cannot read the
        pruned features is refused."""
        x = torch.randn(2, 3, 32, 32)
        model = small(CONV).eval()
        taps = model.forward_intermediates(x, intermediates_only=True)
        for i in range(len(taps)):
            pruned = copy.deepcopy(model)
            assert pruned.prune_intermediate_layers([i]) == [i]
            torch.testing.assert_close(pruned.forward_features(x), taps[i])
            assert pruned.num_features == pruned.head_hidden_size == taps[i].shape[1]
            pruned.train().forward_features(x).sum().backward()
            assert all(p.grad is not None for p in pruned.parameters())
        hybrid = small(HYBRID)
        stem_only = copy.deepcopy(hybrid)
        stem_only.prune_intermediate_layers([0])
        assert stem_only.cls_token is None and stem_only.num_prefix_tokens == 0
        assert stem_only.forward_features(x).shape == (2, 32, 8, 8)
        with pytest.raises(ValueError, match="prune_head=False keeps the head"):
            copy.deepcopy(hybrid).prune_intermediate_layers([2], prune_head=False)
        kept = copy.deepcopy(hybrid).eval()
        kept.prune_intermediate_layers([6], prune_head=False)  # the last index: nothing to drop
        torch.testing.assert_close(kept(x), hybrid.eval()(x))
        kept.prune_intermediate_layers([5], prune_head=False)  # the last ENC goes, the head stays
        assert len(kept.body) == 5 and kept(x).shape == (2, 10)


class TestHeadAndConfig:
    def test_reset_classifier_keeps_device_dtype_mode(self) -> None:
        """The new classifier is made on the model's device, in its dtype, in its train/eval mode."""
        model = small(HYBRID).to(torch.float64).eval()
        model.reset_classifier(5)
        fc = model.get_classifier()
        assert fc.weight.dtype == torch.float64 and not fc.training and model.num_classes == 5
        assert model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).shape == (2, 5)
        meta = timm.create_model("sdpnet_vit_cifar", device="meta").train()
        meta.reset_classifier(3)
        assert meta.get_classifier().weight.device.type == "meta" and meta.get_classifier().training
        mlp = timm.create_model("sdpnet_xxs", num_classes=0, device="meta", dtype=torch.float64).eval()
        mlp.reset_classifier(4)  # from no classifier: the MLP head's hidden layer is made anew, like fc
        for m in (mlp.head[0].pre, mlp.get_classifier()):
            assert (m.weight.device.type, m.weight.dtype, m.training) == ("meta", torch.float64, False)

    def test_pretrained_cfg_equals_the_registry(self) -> None:
        """Every preset reports the pretrained_cfg timm's registry holds for its name, with timm's keys."""
        keys = {"architecture", "input_size", "num_classes", "pool_size", "first_conv", "classifier", "mean", "std",
                "interpolation", "crop_pct", "crop_mode", "fixed_input_size", "custom_load", "notes"}
        for name in PRESETS:
            registry = timm.models.get_pretrained_cfg(name).to_dict()
            with torch.device("meta"):
                own = sdpnet.build(name).pretrained_cfg
            created = timm.create_model(name, device="meta")
            assert own == registry == created.pretrained_cfg == created.default_cfg, name
            assert keys <= own.keys(), name
            assert created.in_chans == own["input_size"][0] and created.head_hidden_size > 0
        cfg = sdpnet.build(CONV, **SMALL).pretrained_cfg
        assert cfg["pool_size"] == (4, 4) and "architecture" not in cfg
        assert sdpnet.build(HYBRID, **SMALL).pretrained_cfg["pool_size"] is None  # a token sequence, as ViT

    def test_input_sizes_that_are_not_multiples_of_the_stride(self) -> None:
        """Declared in the cfg's notes: patch stems and strided convolutions floor, padded max-pools round up."""
        model = small("P16+CLS1-ENC-TOKS+LIN", img_size=64)
        assert model(torch.zeros(1, 3, 100, 75)).shape == (1, 10)
        assert model.forward_features(torch.zeros(1, 3, 100, 75)).shape == (1, 1 + 6 * 4, 32)  # floor(100/16) ...
        ct = small("CT3(d=32)-DWC3-GAP+LIN")
        assert ct.forward_features(torch.zeros(1, 3, 29, 29)).shape == (1, 32, 15, 15)  # ceil(29/2)
        assert "floor" in model.pretrained_cfg["notes"][0] and "round up" in model.pretrained_cfg["notes"][0]


class TestTraining:
    def test_grad_checkpointing_same_result_less_memory(self) -> None:
        """set_grad_checkpointing recomputes the body blocks in backward: same loss and gradients (drop-path on,
        its random state replayed), and the tensors kept for backward shrink to well under half."""
        def step(model: SpecNet) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
            """Loss, gradients, and the bytes kept for backward: the tensors autograd saves, plus (checkpointing)
            each checkpointed block's inputs, which checkpoint holds to recompute it; storages counted once."""
            kept: dict[int, int] = {}

            def keep(t: torch.Tensor) -> torch.Tensor:
                kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            def keep_inputs(module: nn.Module, args: tuple) -> None:
                for a in args:
                    if torch.is_tensor(a):
                        keep(a)

            hooks = [b.register_forward_pre_hook(keep_inputs) for b in model.body] if model.grad_checkpointing else []
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
            loss.backward()
            for h in hooks:
                h.remove()
            return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, sum(kept.values())

        model = small("P4+CLS2-[DWC3+MLP,ENC]x3-TOKS+LIN", drop_path=0.2).train()
        loss, grads, plain = step(model)
        model.set_grad_checkpointing()
        loss_ckpt, grads_ckpt, checkpointed = step(model)
        torch.testing.assert_close(loss_ckpt, loss)
        for name in grads:
            torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
        assert checkpointed < 0.5 * plain, (checkpointed, plain)

    def test_group_matcher_layer_decay(self) -> None:
        """group_matcher groups stem, then each body block, then the head, so timm's layer-wise lr decay scales the
        stem least and the head not at all; every parameter is in a group."""
        from timm.optim import create_optimizer_v2

        model = small(HYBRID)
        optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
        scale = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
        assert len(scale) == len(list(model.parameters()))
        by_name = {n: scale[id(p)] for n, p in model.named_parameters()}
        depth = len(model.body) + 1  # stem, body blocks, head
        assert by_name["stem.0.proj.weight"] == pytest.approx(0.5 ** depth) == by_name["cls_token"]
        assert by_name["body.0.conv_dw.weight"] == pytest.approx(0.5 ** (depth - 1))
        assert by_name["head.0.fc.weight"] == 1.0
        assert sorted(set(by_name.values())) == pytest.approx([0.5 ** k for k in range(depth, -1, -1)])
        groups = timm.optim.param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5,
                                                     no_weight_decay_list=model.no_weight_decay())
        assert {id(p): g["lr_scale"] for g in groups for p in g["params"]} == scale
        assert [g["weight_decay"] for g in groups if any(p is model.cls_token for p in g["params"])] == [0.0]

    def test_model_ema_deepcopies(self) -> None:
        """timm's ModelEmaV3 (train.py --model-ema) copies the model and follows it."""
        from timm.utils import ModelEmaV3

        model = small(HYBRID)
        ema = ModelEmaV3(model, decay=0.5)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        ema.update(model)
        ref = dict(model.named_parameters())
        n, p = next(iter(ema.module.named_parameters()))
        assert not torch.equal(p, ref[n]) and isinstance(ema.module, SpecNet)


def test_timm_training_pipeline(tmp_path) -> None:
    """What timm's train.py does with a model, on real Fashion-MNIST images: create_model with train.py's
    keywords, --grad-checkpointing, resolve_data_config + create_dataset/create_loader (ImageFolder of PNGs),
    create_optimizer_v2 with --layer-decay 0.75, --model-ema (ModelEmaV3), a scheduler, a few steps, eval."""
    import gzip
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    source = Path("/usr/share/datasets/fashion-mnist")
    if not source.is_dir():
        pytest.skip("the dataset-fashion-mnist package is not installed")
    with gzip.open(source / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:64]
    with gzip.open(source / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:64]
    for split in ("train", "validation"):
        for i, (image, label) in enumerate(zip(images, labels)):
            (tmp_path / split / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, "L").save(tmp_path / split / f"c{label}" / f"{i}.png")

    torch.manual_seed(0)
    model = timm.create_model("sdpnet_fashion_mnist", pretrained=False, in_chans=3, num_classes=10, drop_rate=0.0,
                              drop_path_rate=0.1, global_pool=None, scriptable=False)
    model.set_grad_checkpointing(enable=True)
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 28, 28) and config["crop_pct"] == 0.9
    loader = create_loader(create_dataset("", root=str(tmp_path), split="train", is_training=True),
                           input_size=config["input_size"], batch_size=16, is_training=True, use_prefetcher=False,
                           mean=config["mean"], std=config["std"], num_workers=0)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=1, warmup_epochs=0,
                                       updates_per_epoch=len(loader))
    ema = ModelEmaV3(model, decay=0.9)
    model.train()
    losses = []
    for step, (x, y) in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model, step=step)
        scheduler.step_update(step + 1)
        losses.append(loss.item())
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert len({g["lr_scale"] for g in optimizer.param_groups}) > 2
    ema.module.eval()
    with torch.no_grad():
        assert ema.module(x).shape == (x.shape[0], 10)


@pytest.mark.parametrize("name", PRESETS)
def test_fx_trace_every_preset(name: str) -> None:
    """torch.fx.symbolic_trace and torchvision's create_feature_extractor trace every preset (at width 32) and
    compute what the model computes, at the spec's size and at one that is not a multiple of the stride."""
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = small_preset(name).eval()
    traced = torch.fx.symbolic_trace(model)
    size = model.plan.img_size
    for res in (size, size + model.stride // 2 + 1):
        x = torch.randn(1, 3, res, res)
        want = model(x)
        torch.testing.assert_close(traced(x), want, rtol=1e-4, atol=1e-5)
    _, nodes = get_graph_node_names(model)
    extractor = create_feature_extractor(model, return_nodes={nodes[-1]: "out"})
    torch.testing.assert_close(extractor(x)["out"], want, rtol=1e-4, atol=1e-5)


def test_compile_and_export_with_the_api() -> None:
    """torch.export still traces the model (now without a shape check) and torch.compile(fullgraph=True)
    forward_intermediates (tests/test_builder.py compiles forward)."""
    model = small(HYBRID).eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-5)
    inter = torch.compile(lambda v: model.forward_intermediates(v, indices=3), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(inter(x)[1], model.forward_intermediates(x, indices=3)[1])
