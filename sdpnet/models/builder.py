"""Plan -> ``SpecNet``: the modules of a resolved spec, with timm's model API.

The network carries the image tokens (B, C, H, W) and the class/register tokens (B, T, C) apart. Each layer is
called by the kind its plan gives (:data:`sdpnet.registry.KINDS`): a ``layer`` sees the image only
(``forward(x) -> x``), a ``tokens`` block both (``forward(x, t) -> (x, t)``), a ``sequence`` block the joined
sequence ``[t; flatten(x)]`` (``forward(s) -> s``). Kinds are fixed when the model is built, so the forward loop
has only static branches and ``torch.compile(model, fullgraph=True)`` traces it without graph breaks. Every
shape fact (widths, grids, strides) comes from the plan; modules report none.

Two execution details make the forward cheaper without changing its result: a run of consecutive sequence
blocks joins the tokens and the image into one sequence once, not per block; and when the pool does not read
the image (its schema's ``reads_image``) and the body ends with a sequence block that takes ``num_queries``,
``forward`` computes that last block for the class tokens alone (``forward_features`` still returns its full
output).

The timm model API (what ``timm.create_model``, timm's ``train.py`` and torchvision's feature extraction use):
``forward_features`` returns one tensor, ``[prefix tokens; image tokens]`` (B, T + HW, C) for models with
class/register tokens, else the feature map (B, C, H, W), and ``forward_head`` takes it; ``pre_logits`` is the
classifier without its class-dependent layers (``fc``; an ``MLP`` head's hidden layer too, as timm's
MetaFormer), the output after ``reset_classifier(0)`` and with ``num_classes=0``; ``feature_info`` lists every stem and
body layer (its image tokens, width, total stride), which ``forward_intermediates``,
``prune_intermediate_layers`` and ``features_only=True`` index; ``set_grad_checkpointing`` checkpoints the body
blocks; ``group_matcher`` groups stem, body blocks, head for layer-wise lr decay; ``pretrained_cfg`` has timm's
keys (:func:`timm_cfg`). Any input size runs (no divisibility check, which would also stop ``torch.fx``): each
strided layer rounds as its own convolution or pooling does. ``torch.fx.symbolic_trace``, ``torch.compile
(fullgraph=True)`` and ``torch.export`` trace the model; TorchScript is not supported.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import sdpnet.blocks  # noqa: F401  (binds the built-in block names to their modules)
from sdpnet.models.probe import probe_layers
from sdpnet.models.weights import classifier_prefix, load_pretrained, state_dict_from
from sdpnet.registry import check_factory, get_block, get_schema
from sdpnet.spec import load_spec, presets, resolve
from sdpnet.spec.files import DEFAULTS
from sdpnet.spec.plan import LayerPlan, Plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_block(layer: LayerPlan) -> nn.Module:
    """The module of ``layer``: its factory called with the plan's keywords and ``in_dim``.

    A factory whose signature does not fit its schema is a ``ValueError`` naming the block.
    """
    factory: Callable[..., nn.Module] = get_block(layer.name, layer.role)
    check_factory(get_schema(layer.name), layer.role, factory)
    return factory(**layer.kwargs, in_dim=layer.in_dim)


def join_tokens(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Image (B, C, H, W) and tokens (B, T, C) -> the sequence ``[tokens, image]`` (B, T + HW, C)."""
    return torch.cat([t, x.flatten(2).transpose(1, 2)], dim=1)


def split_tokens(s: torch.Tensor, num_tokens: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequence ``[tokens, image]`` (B, T + HW, C) -> image (B, C, H, W) and tokens (B, T, C)."""
    B, _, C = s.shape
    H, W = grid
    t, x = s.split([num_tokens, H * W], dim=1)
    return x.transpose(1, 2).reshape(B, C, H, W), t


class SpecNet(nn.Module):
    """A network built from a :class:`~sdpnet.spec.plan.Plan`: ``stem`` -> tokens -> ``body`` -> ``pool`` -> ``head``.

    Class tokens (``cls_token``, (1, num_cls, dim)) and register tokens (``reg_token``, (1, num_reg, dim)) are
    created right after the stem, initialised with a truncated normal (std 0.02: distinct class tokens need
    distinct starts; timm's 1e-6 would leave five class tokens near-identical), concatenated class-first into
    ``t``. Register tokens are dropped before the head. Linear layers get timm ViT's init (truncated normal
    std 0.02, zero bias); convolutions keep PyTorch's default.

    Args:
        plan: the resolved network.
        model_spec: the spec it came from, kept for saving with runs.
    """

    def __init__(self, plan: Plan, model_spec: Any = None) -> None:
        super().__init__()
        self.plan = plan
        self.model_spec = model_spec
        self.num_cls = plan.num_cls
        self.num_reg = plan.num_reg
        self.embed_dim = plan.dim
        self.num_classes = plan.num_classes

        stem: list[nn.Module] = []
        body: list[nn.Module] = []
        head: list[nn.Module] = []
        for layer in plan.layers:
            {"stem": stem, "body": body, "head": head}[layer.role].append(make_block(layer))
        #: layers probed on a batch of one, not on the meta device, and why (:mod:`sdpnet.models.probe`)
        self.probe_fallbacks = probe_layers(plan, [*stem, *body, *head])
        body_layers = [layer for layer in plan.layers if layer.role == "body"]
        pool_layer, classifier = (layer for layer in plan.layers if layer.role == "head")
        if not hasattr(head[-1], "reset_classifier"):
            raise ValueError(f"classifier {classifier.name}: its module {type(head[-1]).__name__} needs a "
                             f"reset_classifier(num_classes) method and its final layer named fc")

        self.stem = nn.Sequential(*stem)
        if self.num_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, self.num_cls, plan.dim))
        else:
            self.register_parameter("cls_token", None)
        if self.num_reg:
            self.reg_token = nn.Parameter(torch.zeros(1, self.num_reg, plan.dim))
        else:
            self.register_parameter("reg_token", None)
        self.body = nn.ModuleList(body)
        self._kinds = tuple(layer.kind for layer in body_layers)
        self._runs = sequence_runs(self._kinds)
        self._takes_grid = takes_grid(self.body)
        self.pool = head[0]
        self._pool_reads_image = get_schema(pool_layer.name).reads_image
        self.head = nn.Sequential(*head[1:])
        self.stride = plan.stride
        # timm's model attributes (see "The timm model API" in the module docstring)
        self.feature_info = feature_info(plan)
        self.num_features = self.feature_info[-1]["num_chs"]  # forward_features' channels (the pool's input)
        self.in_chans = plan.in_chans
        self.num_prefix_tokens = plan.num_cls + plan.num_reg
        self.global_pool = pool_layer.name  # "" once reset_classifier(0, "") turns the pooling off
        self.grad_checkpointing = False
        self._class_tokens_only = self._shortcut()
        self.init_weights()
        self.head_hidden_size = self._pre_logits_width(classifier.in_dim)
        self.pretrained_cfg = self.default_cfg = self._cfg()  # timm's current and older names

    def _shortcut(self) -> bool:
        """Whether ``forward`` may compute the last body block for the class tokens alone: the pool reads only
        the class tokens and the body ends with a sequence block that takes ``num_queries``."""
        return (bool(self.global_pool) and not self._pool_reads_image and len(self.body) > 0
                and self._kinds[-1] == "sequence"
                and "num_queries" in inspect.signature(self.body[-1].forward).parameters)

    def _pre_logits_width(self, pooled: int) -> int:
        """Width of the classifier's ``pre_logits`` (its output without class-dependent layers), found by running
        it on zeros of the pooled width ``pooled``."""
        classifier = self.head[-1]
        if not hasattr(classifier, "pre_logits"):  # its fc reads the pooled features themselves
            return pooled
        ref = next(classifier.parameters(), None)
        zeros = torch.zeros(2, pooled, device=None if ref is None else ref.device,
                            dtype=None if ref is None else ref.dtype)
        training = classifier.training
        classifier.eval()
        with torch.no_grad():
            width = classifier.pre_logits(zeros).shape[-1]
        classifier.train(training)
        return int(width)

    def _cfg(self) -> dict[str, Any]:
        return timm_cfg(self.plan, self.stem, self.model_spec, num_classes=self.num_classes)

    def init_weights(self) -> None:
        """Initialise by the spec's ``init`` hyperparameter.

        ``timm``: truncated normal (std 0.02) for the tokens and Linear weights, zero Linear biases.
        ``cct`` (Compact-Transformers): the same, but zero class tokens and Kaiming-normal weights for the
        stem's convolutions (CCT's Tokenizer). Position tables are initialised by ``POS`` itself, which reads
        the same hyperparameter; LayerNorms keep PyTorch's weight 1, bias 0.
        """
        cct = self.plan.hparams.get("init", DEFAULTS["init"]) == "cct"
        for p, zero in ((self.cls_token, cct), (self.reg_token, False)):
            if p is not None and zero:
                nn.init.zeros_(p)
            elif p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if cct:
            for m in self.stem.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to exclude from weight decay: tokens and position tables."""
        names = {n for n in ("cls_token", "reg_token") if getattr(self, n) is not None}
        for prefix, m in self.named_modules():
            names.update(f"{prefix}.{p}" for p in getattr(m, "no_weight_decay_params", ()))
        return names

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        parts = [p.expand(B, -1, -1) for p in (self.cls_token, self.reg_token) if p is not None]
        return torch.cat(parts, dim=1) if parts else x.new_zeros(B, 0, x.shape[1])  # (B, T, C)

    def _call(self, block: nn.Module, *args: torch.Tensor, **kwargs: Any) -> Any:
        """``block(*args)``, under activation checkpointing when :meth:`set_grad_checkpointing` is on."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    def _run(self, x: torch.Tensor, take: frozenset[int] = frozenset(), stop: int | None = None,
             class_tokens_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, list[Any]]:
        """The stem and the body on the image ``x``: ``(image tokens, tokens, taps)``.

        Feature indices count the stem's layers then the body's (:attr:`feature_info`). ``taps`` holds
        ``(image (B, C, H, W), tokens (B, T, C) or None in the stem)`` after each index in ``take``; ``stop``
        ends the run after that index (tokens None when it is in the stem). ``class_tokens_only``: the last body
        block (a sequence block) computes the class tokens alone, returned as the tokens, with the image it read.
        """
        taps: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        n = len(self.stem)
        for i, layer in enumerate(self.stem):
            x = layer(x)
            if i in take:
                taps.append((x, None))
            if i == stop:
                return x, None, taps
        t = self._tokens(x)
        for start, end in self._runs:
            kind = self._kinds[start]
            if kind == "layer":
                x = self._call(self.body[start], x)
            else:
                if not self.num_prefix_tokens:  # no tokens: an empty set at the current width
                    t = x.new_zeros(x.shape[0], 0, x.shape[1])
                if kind == "tokens":
                    x, t = self._call(self.body[start], x, t)
                else:  # a run of sequence blocks: join once, split at its end and where a tap or stop needs it
                    s = join_tokens(x, t)
                    for j in range(start, end):
                        grid = {"grid": x.shape[-2:]} if self._takes_grid[j] else {}  # torch.Size (a Proxy under fx)
                        if class_tokens_only and j == len(self.body) - 1:
                            return x, self._call(self.body[j], s, num_queries=self.num_cls, **grid), taps
                        s = self._call(self.body[j], s, **grid)
                        if n + j in take or n + j == stop or j == end - 1:
                            x, t = split_tokens(s, t.shape[1], x.shape[-2:])
                        if n + j in take:
                            taps.append((x, t))
                        if n + j == stop:
                            return x, t, taps
                    continue
            if n + start in take:
                taps.append((x, t))
            if n + start == stop:
                return x, t, taps
        return x, t, taps

    def _features(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        """timm's one-tensor features: ``[prefix tokens; image tokens]`` (B, T + HW, C) when the model has
        class/register tokens, else the feature map (B, C, H, W)."""
        return join_tokens(x, t) if self.num_prefix_tokens and t is not None else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C_in, H, W) -> the features the head reads, in timm's convention: with class/register tokens,
        the sequence ``[class tokens, register tokens, image tokens]`` (B, T + H'W', C) (ViT's layout); without,
        the feature map (B, C, H', W'). ``C`` is :attr:`num_features`."""
        x, t, _ = self._run(x)
        return self._features(x, t)

    def _classify(self, f: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The classifier on pooled features ``f``; ``pre_logits``: its output without class-dependent layers (its
        ``pre_logits(f)``, or ``f`` for a classifier without one)."""
        classifier = self.head[-1]
        if not pre_logits:
            return classifier(f)
        return classifier.pre_logits(f) if hasattr(classifier, "pre_logits") else f

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """:meth:`forward_features`' output -> logits; with ``pre_logits`` the classifier's output without its
        class-dependent layers (B, :attr:`head_hidden_size`), the output of the model after ``reset_classifier(0)``.

        From a token sequence the pool gets the class tokens and the image tokens as an H'W' x 1 grid: the
        sequence no longer says the grid's shape, so a pool must treat the image's positions as a set (GAP,
        SEQPOOL, TOKS do). With the pooling off (``global_pool=""``) the features pass through, or, when there
        is a classifier layer (``num_classes > 0``), the classifier runs at every position (as timm's models
        without pooling do): (B, num_classes, H', W') from a map, (B, T + H'W', num_classes) from a sequence.
        """
        if not self.global_pool:
            return self._dense(x) if self.num_classes and not pre_logits else x
        if self.num_prefix_tokens:
            t = x[:, : self.num_cls]  # register tokens dropped
            image = x[:, self.num_prefix_tokens:].transpose(1, 2).unsqueeze(-1)  # (B, C, H'W', 1)
        else:
            t, image = x.new_zeros(x.shape[0], 0, x.shape[1]), x
        return self._classify(self.pool(image, t), pre_logits)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier at every position of features ``x`` (a map or a token sequence)."""
        if x.ndim == 4:
            B, C, H, W = x.shape
            y = self.head[-1](x.permute(0, 2, 3, 1).reshape(B * H * W, C))
            return y.reshape(B, H, W, y.shape[-1]).permute(0, 3, 1, 2)
        B, N, C = x.shape
        return self.head[-1](x.reshape(B * N, C)).reshape(B, N, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> logits (after ``reset_classifier(0)``: pre-logits features; with the pooling off: features,
        or logits at every position, see :meth:`forward_head`)."""
        if not self.global_pool:
            return self.forward_head(self.forward_features(x))
        x, t, _ = self._run(x, class_tokens_only=self._class_tokens_only)
        return self._classify(self.pool(x, t[:, : self.num_cls]))

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | tuple[int, ...] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, return_prefix_tokens: bool = False) -> Any:
        """timm's ``forward_intermediates``: the image tokens after the stem and body layers in ``indices``.

        Args:
            x: input images (B, C_in, H, W).
            indices: feature indices (:attr:`feature_info`; negative count from the end), an int ``n`` for the
                last ``n``, or None for all.
            norm: accepted for timm's API; there is no norm between the body and the head (the head's norm acts
                on pooled features), so the features are the same either way.
            stop_early: stop after the last index taken (the final features are then those at that index).
            output_fmt: ``NCHW`` (B, C, H', W') or ``NLC`` (B, H'W', C).
            intermediates_only: return only the list of intermediates.
            return_prefix_tokens: each intermediate is ``(image, tokens (B, T, C))`` (T = 0 in the stem).

        Returns:
            ``intermediates``, or ``(features, intermediates)`` where ``features`` is :meth:`forward_features`'
            output (of the layer stopped at, with ``stop_early``).
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt={output_fmt!r}: use 'NCHW' or 'NLC'")
        take, last = take_indices(len(self.feature_info), indices)
        x, t, taps = self._run(x, frozenset(take), last if stop_early or intermediates_only else None)
        out: list[Any] = []
        for image, tokens in taps:
            y = image if output_fmt == "NCHW" else image.flatten(2).transpose(1, 2)
            if return_prefix_tokens:
                y = (y, tokens if tokens is not None else image.new_zeros(image.shape[0], 0, image.shape[1]))
            out.append(y)
        return out if intermediates_only else (self._features(x, t), out)

    def prune_intermediate_layers(self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the layers after the last feature index in ``indices`` (as :meth:`forward_intermediates` counts
        them) and, with ``prune_head``, the pool and the classifier; returns the indices, made absolute.

        Pruning inside the stem drops the class/register tokens too (they are created after the stem).
        ``prune_head=False`` keeps the head, so it needs the pruned body to end in the stem's tokens at the
        head's width. ``prune_norm`` is accepted for timm's API (there is no final norm). :attr:`plan` still
        describes the spec the model was built from.
        """
        take, last = take_indices(len(self.feature_info), indices)
        n = len(self.stem)
        if not prune_head and (last < n or self.feature_info[last]["num_chs"] != self.num_features):
            raise ValueError(f"prune_head=False keeps the head, which reads {self.num_features} channels and the "
                             f"tokens; feature {last} ({self.feature_info[last]['module']}) cannot feed it; "
                             f"prune with prune_head=True")
        if last < n:
            self.stem = self.stem[: last + 1]
            self.body = nn.ModuleList()
            self.cls_token = self.reg_token = None
            self.num_cls = self.num_reg = self.num_prefix_tokens = 0
        else:
            self.body = self.body[: last + 1 - n]
        self._kinds = self._kinds[: len(self.body)]
        self._runs = sequence_runs(self._kinds)
        self._takes_grid = takes_grid(self.body)
        self.feature_info = self.feature_info[: last + 1]
        self.num_features = self.feature_info[-1]["num_chs"]
        if prune_head:
            self.pool, self.head = nn.Identity(), nn.Sequential()
            self.global_pool, self.num_classes, self.head_hidden_size = "", 0, self.num_features
        self._class_tokens_only = self._shortcut()
        return take

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of every body block (``torch.utils.checkpoint``, non-reentrant): their
        activations are recomputed in the backward pass instead of kept."""
        self.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise lr decay, ``--layer-decay``): the stem and the tokens, then each
        body block, then the pool and the head. ``coarse`` is accepted for timm's API (same groups)."""
        return {"stem": r"^stem\.|^cls_token$|^reg_token$", "blocks": [(r"^body\.(\d+)\.", None)],
                "head": r"^pool\.|^head\."}

    def get_classifier(self) -> nn.Module:
        """The final classifier layer (``fc`` of the classifier block; Identity once the head is pruned)."""
        return self.head[-1].fc if len(self.head) else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new final layer for ``num_classes`` (0: none; the model then outputs its pre-logits features), on
        the model's device, in its dtype and train/eval mode.

        Args:
            num_classes: classes of the new ``fc``.
            global_pool: None keeps the pooling; ``""`` turns it off (the model then outputs
                :meth:`forward_features`' output, or logits at every position when ``num_classes > 0``); the
                spec's pool name (e.g. ``"gap"``, any case) turns it back on. Other pools need another spec head.
        """
        if global_pool is not None:
            self._set_global_pool(global_pool)
        if not len(self.head):  # pruned with its head: no classifier to make
            if num_classes:
                raise ValueError(f"reset_classifier({num_classes}): the head was pruned "
                                 f"(prune_intermediate_layers); this model has no classifier")
            return
        self.num_classes = num_classes
        ref = next(self.parameters(), None)
        classifier = self.head[-1]
        with torch.device(ref.device) if ref is not None else contextlib.nullcontext():
            classifier.reset_classifier(num_classes)  # new layers (fc, an MLP's hidden layer) on the device
        if ref is not None:
            classifier.to(dtype=ref.dtype)
        classifier.train(self.training)
        self.pretrained_cfg = self.default_cfg = self._cfg()

    def _set_global_pool(self, global_pool: str) -> None:
        """The pooling on (the spec's pool, named in any case) or off (``""``); the classifier stays."""
        pool_name = next(layer.name for layer in self.plan.layers if layer.kind == "pool")
        if global_pool and (global_pool.upper() != pool_name or not len(self.head)):
            raise ValueError(f"global_pool={global_pool!r}: this model pools with its spec's {pool_name} "
                             f"(global_pool={pool_name.lower()!r}) or not at all (''); another pooling "
                             f"needs another spec head")
        self.global_pool = pool_name if global_pool else ""
        self._class_tokens_only = self._shortcut()


def takes_grid(body: nn.ModuleList) -> tuple[bool, ...]:
    """For each body block, whether its ``forward`` takes ``grid``: a sequence block that does is handed the
    image grid (H, W) of each forward (the sequence no longer says it), so it can follow the resolution."""
    return tuple("grid" in inspect.signature(block.forward).parameters for block in body)


def sequence_runs(kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    """The body (its layers' kinds) split into runs ``(start, stop)``: maximal runs of ``sequence`` blocks,
    other blocks alone."""
    runs: list[tuple[int, int]] = []
    for i, kind in enumerate(kinds):
        if kind == "sequence" and runs and kinds[runs[-1][0]] == "sequence":
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def build(spec: Any, pretrained: Any = None, **overrides: Any) -> SpecNet:
    """Build a model from a spec file path, a spec string, a ``Spec``/``ModelSpec`` or a resolved ``Plan``.

    ``overrides`` replace the spec's hyperparameters (``dim=96``, ``num_classes=10``). ``pretrained``: a
    ``.safetensors`` file (``python -m sdpnet export``), a ``checkpoint.pt`` or a run folder to load the
    weights from (:func:`build_pretrained`).
    """
    if pretrained is not None:
        return build_pretrained(spec, pretrained, **overrides)
    if isinstance(spec, Plan):
        if overrides:
            raise ValueError(f"a resolved Plan takes no overrides (got {sorted(overrides)}); resolve with them")
        return SpecNet(spec)
    model_spec = load_spec(spec, **overrides)
    return SpecNet(resolve(model_spec), model_spec)


def build_pretrained(spec: Any, path: str | os.PathLike, **overrides: Any) -> SpecNet:
    """``sdpnet.build(spec, pretrained=path, **overrides)``: build the spec, then load the weights in ``path``.

    Without a ``num_classes`` override the model gets the class count of the weights (the file's metadata, or its
    classifier's rows for a checkpoint), so its classifier loads too; with another one it keeps a new
    classifier. Every other tensor must fit (position tables are resampled to the spec's ``img_size``), else
    WeightsError. ``num_classes=0`` loads the weights with their classifier, then removes it
    (``reset_classifier(0)``: an ``MLP`` head's hidden layer goes too), so it equals the loaded model reset to 0.
    """
    path = Path(path)
    no_classifier = overrides.get("num_classes") == 0
    if no_classifier:
        del overrides["num_classes"]
    if "num_classes" not in overrides:
        state, meta = state_dict_from(path)
        num = (meta.get("spec") or {}).get("num_classes")
        if num is None:
            probe = build(spec, **overrides)
            prefix = classifier_prefix(probe)
            rows = state.get(prefix + "weight") if prefix else None
            num = int(rows.shape[0]) if rows is not None else None
        if num is not None:
            overrides["num_classes"] = int(num)
    model = build(spec, **overrides)
    load_pretrained(model, path, strict=True)
    if no_classifier:
        model.reset_classifier(0)
    return model


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def feature_info(plan: Plan) -> list[dict[str, Any]]:
    """timm's ``feature_info``: one entry per stem and body layer of ``plan``, in order, with the width of its
    image tokens (``num_chs``), the total stride so far (``reduction``) and the module (``stem.i``/``body.i``)."""
    info: list[dict[str, Any]] = []
    reduction = 1
    for role in ("stem", "body"):
        for i, layer in enumerate(layer for layer in plan.layers if layer.role == role):
            reduction *= layer.stride
            info.append({"num_chs": layer.out_dim, "reduction": reduction, "module": f"{role}.{i}"})
    return info


def default_out_indices(info: list[dict[str, Any]]) -> tuple[int, ...]:
    """The features ``features_only=True`` returns by default: the last layer at each resolution (each stage's
    end), topped up with the latest other layers to three when there are fewer stages."""
    ends = {i for i in range(len(info)) if i == len(info) - 1 or info[i + 1]["reduction"] != info[i]["reduction"]}
    for i in reversed(range(len(info))):
        if len(ends) >= min(3, len(info)):
            break
        ends.add(i)
    return tuple(sorted(ends))


def take_indices(num_features: int, indices: int | list[int] | tuple[int, ...] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: ``indices`` (None: all; int n: the last n; a sequence, negative from the
    end) as absolute indices, and the largest; a ``ValueError`` when out of range."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"the last {indices} features: the model has 1 to {num_features}")
        take = list(range(num_features - indices, num_features))
    else:
        take = [num_features + i if i < 0 else i for i in indices]
        bad = [i for i, k in zip(indices, take) if not 0 <= k < num_features]
        if bad or not take:
            raise ValueError(f"feature indices {list(indices)}: the model has features 0 to {num_features - 1}")
    return take, max(take)


def timm_cfg(plan: Plan, stem: nn.Module, model_spec: Any = None, num_classes: int | None = None) -> dict[str, Any]:
    """The model's timm ``pretrained_cfg``, with the keys and values ``timm.models.PretrainedCfg(**cfg).to_dict()``
    has, so the cfg a model reports equals the one the timm registry holds for its preset.

    ``pool_size`` is the final grid at ``img_size`` for models whose features are a map, None for token models
    (as timm's ViT). ``notes`` declares how input sizes that are not multiples of the stride are handled.
    """
    first_conv = next((n for n, m in stem.named_modules() if isinstance(m, nn.Conv2d)), None)
    pool = next(layer for layer in plan.layers if layer.kind == "pool")
    cfg: dict[str, Any] = {
        "custom_load": False,
        "input_size": (plan.in_chans, plan.img_size, plan.img_size),
        "fixed_input_size": False,
        "interpolation": "bicubic",
        "crop_pct": 0.9,
        "crop_mode": "center",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "num_classes": plan.num_classes if num_classes is None else num_classes,
        "pool_size": None if plan.num_cls + plan.num_reg else tuple(pool.grid),
        "first_conv": f"stem.{first_conv}" if first_conv else None,
        "classifier": "head.0.fc",
        "notes": (f"any input size runs: strided layers round as their convolution or pooling does (patch stems "
                  f"and strided convolutions floor, max-pools with padding round up), and position tables are "
                  f"resampled to the grid; at multiples of the stride ({plan.stride}) the grid is size / "
                  f"{plan.stride}",),
    }
    name = plan.hparams.get("name")
    source = getattr(model_spec, "source", None)
    preset = presets.preset_path(presets.preset_name(name)) if name else None
    if preset is not None and source is not None and Path(source).resolve() == preset.resolve():
        cfg["architecture"] = presets.preset_name(name)
    if plan.hparams.get("description"):
        cfg["description"] = plan.hparams["description"]
    return cfg


__all__ = ["SpecNet", "build", "build_pretrained", "count_params", "default_out_indices", "feature_info",
           "join_tokens", "make_block", "split_tokens", "take_indices", "timm_cfg"]
