"""The built-in blocks: importing this package binds every built-in block name to its module.

One family per file (timm's ``layers/`` layout): stems, conv mixers, the body MLP, attention, position embeddings,
heads; the parts they are made of (norms, activations, drop-path) are in ``layers/``. See docs/blocks.md for the
module contract.

Every module of the package is imported below, found by ``pkgutil``: a block is its schema in
``sdpnet/vocabulary.py`` and its class in one file here, and a new file needs no line anywhere else. These imports
are for their ``@register_block`` lines (registry bindings), not for names; the names re-exported at the end are
the ones tests and user code import from ``sdpnet.blocks``.
"""
import importlib
import pkgutil

from sdpnet.blocks.attention import Attention, EncoderBlock, Mlp
from sdpnet.blocks.conv_mixers import ConvMixerLayer, DepthwiseMixer, Downsample
from sdpnet.blocks.convnext import ConvNeXtBlock
from sdpnet.blocks.dropout import DropoutLayer
from sdpnet.blocks.embed import NeighbourEmbed, PosEmbed, resample
from sdpnet.blocks.heads import GlobalAvgPool, LinearHead, MlpHead, SeqPool, TokenPool
from sdpnet.blocks.layers.act import GatedAct, KeLU, SquaredReLU, StarReLU, get_act
from sdpnet.blocks.layers.drop import DropPath, LayerScale, make_drop_path, make_layer_scale
from sdpnet.blocks.layers.norm import LN_EPS, LayerNorm2d, get_norm1d, get_norm2d
from sdpnet.blocks.metaformer import PoolMixer, SepConvMixer
from sdpnet.blocks.mixer import TokenMixingMlp
from sdpnet.blocks.mlp import ConvMlp
from sdpnet.blocks.norm import NormLayer
from sdpnet.blocks.stems import ConvNormAct, ConvTokenizer, PatchEmbed

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)  # registry binding: the module's @register_block runs

__all__ = [
    "Attention", "ConvMixerLayer", "ConvMlp", "ConvNeXtBlock", "ConvNormAct", "ConvTokenizer", "DepthwiseMixer",
    "Downsample", "DropPath", "DropoutLayer", "EncoderBlock", "GatedAct", "GlobalAvgPool", "KeLU", "LN_EPS",
    "LayerNorm2d", "LayerScale", "LinearHead", "Mlp", "MlpHead", "NeighbourEmbed", "NormLayer", "PatchEmbed", "PoolMixer",
    "PosEmbed", "SepConvMixer", "SeqPool", "SquaredReLU", "StarReLU", "TokenMixingMlp", "TokenPool",
    "get_act", "get_norm1d", "get_norm2d", "make_drop_path", "make_layer_scale", "resample",
]
