"""Loads the compiled extension ``hrvit_kernels._C``.

A missing or broken extension never breaks ``import hrvit_kernels``: ``HAS_EXT`` is False, backend
"auto" skips the C++ kernels and an explicit ``backend="cpp"`` raises with :data:`REBUILD_HINT`.
"""
from __future__ import annotations

try:
    from hrvit_kernels import _C  # noqa: F401  (compiled by `pip install -e .`)

    HAS_EXT = True
    EXT_ERROR: str | None = None
except Exception as exc:  # ImportError, or an undefined symbol in a stale build
    _C = None
    HAS_EXT = False
    EXT_ERROR = f"{type(exc).__name__}: {exc}"

REBUILD_HINT = (
    "the compiled extension hrvit_kernels._C is not available"
    + (f" ({EXT_ERROR})" if EXT_ERROR else "")
    + "; rebuild it with `pip install -e .` from the repository root"
)


def ext():
    """The extension module, or a RuntimeError that says how to rebuild it."""
    if _C is None:
        raise RuntimeError(REBUILD_HINT)
    return _C
