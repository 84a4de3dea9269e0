"""Whether models run the release's exact sequence of ops or the package's equivalent rewrites.

The rewrites (HRViT's attention folding its eval BatchNorm into the output projection, DES as two dense
linears, the SegFormer head's fusion conv folded before the resizes, ...) give the release's results to
rounding and skip work. This is a model-level choice, separate from which kernel runs an op
(``use_backend``): a module reads it once, when it is built, into its ``release_ops`` attribute, the way
timm's layers read ``use_fused_attn()``.

- ``HRVIT_KERNELS_RELEASE_OPS=1`` in the environment, or ``set_release_ops(True)``: modules built
  afterwards run the release's sequence;
- ``release_ops(model)``: a context in which an existing model does (and ``release_ops(model, False)``
  the rewrites), for comparing the two on one set of weights.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from torch import nn

ENV_VAR = "HRVIT_KERNELS_RELEASE_OPS"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

_default: bool | None = None  # set_release_ops(); None: the environment decides


def use_release_ops() -> bool:
    """The choice for modules built now: set_release_ops(), else the environment variable, else False."""
    if _default is not None:
        return _default
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"environment variable {ENV_VAR}: got {value!r}; accepted: 1 or 0 "
                         f"(also true/false, yes/no, on/off)")
    return value in _TRUE


def set_release_ops(enable: bool | None) -> None:
    """Process-wide choice for modules built afterwards; None returns it to the environment variable."""
    global _default
    if enable is not None and not isinstance(enable, bool):
        raise TypeError(f"set_release_ops: argument 'enable' must be a bool or None, got {enable!r}")
    _default = enable


@contextlib.contextmanager
def release_ops(model: nn.Module, enable: bool = True) -> Iterator[nn.Module]:
    """Inside the block, every module of ``model`` that has a choice runs the release's sequence
    (``enable=True``) or the rewrites; their own settings are restored afterwards."""
    if not isinstance(enable, bool):
        raise TypeError(f"release_ops: argument 'enable' must be a bool, got {enable!r}")
    chosen = [m for m in model.modules() if hasattr(m, "release_ops")]
    saved = [m.release_ops for m in chosen]
    for m in chosen:
        m.release_ops = enable
    try:
        yield model
    finally:
        for m, value in zip(chosen, saved):
            m.release_ops = value
