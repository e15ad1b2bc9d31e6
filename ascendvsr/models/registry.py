"""A tiny model registry: ``@register('EDVR')`` on a builder, ``build_model(cfg)`` to use it."""

_MODELS = {}


def register(name):
    """Register ``builder(cfg) -> model`` under ``name`` (the value of ``cfg.model.name``)."""
    def deco(builder):
        if name in _MODELS:
            raise KeyError(f'model {name!r} registered twice')
        _MODELS[name] = builder
        return builder
    return deco


def registered_models():
    return sorted(_MODELS)


def build_model(cfg, **overrides):
    """Build the model named by ``cfg.model.name``; ``overrides`` go to the builder."""
    name = cfg.model.name
    if name not in _MODELS:
        raise KeyError(f"model.name={name!r} is not a registered model; known: {registered_models()}")
    return _MODELS[name](cfg, **overrides)
