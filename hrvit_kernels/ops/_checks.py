"""Input validation shared by the ops: every message names the argument, what it received and what
is accepted, and runs before any kernel touches memory."""
from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from typing import Callable, Iterator, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@contextlib.contextmanager
def quiet_under_tracing() -> Iterator[None]:
    """Silences torch.jit.trace's TracerWarnings inside the block: for checks that compare sizes of the
    traced input, which a trace cannot fail."""
    if not torch.jit.is_tracing():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def sizes_are_traced() -> bool:
    """True under torch.jit.trace and torch.export, where a branch on a size (a shortcut when two sizes are
    equal) would fix the traced program to the traced input's case."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def quiet_checks(fn: Callable) -> Callable:
    """An op's public function under :func:`quiet_under_tracing`: its checks cannot fail in a trace, and
    its custom op takes the sizes as ints, so the trace is fixed to them either way (the op's own checks
    reject a traced graph called at another size)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with quiet_under_tracing():
            return fn(*args, **kwargs)
    return wrapper


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_tensor(op: str, name: str, t, ndim: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: argument '{name}' must have {ndim} dimensions, got {_describe(t)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: argument '{name}' has unsupported dtype {t.dtype}; accepted: "
                        + ", ".join(str(d) for d in FLOAT_DTYPES))
    return t


def check_same(op: str, named: Sequence[tuple[str, torch.Tensor]]) -> None:
    """All tensors share the first one's device and dtype."""
    check_same_device(op, named)
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: argument '{name}' has dtype {t.dtype} but '{first_name}' has "
                            f"{first.dtype}; all tensors must share one dtype")


def check_same_device(op: str, named: Sequence[tuple[str, torch.Tensor]]) -> None:
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(f"{op}: argument '{name}' is on {t.device} but '{first_name}' is on "
                             f"{first.device}; all tensors must be on one device")


def check_kernel_device(op: str, backend: str, name: str, t: torch.Tensor) -> None:
    """The C++ kernels read CPU memory only (the Triton ones report a wrong device themselves)."""
    if backend == "cpp" and t.device.type != "cpu":
        raise ValueError(f"{op}: argument '{name}' is on {t.device}; this op runs on CPU tensors")


def check_shape(op: str, name: str, t: torch.Tensor, expected: Sequence[int], meaning: str = "") -> None:
    if tuple(t.shape) != tuple(expected):
        extra = f" ({meaning})" if meaning else ""
        raise ValueError(f"{op}: argument '{name}' must have shape {tuple(expected)}{extra}, "
                         f"got {tuple(t.shape)}")


def check_optional_bias(op: str, bias, features: int) -> None:
    """bias is None or a tensor of shape (features,)."""
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (features,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"{op}: argument 'bias' must have shape ({features},) or be None, got {got}")


def check_saved_lse(op: str, lse, shape: Sequence[int], meaning: str) -> None:
    """The softmax statistics a forward op saved for its backward: the base-2 log-sum-exp of each query's
    logits, log2(sum_k exp(s_k)), on every backend; float32 of the given shape (any strides; the kernels
    read a contiguous copy)."""
    if not isinstance(lse, torch.Tensor):
        raise TypeError(f"{op}: argument 'lse' must be a torch.Tensor, got {type(lse).__name__}")
    if lse.dtype != torch.float32:
        raise TypeError(f"{op}: argument 'lse' has dtype {lse.dtype}; accepted: torch.float32 (as the "
                        f"forward op returns it)")
    check_shape(op, "lse", lse, shape, meaning)


def device_memory_bytes(device: torch.device) -> int | None:
    """The memory of the device (the machine's RAM for CPU tensors), None where unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError, RuntimeError):
        pass
    return None


def check_output_fits(op: str, name: str, shape: Sequence[int], like: torch.Tensor) -> None:
    """An output whose size an argument sets must fit in the device's memory: said before any
    allocation, naming that argument (not an overflow or allocator message from deep inside). Skipped
    under torch.compile and for symbolic sizes, where reading the size would fix the graph to it."""
    if torch.compiler.is_compiling() or any(isinstance(s, torch.SymInt) for s in shape):
        return
    elements = math.prod([int(s) for s in shape])
    size = elements * like.element_size()
    memory = device_memory_bytes(like.device)
    if memory is not None and size > memory:
        raise ValueError(f"{op}: argument '{name}' gives an output of shape {tuple(shape)} "
                         f"({size / 2**30:.3g} GiB), more than the {memory / 2**30:.3g} GiB of {like.device}")


def check_size_pair(op: str, name: str, value) -> tuple[int, int]:
    """A pair of positive ints (H, W)."""
    # Ints, or SymInts (sizes torch.compile / torch.export trace symbolically: int() would fix them).
    try:
        h, w = value
    except (TypeError, ValueError):
        h = w = None
    if torch.jit.is_tracing() and all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in (h, w)):
        h, w = int(h), int(w)  # torch.jit.trace gives sizes as 0-dim tensors; the trace keeps their values
    if not all(isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) for v in (h, w)):
        raise TypeError(f"{op}: argument '{name}' must be a pair of ints (H, W), got {value!r}")
    if h < 1 or w < 1:
        raise ValueError(f"{op}: argument '{name}' must be positive, got {(h, w)}")
    return h, w


def check_hw(op: str, hw, num_tokens: int, arg: str = "x") -> tuple[int, int]:
    h, w = check_size_pair(op, "hw", hw)
    if h * w != num_tokens:
        raise ValueError(f"{op}: argument 'hw' = {(h, w)} gives H*W = {h * w} tokens, but '{arg}' "
                         f"has N = {num_tokens}; N must equal H*W (row-major tokens)")
    return h, w


def check_positive_int(op: str, name: str, value) -> int:
    # A SymInt is an int whose value torch.compile traces symbolically (e.g. heads from a dynamic C).
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)) or value < 1:
        raise ValueError(f"{op}: argument '{name}' must be an int >= 1, got {value!r}")
    return value


def check_scale(op: str, scale) -> None:
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not scale == scale or scale <= 0 or scale == float("inf")):
        raise ValueError(f"{op}: argument 'scale' must be None or a finite float > 0, got {scale!r}")
