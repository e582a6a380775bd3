"""The built-in block vocabulary: schemas only (no torch), implemented in :mod:`sdpnet.blocks`.

Each keyword's ``hparam`` names the spec-file hyperparameter that gives its default, so
``{"heads": 12}`` in a spec file sets every ``ENC``'s ``h`` unless the block says otherwise.
"""
from __future__ import annotations

from dataclasses import replace

from sdpnet.registry import BlockSchema, Param, declare_block

ACTS = ("gelu", "relu", "kelu", "silu", "tanh", "none")
NORMS = ("bn", "ln", "none")

# Global hyperparameters that no block keyword reads but the builder does.
GLOBAL_HPARAMS = {
    "name": "model name (used for registration and run folders)",
    "description": "free text",
    "arch": "the architecture: a spec string or its JSON tree",
    "dim": "default width of every block (the stem's output width)",
    "num_classes": "number of classes of the classifier",
    "in_chans": "input image channels",
    "img_size": "resolution the position embeddings are created for",
    "drop_path": "stochastic depth rate of the last body block (grows linearly from 0)",
}


def _act(default_hparam: str | None = "act", default: str = "gelu", roles=None) -> Param:
    return Param("act", "act", str, default_hparam, default, ACTS, roles, "activation")


def _norm(default: str, hparam: str | None = None, roles=None) -> Param:
    return Param("norm", "norm", str, hparam, default, NORMS, roles, "normalisation layer")


_D = Param("d", "dim", int, None, None, doc="output width (default: the current width; the stem: `dim`)")
_BIAS = Param("bias", "bias", bool, None, True, doc="bias in the convolution / linear layers")
_LS = Param("ls", "layer_scale", float, "layer_scale", 0.0, doc="LayerScale init value (0 = off)")
_RATIO = Param("r", "mlp_ratio", float, "mlp_ratio", 4.0, doc="hidden width / width of the MLP")
_GLU = Param("glu", "gated", bool, "gated", False, doc="gated (GLU-style) FFN")
_DROP = Param("drop", "drop", float, "dropout", 0.0, doc="dropout in the FFN")

for schema in (
    BlockSchema(
        "P", ("stem",), "patch_size", True,
        params=(_D, _BIAS, _norm("none"), _act(None, "none")),
        doc="patchify: n x n conv with stride n (then optional activation and norm, as ConvMixer)",
        example="P16(d=384)",
    ),
    BlockSchema(
        "CT", ("stem",), "kernel_size", True,
        params=(_D, Param("s", "stride", int, None, None, doc="conv stride (default max(1, k//2 - 1), as CCT)"),
                Param("bias", "bias", bool, None, False, doc="conv bias"), _norm("none"), _act(None, "relu")),
        doc="CCT conv tokenizer layer: k x k conv, (norm,) activation, 3x3 max-pool stride 2 (intermediate width 64)",
        example="CT3x2",
    ),
    BlockSchema(
        "CONV", ("stem", "body"), "kernel_size", True,
        params=(_D, Param("s", "stride", int, None, 1, doc="stride"),
                Param("bias", "bias", bool, None, False, doc="conv bias"), _norm("bn"), _act()),
        doc="k x k conv + norm + activation",
        example="CONV3(d=64,s=2)",
    ),
    BlockSchema(
        "DWC", ("body",), "kernel_size", False, 7,
        params=(_norm("bn", "conv_norm"), _act(), _BIAS, _LS), residual=True,
        doc="SdP-Net depthwise mixer: x + act(pointwise(depthwise_k(norm(x))))",
        example="DWC7",
    ),
    BlockSchema(
        "CM", ("body",), "kernel_size", True,
        params=(_act(), _BIAS), residual=True,
        doc="ConvMixer layer: x + BN(act(depthwise_k(x))), then BN(act(pointwise(x)))",
        example="CM9",
    ),
    BlockSchema(
        "MLP", ("body", "head"),
        params=(
            replace(_RATIO, roles=("body",)),
            _act(roles=("body",)),
            _norm("bn", "conv_norm", roles=("body",)),
            Param("bias", "bias", bool, None, True, roles=("body",), doc="bias in the 1x1 convolutions"),
            Param("ls", "layer_scale", float, "layer_scale", 0.0, roles=("body",), doc="LayerScale init value (0 = off)"),
            Param("glu", "gated", bool, "gated", False, roles=("body",), doc="gated (GLU-style) MLP"),
            Param("h", "hidden", int, "head_hidden", None, roles=("head",),
                  doc="head: hidden width (default: the current width)"),
        ),
        residual=True,
        doc="body: channel MLP on the image tokens, residual; head: norm, hidden layer with tanh, classifier",
        example="MLP(r=2)",
    ),
    BlockSchema(
        "ENC", ("body",),
        params=(
            Param("h", "num_heads", int, "heads", None, doc="attention heads (default: width // 64)"),
            _RATIO, _act(),
            Param("bias", "qkv_bias", bool, "qkv_bias", True, doc="bias in the qkv projection"),
            Param("qkn", "qk_norm", bool, "qk_norm", False, doc="LayerNorm on queries and keys"),
            _LS, _GLU, _DROP,
        ),
        residual=True,
        doc="pre-norm transformer encoder block over class/register tokens + image tokens",
        example="ENC(h=8,r=2)",
    ),
    BlockSchema(
        "DOWN", ("body",), "factor", True,
        params=(Param("d", "dim", int, None, None, doc="new width (default: twice the current width)"),
                _norm("bn", "conv_norm")),
        doc="downsample the image tokens by n (norm + n x n conv stride n); tokens get a linear projection",
        example="DOWN2(d=256)",
    ),
    BlockSchema("POS", ("stem", "body"),
                params=(Param("cls", "cls", bool, None, False,
                              doc="also a learnable position per class token (ViT); then POS must stand in the body"),),
                doc="learnable absolute position embedding, resampled with the resolution",
                example="P16+POS"),
    BlockSchema(
        "NEMB", ("stem", "body"), "kernel_size", False, 3,
        doc="neighbourhood embedding: a (H+k-1) x (W+k-1) table, each token gets its k x k neighbourhood mean",
        example="P16+NEMB3",
    ),
    BlockSchema("CLS", ("stem", "body", "head"), "count", False, 1, doc="declare n class tokens", example="CLS5"),
    BlockSchema("REG", ("stem", "body", "head"), "count", False, 1,
                doc="declare n register tokens (join attention, dropped at the end)", example="REG4"),
    BlockSchema("GAP", ("head",), doc="pool: mean of the image tokens", example="GAP+LIN"),
    BlockSchema("TOKS", ("head",), doc="pool: mean of the class tokens", example="TOKS+LIN"),
    BlockSchema("SEQPOOL", ("head",), params=(_norm("ln"),),
                doc="CCT sequence pooling: norm, then attention-weighted mean of the image tokens",
                example="SEQPOOL+LIN(norm=none)"),
    BlockSchema("LIN", ("head",), params=(_norm("ln"), _BIAS), doc="linear classifier (after a norm)",
                example="GAP+LIN"),
):
    declare_block(schema)

POOL_BLOCKS = ("GAP", "TOKS", "SEQPOOL")
CLASSIFIER_BLOCKS = ("LIN", "MLP")
DECLARATION_BLOCKS = ("CLS", "REG")
TOKENIZER_BLOCKS = ("P", "CT", "CONV")
