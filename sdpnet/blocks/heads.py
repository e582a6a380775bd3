"""Head blocks: pooling (``GAP``, ``TOKS``, ``SEQPOOL``) and classifiers (``LIN``, head ``MLP``).

Pooling blocks take the image (B, C, H, W) and the class tokens (B, num_cls, C) (register tokens are dropped
before the head) and return features (B, C). Classifiers map features to logits and can be reset to a new
number of classes (0: no class-dependent layers; the output is their ``pre_logits``, the normed features).
"""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.norm import LN_EPS, get_norm1d, get_norm2d
from sdpnet.registry import register_block


class _Pool(nn.Module):
    def __init__(self, in_dim: int) -> None:
        super().__init__()


@register_block("GAP")
class GlobalAvgPool(_Pool):
    """Mean of the image tokens.

    Args:
        in_dim: channels.
    """

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


@register_block("TOKS")
class TokenPool(_Pool):
    """Mean of the class tokens (with one class token: that token, as ViT).

    Args:
        in_dim: channels.
    """

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return t.mean(1)


@register_block("SEQPOOL")
class SeqPool(_Pool):
    """CCT sequence pooling over the image tokens: ``softmax(attention_pool(norm(x)))``-weighted mean of ``norm(x)``.

    The LayerNorm's eps defaults to 1e-5, as CCT's.

    Args:
        in_dim: channels.
        norm: ``ln``, ``bn`` or ``none``, applied to the image tokens first.
        eps: LayerNorm eps.
    """

    def __init__(self, in_dim: int, norm: str = "ln", eps: float = 1e-5) -> None:
        super().__init__(in_dim)
        self.norm = get_norm2d(norm, in_dim, eps=eps)
        self.attention_pool = nn.Linear(in_dim, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        w = self.attention_pool(s).softmax(dim=1)  # (B, HW, 1)
        return (w.transpose(1, 2) @ s).squeeze(1)


class _Classifier(nn.Module):
    """Ends in ``fc``: Linear(fc_in, num_classes), or Identity when ``num_classes`` is 0.

    ``pre_logits(f)`` is the classifier's output once ``reset_classifier(0)`` has removed its class-dependent
    layers (timm's ``forward_head(..., pre_logits=True)``): for ``LIN`` what ``fc`` reads, ``forward(f) =
    fc(pre_logits(f))``.
    """

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits(f))

    def _set_fc(self, fc_in: int, num_classes: int, bias: bool = True) -> None:
        self.fc_in, self.fc_bias = fc_in, bias
        self.num_classes = num_classes
        self.fc = nn.Linear(fc_in, num_classes, bias=bias) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a new one for ``num_classes`` (0: none)."""
        self._set_fc(self.fc_in, num_classes, self.fc_bias)


@register_block("LIN")
class LinearHead(_Classifier):
    """``fc(norm(f))``: linear classifier after a norm (LayerNorm eps 1e-6 unless ``eps`` is set).

    With ``TOKS`` and one class token this is timm's ViT head (timm's final ``norm`` is ``norm`` here), and
    with ``eps=1e-5`` ViT-Lite's (Compact-Transformers' final ``norm`` and ``fc``).

    Args:
        in_dim: feature width.
        num_classes: classes (0: no ``fc``).
        norm: ``ln``, ``bn`` or ``none``.
        bias: bias of ``fc``.
        eps: LayerNorm eps.
    """

    def __init__(self, in_dim: int, num_classes: int, norm: str = "ln", bias: bool = True,
                 eps: float | None = None) -> None:
        super().__init__()
        self.norm = get_norm1d(norm, in_dim, eps=eps)
        self._set_fc(in_dim, num_classes, bias)

    def pre_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(f)


@register_block("MLP", role="head")
class MlpHead(_Classifier):
    """ViT-style MLP head: ``fc(hidden_norm(act(pre(norm(f)))))`` with LayerNorm (eps 1e-6), tanh, no hidden norm.

    With ``hidden_act="sqrelu"`` and ``hidden_norm="ln"`` it is MetaFormer's ``MlpHead`` (after its pooled norm);
    with ``feature_norm="none"`` and ``hidden_act="hardswish"`` MobileNetV3's ``conv_head`` + ``act2`` +
    ``classifier`` (a 1x1 conv on pooled features is ``pre``).
    The hidden layer belongs to the classifier, as in timm's MetaFormer: ``pre_logits(f)`` is ``norm(f)``, and with
    ``num_classes=0`` there is no hidden layer either, so the output is the normed pooled features (timm's
    ``num_classes=0`` convention: ``num_features`` wide, whatever the hidden width).

    Args:
        in_dim: feature width.
        num_classes: classes (0: no hidden layer and no ``fc``).
        hidden: hidden width (default ``in_dim``).
        hidden_act: activation of the hidden layer.
        hidden_norm: norm after that activation (``none``, ``ln``, ...).
        feature_norm: norm of the pooled features (``ln``, ``none``, ...).
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int | None = None, hidden_act: str = "tanh",
                 hidden_norm: str = "none", feature_norm: str = "ln") -> None:
        super().__init__()
        self.in_dim, self.hidden = in_dim, hidden or in_dim
        self.hidden_act, self.hidden_norm_name = hidden_act, hidden_norm
        self.norm = get_norm1d(feature_norm, in_dim, eps=LN_EPS)
        self._set_hidden(num_classes > 0)
        self._set_fc(self.hidden, num_classes)

    def _set_hidden(self, on: bool) -> None:
        """The hidden layer (``pre``, ``act``, ``hidden_norm``), new, or Identities when ``on`` is False."""
        self.pre = nn.Linear(self.in_dim, self.hidden) if on else nn.Identity()
        self.act = get_act(self.hidden_act) if on else nn.Identity()
        self.hidden_norm = get_norm1d(self.hidden_norm_name, self.hidden) if on else nn.Identity()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden_norm(self.act(self.pre(self.norm(f)))))

    def pre_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(f)

    def reset_classifier(self, num_classes: int) -> None:
        """A new ``fc`` for ``num_classes``, keeping a trained hidden layer; 0: neither (the output is
        ``norm(f)``); from 0 to more classes: a new hidden layer too."""
        if num_classes == 0 or isinstance(self.pre, nn.Identity):
            self._set_hidden(num_classes > 0)
        self._set_fc(self.hidden, num_classes)
