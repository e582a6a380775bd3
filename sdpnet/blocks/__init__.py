"""The built-in blocks: importing this package binds every built-in block name to its module.

One family per file (timm's ``layers/`` layout): activations, norms, drop-path, stems, conv mixers,
the body MLP, attention, position embeddings and heads. See docs/blocks.md for the module contract.
"""
from sdpnet.blocks.layers.act import GatedAct, KeLU, SquaredReLU, StarReLU, get_act
from sdpnet.blocks.attention import Attention, EncoderBlock, Mlp
from sdpnet.blocks.conv_mixers import ConvMixerLayer, DepthwiseMixer, Downsample
from sdpnet.blocks.convnext import ConvNeXtBlock
from sdpnet.blocks.layers.drop import DropPath, LayerScale, make_drop_path, make_layer_scale
from sdpnet.blocks.dropout import DropoutLayer
from sdpnet.blocks.embed import NeighbourEmbed, PosEmbed, resample
from sdpnet.blocks.heads import GlobalAvgPool, LinearHead, MlpHead, SeqPool, TokenPool
from sdpnet.blocks.metaformer import PoolMixer, SepConvMixer
from sdpnet.blocks.mixer import TokenMixingMlp
from sdpnet.blocks.mlp import ConvMlp
from sdpnet.blocks.layers.norm import LN_EPS, LayerNorm2d, get_norm1d, get_norm2d
from sdpnet.blocks.norm import NormLayer
from sdpnet.blocks.stems import ConvNormAct, ConvTokenizer, PatchEmbed

__all__ = [
    "Attention", "ConvMixerLayer", "ConvMlp", "ConvNeXtBlock", "ConvNormAct", "ConvTokenizer", "DepthwiseMixer",
    "Downsample", "DropPath", "DropoutLayer", "EncoderBlock", "GatedAct", "GlobalAvgPool", "KeLU", "LN_EPS",
    "LayerNorm2d", "LayerScale", "LinearHead", "Mlp", "MlpHead", "NeighbourEmbed", "NormLayer", "PatchEmbed", "PoolMixer",
    "PosEmbed", "SepConvMixer", "SeqPool", "SquaredReLU", "StarReLU", "TokenMixingMlp", "TokenPool",
    "get_act", "get_norm1d", "get_norm2d", "make_drop_path", "make_layer_scale", "resample",
]
