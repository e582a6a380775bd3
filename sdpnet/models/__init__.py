"""Models from plans: the network a resolved spec describes (``builder``), its weights (``weights``), FLOP and
shape summaries (``summary``), conversion from timm checkpoints (``convert``) and registration with timm
(``timm_models``). Importing this package imports nothing: ``import sdpnet`` stays free of torch."""
