"""The spec language: text -> tree, tree <-> JSON, spec files, resolution to a build plan. No torch.

>>> spec = parse("P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP")
>>> str(spec)
'P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP'
"""
from sdpnet.spec.errors import SpecError
from sdpnet.spec.nodes import Block, Item, Stage, Unit
from sdpnet.spec.tree import Spec
from sdpnet.spec.parser import parse
from sdpnet.spec.files import ModelSpec, load_spec, parse_override, spec_sources
from sdpnet.spec.plan import LayerPlan, Plan
from sdpnet.spec.resolve import resolve

__all__ = [
    "Block", "Item", "LayerPlan", "ModelSpec", "Plan", "Spec", "SpecError", "Stage", "Unit",
    "load_spec", "parse", "parse_override", "resolve", "spec_sources",
]
