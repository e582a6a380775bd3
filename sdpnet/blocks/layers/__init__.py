"""Layers by name, the parts blocks are made of (timm's ``layers/``): norms, activations, drop-path and
LayerScale. No block is registered here."""
