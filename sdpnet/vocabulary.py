"""The built-in block vocabulary: schemas only (no torch), implemented in :mod:`sdpnet.blocks`.

Declared through the same public API as a user's block (:func:`sdpnet.registry.declare_block`), so nothing
here is special to the parser or the resolver. Each keyword's ``hparam`` names the spec-file hyperparameter
that gives its default, so ``{"heads": 12}`` in a spec file sets every ``ENC``'s ``h`` unless the block says
otherwise.
"""
from __future__ import annotations

from dataclasses import replace

from sdpnet.registry import MAX_WIDTH, BlockSchema, Derived, Param, Range, Width, declare_block, declare_component

# The built-in components, name -> doc (torch-free; the constructors are bound under the same names in
# sdpnet/blocks/layers/norm.py, act.py and pos.py). A new built-in is one line here and one line there.
NORMS = {
    "bn": "BatchNorm (BatchNorm2d on images, BatchNorm1d on features and token sequences), eps 1e-5 unless the "
          "block sets eps",
    "ln": "LayerNorm over the channels, the block's eps (1e-6 unless the block says otherwise)",
    "none": "no norm (identity)",
    "lnnb": "LayerNorm with a weight and no bias (MetaFormer's LayerNorm2dNoBias), the block's eps",
    "gn1": "GroupNorm with one group (over channels and positions), eps 1e-5 unless the block sets eps "
           "(PoolFormer's GroupNorm1)",
    "gn1nb": "GroupNorm with one group, a weight and no bias, eps 1e-6 unless the block sets eps (timm's "
             "GroupNorm1NoBias, PoolFormer v2)",
    "rms": "RMSNorm over the channels (torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) * weight), the block's eps",
}
ACTS = {
    "gelu": "GELU (exact erf form)",
    "relu": "ReLU",
    "kelu": "KeLU: a smooth ReLU, exactly ReLU outside [-3.5, 3.5] (SdP-Net)",
    "silu": "SiLU (swish)",
    "tanh": "tanh",
    "none": "no activation (identity)",
    "starrelu": "StarReLU: s * relu(x)^2 + b with learnable scalars s = 1, b = 0 (MetaFormer)",
    "sqrelu": "squared ReLU, relu(x)^2 (Primer)",
    "relu6": "ReLU6, min(max(x, 0), 6) (MobileNet v2)",
    "hardswish": "hard swish, x * relu6(x + 3) / 6 (MobileNetV3)",
    "hardsigmoid": "hard sigmoid, relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate)",
    "sigmoid": "logistic sigmoid (EfficientNet's squeeze-excitation gate)",
}
POS_SCHEMES = {
    "none": "no position information inside attention",
    "rope": "2-D axial rotary embeddings of the image tokens' (x, y) positions, temperature 100, class and "
            "register tokens not rotated (timm's RotaryEmbeddingCat as in vit_small_patch16_rope_224)",
    "relbias": "learnable relative position bias over the image grid, one per head and (dy, dx) offset, resampled "
               "with the resolution; zero to and from class/register tokens (Swin, CoAtNet; timm's RelPosBias)",
}
for _kind, _table in (("norm", NORMS), ("act", ACTS), ("pos", POS_SCHEMES)):
    for _name, _doc in _table.items():
        declare_component(_kind, _name, _doc)
INITS = ("timm", "cct")  # initialisation schemes (hyperparameter ``init``)
MAX_KERNEL = 1_023

# Global hyperparameters that the builder reads (``init`` also gives POS's ``init`` keyword its default).
GLOBAL_HPARAMS = {
    "name": "model name (used for registration and run folders)",
    "description": "free text",
    "arch": "the architecture: a spec string or its JSON tree",
    "dim": "default width of every block (the stem's output width)",
    "num_classes": "number of classes of the classifier",
    "in_chans": "input image channels",
    "img_size": "resolution the position embeddings are created for",
    "drop_path": "stochastic depth rate of the last body block (grows linearly from 0)",
    "init": "initialisation: timm (tokens, Linear and position tables trunc-normal std 0.02, zero Linear bias) "
            "or cct (Compact-Transformers: zero class tokens, Kaiming-normal stem convolutions, position "
            "tables std 0.2, Linear trunc-normal std 0.02 with zero bias)",
}

KERNEL = Range(1, MAX_KERNEL)
ODD_KERNEL = Range(1, MAX_KERNEL, odd=True)
# CCT pads its tokenizer's conv by max(1, k // 2): only odd k >= 3 keep the grid the plan gives (ceil(H / s) before
# the pool); k = 1 or an even k grows it, which the build-time probe refuses (sdpnet.models.probe)
TOKENIZER_KERNEL = Range(3, MAX_KERNEL, odd=True)
WIDTH = Range(1, MAX_WIDTH)


def _act(default_hparam: str | None = "act", default: str = "gelu", roles=None) -> Param:
    return Param("act", "act", str, default_hparam, default, "act", roles, "activation")


def _norm(default: str, hparam: str | None = None, roles=None) -> Param:
    return Param("norm", "norm", str, hparam, default, "norm", roles, "normalisation layer")


_D = Param("d", "dim", int, doc="output width (default: the current width; the stem's last tokenizer: `dim`)",
           range=WIDTH)
_BIAS = Param("bias", "bias", bool, None, True, doc="bias in the convolution / linear layers")
_LS = Param("ls", "layer_scale", float, "layer_scale", 0.0, doc="LayerScale init value (0 = off)",
            range=Range(0, 1e4))
_RATIO = Param("r", "mlp_ratio", float, "mlp_ratio", 4.0, doc="hidden width / width of the MLP",
               range=Range(0, 64, lo_open=True))
_GLU = Param("glu", "gated", bool, "gated", False, doc="gated (GLU-style) FFN")
_DROP = Param("drop", "drop", float, "dropout", 0.0, doc="dropout in the FFN", range=Range(0, 1))
_STRIDE = Range(1, 1_024)
_RS = Param("rs", "res_scale", float, "res_scale", 0.0, range=Range(0, 1e4),
            doc="ResScale init value: a learnable per-channel scale of the shortcut (0 = off)")


def _eps(default: float | None = None) -> Param:
    return Param("eps", "eps", float, "ln_eps", default,
                 doc="eps of the block's norms (unset: the norm's own, 1e-6; bn and gn1 1e-5)",
                 range=Range(0, 1, lo_open=True, hi_open=True))


for schema in (
    BlockSchema(
        "P", ("stem",), "layer", "patch_size", True, arg_range=Range(1, 1_024),
        params=(_D, _BIAS, _norm("none", "down_norm"), _act(None, "none"),
                Param("k", "kernel_size", int, None, None, range=KERNEL,
                      doc="conv kernel (default n); k > n overlaps the patches, padding (k - n + 1) // 2")),
        tokenizer=True, width=Width("d"), stride="patch_size",
        doc="patchify: n x n conv with stride n (then optional activation and norm, as ConvMixer; k=: overlapping)",
        example="P16(d=384)",
    ),
    BlockSchema(
        "CT", ("stem",), "layer", "kernel_size", True, arg_range=TOKENIZER_KERNEL,
        params=(_D, Param("s", "stride", int, None, Derived(lambda kw, _: max(1, kw["kernel_size"] // 2 - 1),
                                                           "max(1, k // 2 - 1), as CCT"),
                          doc="conv stride", range=_STRIDE),
                Param("bias", "bias", bool, None, False, doc="conv bias"), _norm("none"), _eps(),
                _act(None, "relu")),
        tokenizer=True, width=Width("d", stem=64), stride=Derived(lambda kw, _: 2 * kw["stride"], "2 s"),
        doc="CCT conv tokenizer layer: k x k conv, (norm,) activation, 3x3 max-pool stride 2 (width 64 unless last)",
        example="CT3x2",
    ),
    BlockSchema(
        "CONV", ("stem", "body"), "layer", "kernel_size", True, arg_range=ODD_KERNEL,
        params=(_D, Param("s", "stride", int, None, 1, doc="stride", range=_STRIDE),
                Param("bias", "bias", bool, None, False, doc="conv bias"), _norm("bn"), _act()),
        tokenizer=True, width=Width("d"), stride="stride",
        doc="k x k conv + norm + activation (odd k, padding k // 2)",
        example="CONV3(d=64,s=2)",
    ),
    BlockSchema(
        "DWC", ("body",), "layer", "kernel_size", False, 7, arg_range=ODD_KERNEL,
        params=(_norm("bn", "conv_norm"), _act(), _BIAS, _LS), residual=True,
        doc="SdP-Net depthwise mixer: x + act(pointwise(depthwise_k(norm(x))))",
        example="DWC7",
    ),
    BlockSchema(
        "CM", ("body",), "layer", "kernel_size", True, arg_range=KERNEL,
        params=(_act(), _BIAS), residual=True,
        doc="ConvMixer layer: x + BN(act(depthwise_k(x))), then BN(act(pointwise(x)))",
        example="CM9",
    ),
    BlockSchema(
        "MLP", ("body", "head"), {"body": "layer", "head": "classifier"},
        params=(
            replace(_RATIO, roles=("body",)),
            _act(roles=("body",)),
            _norm("bn", "conv_norm", roles=("body",)),
            Param("bias", "bias", bool, "mlp_bias", True, roles=("body",), doc="bias in the 1x1 convolutions"),
            replace(_LS, roles=("body",)),
            replace(_RS, roles=("body",)),
            replace(_GLU, roles=("body",), doc="gated (GLU-style) MLP"),
            Param("h", "hidden", int, "head_hidden", None, roles=("head",),
                  doc="head: hidden width (default: the current width)", range=WIDTH),
            Param("hact", "hidden_act", str, "head_act", "tanh", "act", ("head",), "head: hidden activation"),
            Param("hnorm", "hidden_norm", str, "head_norm", "none", "norm", ("head",),
                  "head: norm after the hidden activation (MetaFormer: ln)"),
            Param("pnorm", "feature_norm", str, None, "ln", "norm", ("head",),
                  "head: norm of the pooled features before the hidden layer (MobileNetV3: none)"),
        ),
        residual=True, context={"body": (), "head": ("num_classes",)},
        doc="body: channel MLP on the image tokens, residual; head: norm, hidden layer (tanh), classifier",
        example="MLP(r=2)",
    ),
    BlockSchema(
        "ENC", ("body",), "sequence",
        params=(
            Param("h", "num_heads", int, "heads", Derived(lambda kw, width: max(1, width // 64), "width // 64"),
                  doc="attention heads", range=Range(1, MAX_WIDTH), divides=True),
            _RATIO, _act(),
            Param("bias", "qkv_bias", bool, "qkv_bias", True, doc="bias in the qkv projection"),
            Param("qkn", "qk_norm", bool, "qk_norm", False, doc="LayerNorm on queries and keys"),
            _LS, _GLU, _DROP,
            Param("norm", "norm", str, "enc_norm", "ln", "norm",
                  doc="the two norms (norm1, norm2): ln, or lnnb without bias (CAFormer), or any norm"),
            Param("pos", "pos", str, "attn_pos", "none", "pos",
                  doc="position scheme inside attention, on queries and keys (rope: 2-D rotary)"),
            Param("pbias", "proj_bias", bool, "proj_bias", True, doc="bias of the attention's output projection"),
            Param("mbias", "mlp_bias", bool, "mlp_bias", True, doc="bias of the FFN's two layers"),
            _RS,
            Param("adrop", "attn_drop", float, "attn_dropout", 0.0, doc="dropout on the attention weights",
                  range=Range(0, 1)),
            Param("pdrop", "proj_drop", float, "proj_dropout", 0.0,
                  doc="dropout after the attention's output projection", range=Range(0, 1)),
            Param("post", "post_norm", bool, "post_norm", False,
                  doc="CCT layout: the stream itself is normalised after attention, "
                      "x = norm2(x + attn(norm1(x))), then x + ffn(x)"),
            replace(_eps(), doc="eps of the two norms and the query/key norms (unset: the norm's own, 1e-6; "
                                "bn 1e-5)"),
        ),
        residual=True, context=("grid", "num_tokens"),
        doc="transformer encoder block over class/register tokens + image tokens (pre-norm; post=1: CCT's)",
        example="ENC(h=8,r=2)",
    ),
    BlockSchema(
        "DOWN", ("body",), "tokens", "factor", True, arg_range=_STRIDE,
        params=(replace(_D, doc="new width (default: twice the current width)"), _norm("bn", "down_norm"),
                Param("k", "kernel_size", int, "down_kernel", None, range=KERNEL,
                      doc="conv kernel (default n; MetaFormer: k=3 with n=2), padding (k - n + 1) // 2")),
        width=Width("d", factor=2), stride="factor", context=("num_tokens",),
        doc="downsample the image tokens by n (norm + k x k conv stride n, k = n unless given); "
            "tokens get a linear projection",
        example="DOWN2(d=256)",
    ),
    BlockSchema("POS", ("stem", "body"), "layer",
                params=(Param("cls", "cls", bool, None, False, kind="tokens", needs=("cls",),
                              doc="also a position per class token (ViT); then POS stands in the body"),
                        Param("sine", "sine", bool, None, False,
                              doc="fixed sinusoidal table (CCT's sine; class tokens take the first positions)"),
                        Param("init", "init", str, "init", "timm", INITS,
                              doc="learnable table init: timm trunc-normal std 0.02, cct std 0.2")),
                context=("grid", "num_cls"),
                doc="absolute position embedding (learnable or sine), resampled with the resolution",
                example="P16+POS"),
    BlockSchema(
        "NEMB", ("stem", "body"), "layer", "kernel_size", False, 3, arg_range=KERNEL, context=("grid",),
        doc="neighbourhood embedding: a (H+k-1) x (W+k-1) table, each token gets its k x k neighbourhood mean",
        example="P16+NEMB3",
    ),
    BlockSchema("CLS", ("stem", "body", "head"), "declaration", "count", False, 1, arg_range=Range(1, 4_096),
                declares="cls", doc="declare n class tokens", example="CLS5"),
    BlockSchema("REG", ("stem", "body", "head"), "declaration", "count", False, 1, arg_range=Range(1, 4_096),
                declares="reg", doc="declare n register tokens (join attention, dropped at the end)", example="REG4"),
    BlockSchema("GAP", ("head",), "pool", default_for=("pool",), doc="pool: mean of the image tokens",
                example="GAP+LIN"),
    BlockSchema("TOKS", ("head",), "pool", needs=("cls",), default_for=("pool_cls",), reads_image=False,
                doc="pool: mean of the class tokens", example="TOKS+LIN"),
    BlockSchema("SEQPOOL", ("head",), "pool", params=(_norm("ln"), replace(_eps(1e-5), doc="eps of the norm (CCT's LayerNorm: 1e-5)")),
                doc="CCT sequence pooling: norm, then attention-weighted mean of the image tokens",
                example="SEQPOOL+LIN(norm=none)"),
    BlockSchema("LIN", ("head",), "classifier", params=(_norm("ln"), _eps(), _BIAS), context=("num_classes",),
                default_for=("classifier",), doc="linear classifier (after a norm)", example="GAP+LIN"),
):
    declare_block(schema)

# The hybrid design space (ConvNeXt, MetaFormer, MLP-Mixer): residual layers usable wherever a layer stands.
declare_block(BlockSchema(
    "CNX", ("body",), "layer", "kernel_size", False, 7, arg_range=ODD_KERNEL,
    params=(_RATIO, _act(), _norm("ln", "conv_norm"),
            Param("bias", "bias", bool, None, True, doc="bias of the depthwise conv and the MLP"),
            replace(_LS, default=1e-6)),
    residual=True,
    doc="ConvNeXt block: x + ls * fc2(act(fc1(norm(depthwise_k(x))))), MLP ratio r",
    example="CNX7x3-DOWN2",
))
declare_block(BlockSchema(
    "POOL", ("body",), "layer", "pool_size", False, 3, arg_range=ODD_KERNEL,
    params=(_norm("gn1", "conv_norm"), replace(_LS, default=1e-5), _RS),
    residual=True,
    doc="PoolFormer token mixer: x + ls * (avgpool_k(n) - n), n = norm(x) (stride 1, padding not counted)",
    example="POOL3+MLP",
))
declare_block(BlockSchema(
    "SEP", ("body",), "layer", "kernel_size", False, 7, arg_range=ODD_KERNEL,
    params=(Param("r", "expansion_ratio", float, None, 2.0, doc="hidden width / width",
                  range=Range(0, 64, lo_open=True)),
            _act("act", "starrelu"), _norm("lnnb", "conv_norm"),
            Param("bias", "bias", bool, None, False, doc="bias of the three convolutions"), _LS, _RS),
    residual=True,
    doc="ConvFormer token mixer: x + ls * pw2(depthwise_k(act(pw1(norm(x))))), pw1 to r x width",
    example="SEP7+MLP",
))
declare_block(BlockSchema(
    "TMLP", ("body",), "layer",
    params=(Param("r", "mlp_ratio", float, None, 0.5, range=Range(0, 64, lo_open=True),
                  doc="hidden width / channels (MLP-Mixer: 0.5)"),
            _act(), _norm("ln", "conv_norm"), _BIAS),
    residual=True, context=("grid",),
    doc="MLP-Mixer token mixing: x + an MLP over the H*W positions of each channel of norm(x) "
        "(resampled for other grids)",
    example="TMLP+MLP",
))
declare_block(BlockSchema(
    "NORM", ("stem", "body"), "layer", params=(_norm("ln", "conv_norm"), _eps()),
    doc="a norm over the channels of the image tokens, on its own",
    example="...-NORM-GAP+LIN(norm=none)",
))
declare_block(BlockSchema(
    "DROP", ("stem", "body"), "layer",
    params=(Param("p", "p", float, None, 0.5, range=Range(0, 1, hi_open=True),
                  doc="probability of zeroing an element in training (nn.Dropout's default 0.5)"),),
    doc="dropout on the image tokens, on its own (training only)",
    example="...-DROP(p=0.3)-DOWN7(d=128)-GAP+MLP",
))

# The convolutional families (ResNet, MobileNet, EfficientNet): residual layers that may change the width and the
# grid (``d=``, ``s=``), for convolutional stages and the conv stems of hybrids.
_S = Param("s", "stride", int, None, 1, doc="stride of the block (its strided conv; the shortcut follows)",
           range=_STRIDE)
_SKIP = Param("skip", "skip", bool, None, True,
              doc="identity shortcut when the stride is 1 and the width is kept (timm's noskip=false)")
_SE = (
    Param("se", "se_ratio", float, "se_ratio", 0.0, range=Range(0, 1),
          doc="squeeze-excitation ratio (0 = off): SE width = ratio x the width of its base (`sebase`)"),
    Param("sebase", "se_base", str, "se_base", "in", ("in", "mid"),
          doc="SE width from the block's input width (EfficientNet; exactly timm's round(mid * se / e)) or from "
              "the expanded width (MobileNetV3)"),
    Param("sediv", "se_divisor", int, "se_divisor", 1, range=Range(1, 1_024),
          doc="SE width rounding: 1 = nearest integer (timm's SqueezeExcite), n = timm's make_divisible(w, n)"),
    Param("seact", "se_act", str, "se_act", Derived(lambda kw, _: kw["act"], "the block's act"), "act",
          doc="activation inside the SE (MobileNetV3: relu)"),
    Param("segate", "se_gate", str, "se_gate", "sigmoid", "act", doc="SE gate (MobileNetV3: hardsigmoid)"),
)
_DOWN = Param("down", "down", str, "down", "conv", ("conv", "avg"),
              doc="projection shortcut (when the stride or width changes): conv = 1x1 conv with the stride + norm; "
                  "avg = 2x2 average pool with the stride, then 1x1 conv + norm (ResNet-D)")
declare_block(BlockSchema(
    "BASIC", ("body",), "layer", params=(_D, _S, _DOWN, _act("act", "relu"), _norm("bn", "conv_norm")),
    residual=True, width=Width("d"), stride="stride",
    doc="ResNet basic block: act(x' + bn(conv3(act(bn(conv3_s(x)))))), x' = x or its projection",
    example="BASIC(d=128,s=2)+BASIC",
))
declare_block(BlockSchema(
    "BOTTLE", ("body",), "layer",
    params=(_D, _S, Param("r", "mid_ratio", float, None, 0.25, range=Range(0, 64, lo_open=True),
                          doc="bottleneck width / output width (ResNet 0.25; Wide ResNet-50-2: 0.5)"),
            _DOWN, _act("act", "relu"), _norm("bn", "conv_norm")),
    residual=True, width=Width("d"), stride="stride",
    doc="ResNet bottleneck: act(x' + bn(conv1(act(bn(conv3_s(act(bn(conv1(x))))))))), bottleneck r x d",
    example="BOTTLE(d=256)x3",
))
declare_block(BlockSchema(
    "DS", ("body",), "layer", "kernel_size", False, 3, arg_range=ODD_KERNEL,
    params=(_D, _S, _act("act", "relu"), _norm("bn", "conv_norm"),
            Param("pwact", "pw_act", bool, None, False, doc="activation after the pointwise conv"),
            _SKIP, *_SE),
    residual=True, width=Width("d"), stride="stride",
    doc="depthwise-separable block (MobileNet): bn(pw(se(act(bn(depthwise_k_s(x)))))), + x when it keeps the shape",
    example="DS3(d=16,se=0.25)",
))
declare_block(BlockSchema(
    "IR", ("body",), "layer", "kernel_size", False, 3, arg_range=ODD_KERNEL,
    params=(_D, _S, Param("e", "exp_ratio", float, None, 6.0, range=Range(0, 64, lo_open=True),
                          doc="expansion: hidden width = make_divisible(e x input width, 8)"),
            _act("act", "relu"), _norm("bn", "conv_norm"), _SKIP, *_SE),
    residual=True, width=Width("d"), stride="stride",
    doc="inverted residual / MBConv: bn(pw(se(act(bn(depthwise_k_s(act(bn(pw_e(x))))))))), + x when it keeps the "
        "shape",
    example="IR3(e=6,se=0.25)x2",
))
# CoAtNet (timm's maxxvit.py): the pre-norm MBConv and the transformer block over the image grid. Both may open a
# stage: stride s pools the shortcut (kernel s) and projects it with a 1x1 conv when the width changes.
_POOL = Param("pool", "pool", str, None, "avg", ("avg", "max"),
              doc="pooling of the shortcut (kernel = stride; timm's avg2 / max2)")
_S_POOLED = Param("s", "stride", int, None, 1, doc="stride (divides the grid; the shortcut is pooled)",
                  range=_STRIDE)
declare_block(BlockSchema(
    "MBC", ("body",), "layer", "kernel_size", False, 3, arg_range=ODD_KERNEL,
    params=(_D, _S_POOLED,
            Param("down", "down", str, None, "dw", ("dw", "pool", "pw"),
                  doc="where the branch strides: the depthwise conv, a pool before the 1x1 expansion, or the "
                      "1x1 expansion"),
            _POOL,
            Param("r", "expand_ratio", float, None, 4.0, range=Range(0, 64, lo_open=True),
                  doc="hidden width: make_divisible(r x input width, 8)"),
            Param("rout", "expand_output", bool, None, False,
                  doc="count the hidden and SE widths from the output width (timm's expand_output)"),
            _act(None, "silu"),
            Param("pact", "pre_act", bool, None, False, doc="the activation after the pre-norm too"),
            _norm("bn", "conv_norm"),
            Param("se", "se_ratio", float, None, 0.25, range=Range(0, 1),
                  doc="SE width: int(se x hidden width) (0: no SE)"),
            Param("seact", "se_act", str, None, "silu", "act", doc="activation inside the SE"),
            Param("early", "se_early", bool, None, False, doc="SE between the depthwise conv and its norm"),
            Param("bias", "bias", bool, None, True, doc="bias of the output 1x1 conv and the shortcut projection")),
    residual=True, width=Width("d"), stride="stride",
    doc="pre-norm MBConv (CoAtNet): shortcut(x) + conv1x1(se(act(norm(dw_k(act(norm(conv1x1(norm(x)))))))))",
    example="MBC(s=2,d=128)",
))
declare_block(BlockSchema(
    "TFM", ("body",), "layer",
    params=(_D, _S_POOLED, _POOL,
            Param("hd", "head_dim", int, None, Derived(lambda kw, width: min(32, width), "32 (the width if narrower)"),
                  range=Range(1, MAX_WIDTH), divides=True,
                  doc="channels per attention head (heads = attention width / hd)"),
            Param("ef", "expand_first", bool, None, False,
                  doc="attend at the output width (qkv widens; the CoAtNet paper) instead of the input width"),
            _RATIO, _act(), _norm("ln"), _eps(),
            Param("bias", "bias", bool, None, True, doc="bias of the qkv and output projections"),
            Param("sbias", "shortcut_bias", bool, None, True, doc="bias of the shortcut projection"),
            Param("pos", "pos", str, None, "relbias", "pos",
                  doc="position scheme inside attention (relbias: learnable relative position bias over the grid; "
                      "rope, none, or any registered one)"),
            _LS,
            Param("adrop", "attn_drop", float, "attn_dropout", 0.0, doc="dropout on the attention weights",
                  range=Range(0, 1))),
    residual=True, width=Width("d"), stride="stride", context=("grid",),
    doc="transformer block on the image grid (CoAtNet): shortcut(x) + attn(pool(norm(x))) with a position "
        "scheme (relative position bias by default), then x + conv MLP(norm(x))",
    example="TFM(s=2,d=256)",
))
