"""``ENC``: a transformer encoder block over the tokens and the image, laid out like timm's ViT Block.

Pre-norm by default (timm); ``post_norm`` gives Compact-Transformers' ``TransformerEncoderLayer``, which
replaces the residual stream by its LayerNorm between the attention and the FFN.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sdpnet.blocks.layers.act import GatedAct, get_act
from sdpnet.blocks.layers.drop import make_drop_path, make_layer_scale
from sdpnet.blocks.layers.norm import LN_EPS, get_norm1d
from sdpnet.registry import get_component, register_block


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(head_dim) + bias) v`` over (B, heads, N, head_dim), ``bias`` (heads, N, N) or None:
    ``F.scaled_dot_product_attention``, written out for bf16 on the CPU, where PyTorch's fused CPU kernel was
    1.6-9.8x slower forward and backward than the plain matmuls (fp32: the fused kernel, as fast or faster;
    ``bench/bench_attention.py``)."""
    if bias is not None:
        bias = bias.to(q.dtype)  # autocast leaves the table's bias in float32; the kernel wants q's dtype
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    w = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    w = (w if bias is None else w + bias).softmax(-1)
    return F.dropout(w, dropout_p) @ v if dropout_p else w @ v


# A leaf for torch.fx (symbolic_trace, torchvision's create_feature_extractor): it tests the real device and dtype.
torch.fx.wrap("attend")


class Attention(nn.Module):
    """Multi-head self-attention (``attend``: ``F.scaled_dot_product_attention``; timm's ``Attention`` layout).

    Args:
        dim: width.
        num_heads: heads; ``dim`` must be divisible by it.
        qkv_bias: bias of ``qkv``.
        qk_norm: LayerNorm(head_dim) on queries and keys.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after ``proj``.
        eps: LayerNorm eps of the query/key norms.
        proj_bias: bias of ``proj``.
        pos: the registered position scheme applied to the queries and keys after their norms
            (:mod:`sdpnet.blocks.layers.pos`).
        num_prefix: class + register tokens at the start of the sequence (not image positions).
        grid: (H, W) image grid at the spec's img_size (a forward without ``grid`` uses it).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, eps: float = LN_EPS, proj_bias: bool = True,
                 pos: str = "none", num_prefix: int = 0, grid: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ENC: width {dim} is not divisible by {num_heads} heads; pick h dividing {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.grid = tuple(grid)
        self.pos = get_component("pos", pos)(self.head_dim, num_heads=num_heads, num_prefix=num_prefix, grid=self.grid)

    def forward(self, x: torch.Tensor, num_queries: int | None = None,
                grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); with ``num_queries`` only the first ``num_queries`` tokens attend (and are
        returned). ``grid``: the image tokens' (H, W) in this forward (default: the grid at the spec's img_size)."""
        B, N, C = x.shape
        if num_queries is None:
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        else:
            bias = self.qkv.bias
            q = F.linear(x[:, :num_queries], self.qkv.weight[:C], None if bias is None else bias[:C])
            q = q.reshape(B, num_queries, self.num_heads, self.head_dim).transpose(1, 2)
            kv = F.linear(x, self.qkv.weight[C:], None if bias is None else bias[C:])
            k, v = kv.reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, bias = self.pos(q, k, self.grid if grid is None else grid)
        x = attend(q, k, v, self.attn_drop.p if self.training else 0.0, bias)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, q.shape[2], C)))


class Mlp(nn.Module):
    """Token FFN: ``drop2(fc2(drop1(act(fc1(x)))))`` (timm's ``Mlp``); gated: ``fc1`` gives ``2 * hidden``.

    Args:
        dim: width.
        hidden: hidden width.
        act: activation.
        gated: GLU-style gating (``act(a) * b``).
        drop: dropout after the activation and after ``fc2``.
        bias: bias of ``fc1`` and ``fc2``.
    """

    def __init__(self, dim: int, hidden: int, act: str = "gelu", gated: bool = False, drop: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden if gated else hidden, bias=bias)
        self.act = GatedAct(get_act(act), dim=-1) if gated else get_act(act)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


@register_block("ENC")
class EncoderBlock(nn.Module):
    """Transformer block over the sequence ``[tokens, image]``: timm's ``vision_transformer.Block`` (pre-norm),
    or with ``post_norm`` Compact-Transformers' ``TransformerEncoderLayer``::

        pre-norm:  x = x + attn(norm1(x));  x = x + mlp(norm2(x))
        post_norm: x = x + attn(norm1(x));  x = norm2(x);  x = x + mlp(x)

    A ``sequence`` block: the network hands it (B, T + HW, C), the class/register tokens then the flattened
    image (``sdpnet.models.builder.join_tokens``), and keeps runs of such blocks in that form. Class and register tokens reach
    the image only here.

    Args:
        in_dim: width.
        num_heads: heads (must divide ``in_dim``).
        mlp_ratio: FFN hidden width / width.
        act: FFN activation.
        qkv_bias: bias of the qkv projection.
        qk_norm: LayerNorm on queries and keys.
        layer_scale: LayerScale init value (0: off).
        gated: GLU-style FFN.
        drop: dropout in the FFN (SdP-Net: 0.2).
        drop_path: stochastic depth rate of both branches.
        attn_drop: dropout on the attention weights (CCT: 0.1).
        proj_drop: dropout after the attention's output projection (CCT: its ``dropout``).
        post_norm: CCT's layout (above) instead of pre-norm.
        eps: eps of every norm in the block (None: each norm's own, LayerNorm 1e-6 as timm; CCT 1e-5).
        norm: ``ln`` LayerNorm, or ``lnnb`` LayerNorm without bias (CAFormer), for ``norm1`` and ``norm2``.
        proj_bias: bias of the attention's output projection.
        mlp_bias: bias of the FFN's two layers.
        res_scale: ResScale init value: learnable per-channel scales ``rs1``/``rs2`` of the two shortcuts
            (0: off; CAFormer: 1), as MetaFormer's ``x = rs(x) + ls(branch)``.
        pos: position scheme inside attention (a registered ``pos`` name; ``rope``: 2-D rotary).
        grid: (H, W) image grid entering the block at the spec's img_size.
        num_tokens: class + register tokens at the start of the sequence.
    """

    def __init__(self, in_dim: int, num_heads: int, mlp_ratio: float = 4.0, act: str = "gelu",
                 qkv_bias: bool = True, qk_norm: bool = False, layer_scale: float = 0.0, gated: bool = False,
                 drop: float = 0.0, drop_path: float = 0.0, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 post_norm: bool = False, eps: float | None = None, norm: str = "ln", proj_bias: bool = True,
                 mlp_bias: bool = True, res_scale: float = 0.0, pos: str = "none", grid: tuple[int, int] = (1, 1),
                 num_tokens: int = 0) -> None:
        super().__init__()
        dim = in_dim
        self.post_norm = post_norm
        self.rs1 = make_layer_scale(dim, res_scale)
        self.norm1 = get_norm1d(norm, dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm, attn_drop=attn_drop,
                              proj_drop=proj_drop, eps=LN_EPS if eps is None else eps, proj_bias=proj_bias, pos=pos,
                              num_prefix=num_tokens, grid=grid)
        self.ls1 = make_layer_scale(dim, layer_scale)
        self.drop_path1 = make_drop_path(drop_path)
        self.rs2 = make_layer_scale(dim, res_scale)
        self.norm2 = get_norm1d(norm, dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, gated=gated, drop=drop, bias=mlp_bias)
        self.ls2 = make_layer_scale(dim, layer_scale)
        self.drop_path2 = make_drop_path(drop_path)

    def forward(self, s: torch.Tensor, num_queries: int | None = None,
                grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The sequence (B, N, C) -> (B, N, C). ``num_queries`` updates and returns just the first
        ``num_queries`` tokens, (B, num_queries, C): they attend over all N and nothing is computed for the
        rest (a final block whose image output is never read). ``grid``: the image grid (H, W) of this forward,
        which the network passes to a sequence block whose forward takes it (default: the planned grid)."""
        q = s if num_queries is None else s[:, :num_queries]
        q = self.rs1(q) + self.drop_path1(self.ls1(self.attn(self.norm1(s), num_queries, grid)))
        if self.post_norm:
            q = self.norm2(q)
            return self.rs2(q) + self.drop_path2(self.ls2(self.mlp(q)))
        return self.rs2(q) + self.drop_path2(self.ls2(self.mlp(self.norm2(q))))
