"""Models: one file per architecture (``edvr.py``, ``revsci.py``, ``nerv.py``, ``gap_tv.py``),
each with its ``build_<model>(cfg, **overrides)`` builder. They are registered (with their task,
converter and config node) in ``ascendvsr/zoo/``; build one with
``ascendvsr.zoo.get_entry(cfg.model.name).build(cfg)``."""
