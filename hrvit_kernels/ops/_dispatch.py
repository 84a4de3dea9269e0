"""Backend choice for every op: "auto" | "reference" | "triton" | "cpp".

Precedence: an explicit ``backend=`` argument other than "auto", then the innermost
:func:`use_backend` context, then the environment variable ``HRVIT_KERNELS_BACKEND``, then "auto"; a
context or environment choice that an op does not offer counts as "auto" for that op.
"auto" picks the fastest backend that can run the call: Triton on CUDA, C++ on CPU, else the reference.
While ``torch.onnx.export`` traces a model, "auto" is the reference: ONNX has no operator for the fused
kernels, and the reference is made of standard operators.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Iterator, Mapping

import torch

BACKENDS = ("auto", "reference", "triton", "cpp")
ENV_VAR = "HRVIT_KERNELS_BACKEND"
# Order in which "auto" tries the backends an op offers.
_AUTO_ORDER = ("triton", "cpp", "reference")

_state = threading.local()


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Process-wide (per thread) default backend inside a ``with`` block."""
    _check_name(name, "use_backend")
    stack = getattr(_state, "stack", [])
    _state.stack = stack + [name]
    try:
        yield
    finally:
        _state.stack = stack


def default_backend() -> str:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return _check_name(os.environ.get(ENV_VAR, "auto"), f"environment variable {ENV_VAR}")


def reference_requested(op: str, backend: str) -> bool:
    """For ops made of PyTorch calls whose faster form depends on the device or sizes (no kernel of
    their own): whether the reference form is asked for, by ``backend`` or the process-wide choice."""
    _check_name(backend, f"{op}: argument 'backend'")
    return (backend if backend != "auto" else default_backend()) == "reference"


# An availability check returns None when the backend can run the call, else the reason it cannot.
Availability = Callable[[tuple[torch.Tensor, ...]], "str | None"]


def choose_backend(op: str, backend: str, tensors: tuple[torch.Tensor, ...],
                   available: Mapping[str, Availability]) -> str:
    """Resolve ``backend`` for ``op``; ``available`` maps each backend the op offers to its check."""
    _check_name(backend, f"{op}: argument 'backend'")
    requested = backend if backend != "auto" else default_backend()
    if backend == "auto" and requested not in available:
        requested = "auto"  # a process-wide choice this op does not offer (resize_sum has no Triton)
    if torch.onnx.is_in_onnx_export():
        if requested not in ("auto", "reference"):
            raise RuntimeError(f"{op}: backend {requested!r} cannot be exported to ONNX (no ONNX operator "
                               f"runs the fused kernel); export with backend 'auto' or 'reference'")
        return "reference"
    if requested != "auto":
        check = available.get(requested)
        if check is None:
            offered = ", ".join(["auto", *available])
            raise NotImplementedError(f"{op}: backend {requested!r} is not implemented for this op; "
                                      f"available: {offered}")
        reason = check(tensors)
        if reason is not None:
            raise RuntimeError(f"{op}: backend {requested!r} cannot run this call: {reason}")
        return requested
    for name in _AUTO_ORDER:
        check = available.get(name)
        if name == "triton" and not tensors[0].is_cuda:
            continue  # the Triton interpreter on CPU is for tests: far slower than any other backend
        if check is not None and check(tensors) is None:
            return name
    raise RuntimeError(f"{op}: no backend can run this call")  # reference always can


def always(tensors: tuple[torch.Tensor, ...]) -> str | None:
    return None


def nothing_records_calls() -> bool:
    """No gradient, torch.compile, trace or export, dispatch mode (FlopCounterMode, the multiply-add counter, a
    fake-tensor mode) or torch.func transform sees the call."""
    return (not torch.is_grad_enabled() and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and torch._C._len_torch_dispatch_stack() == 0 and torch._C._functorch.maybe_current_level() is None)


def run_kernel(custom_op, *args):
    """``custom_op(*args)`` for an op's kernel registered with torch.library; where nothing records the call, its
    implementation directly. The custom op's Python dispatch costs about 20 us a call: five times PyTorch's whole
    LayerNorm on a small map, and 4-8 ms of an HRViT forward, whose ops run 200 times."""
    implementation = getattr(custom_op, "_init_fn", None)  # torch.library.CustomOpDef's function
    if implementation is not None and nothing_records_calls():
        return implementation(*args)
    return custom_op(*args)

