"""Model registry: ``@register_model`` builders, ``create_model(name, **overrides)``, ``list_models()``."""
from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from hrvit_kernels.checkpoint import load_checkpoint

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, checkpoint=None, **overrides) -> nn.Module:
    """Build a registered model; keyword arguments override its defaults. ``checkpoint`` (a path or a
    read checkpoint) is loaded strictly with :func:`hrvit_kernels.load_checkpoint`."""
    if name not in _MODELS:
        raise ValueError(f"create_model: unknown model {name!r}; available: {', '.join(list_models())}")
    model = _MODELS[name](**overrides)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
