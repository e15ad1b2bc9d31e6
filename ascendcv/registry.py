"""One registration per model: builder, task, converter and config node declared together.

A registration names its parts as ``'package.module:attribute'`` strings, resolved only when
used, so registering (and building the config tree from the registrations) imports no
TensorFlow and no model code::

    register(ModelEntry(
        name='EDVR',                                         # the value of model.name
        builder='ascendvsr.models.edvr:build_edvr',          # (cfg, **overrides) -> model
        task='ascendvsr.tasks.edvr:EDVRTask',                # Task subclass, created as Task(cfg)
        converter='ascendvsr.convert.edvr:load_edvr_weights',  # (model, path, key=None) -> None
        config={'edvr': EDVR_NODE},                          # config nodes this model adds
        tiny=('edvr.num_feat=8', ...)))                      # a tiny variant for the contract test

The framework never imports a model package: ``tools/main.py`` hands the runner the entry's
builder and task.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple


def resolve(ref):
    """``'pkg.mod:attr'`` -> the attribute (objects are returned as they are)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(':')
    if not attr:
        raise ValueError(f'registry reference {ref!r} must look like "package.module:attribute"')
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model (see the module docstring for the fields)."""
    name: str
    builder: Any
    task: Any
    converter: Optional[Any] = None
    config: Dict[str, Any] = field(default_factory=dict)
    description: str = ''
    tiny: Tuple[str, ...] = ()

    def build(self, cfg, **overrides):
        """The model for ``cfg`` (keyword ``overrides`` go to the builder, e.g.
        ``jit_compile=False`` for export)."""
        return resolve(self.builder)(cfg, **overrides)

    def make_task(self, cfg):
        """The entry's :class:`ascendcv.runner.task.Task` for ``cfg``."""
        return resolve(self.task)(cfg)

    def load_official(self, model, path, key=None):
        """Load an official (PyTorch/MindSpore) checkpoint into ``model`` with the converter."""
        if self.converter is None:
            raise ValueError(f'model.name={self.name!r} has no converter of official checkpoints')
        return resolve(self.converter)(model, path, key=key)


class Registry:
    """Name -> :class:`ModelEntry`; ``discover`` runs the registration modules once."""

    def __init__(self, discover=None):
        self._entries = {}
        self._discover = discover
        self._discovered = False

    def register(self, entry):
        if entry.name in self._entries:
            raise KeyError(f'model {entry.name!r} registered twice')
        nodes = {k for e in self._entries.values() for k in e.config}
        clash = sorted(nodes & set(entry.config))
        if clash:
            raise KeyError(f'model {entry.name!r} declares config node(s) {clash} that another '
                           f'registration already declares')
        self._entries[entry.name] = entry
        return entry

    def _ensure(self):
        if not self._discovered and self._discover is not None:
            self._discovered = True
            self._discover()

    def names(self):
        self._ensure()
        return sorted(self._entries)

    def entries(self):
        self._ensure()
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name):
        self._ensure()
        if name not in self._entries:
            raise KeyError(f'model.name={name!r} is not a registered model; known: '
                           f'{sorted(self._entries)}')
        return self._entries[name]
