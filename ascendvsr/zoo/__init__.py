"""The model zoo: one registration file per model (``ascendvsr/zoo/<model>.py``).

Each file calls :func:`register` once with a :class:`ascendcv.registry.ModelEntry` declaring the
model's builder, task, converter and config node. Every module of this package is imported by
:func:`discover` (no import list to edit): adding a model means adding its files, nothing else.
"""
import importlib
import pkgutil

from ascendcv.registry import ModelEntry, Registry  # noqa: F401  (ModelEntry for registrations)


def discover():
    """Import every registration module of this package (each registers its model)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith('_'):
            importlib.import_module(f'{__name__}.{info.name}')


REGISTRY = Registry(discover)
register = REGISTRY.register


def get_entry(name):
    """The :class:`ModelEntry` registered as ``name`` (``cfg.model.name``)."""
    return REGISTRY.get(name)


def registered_models():
    return REGISTRY.names()


def config_nodes():
    """``{node name: CfgNode}`` of every registration (merged into the config defaults)."""
    out = {}
    for entry in REGISTRY.entries():
        out.update(entry.config)
    return out
