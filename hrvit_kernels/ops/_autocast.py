"""torch.autocast for the ops, by PyTorch's own rules: the matrix-product and convolution ops (stripe
attention, attention-to-mask, MixCFN) run in the autocast dtype, like torch.matmul and conv2d; resize-sum
runs in the widest dtype of its maps, like torch.cat. Casting happens in the public functions, before the
checks, so that float32 parameters meet low-precision activations as they do in nn.Linear."""
from __future__ import annotations

import torch

# Autocast casts these dtypes and leaves float64 alone, as PyTorch's cached_cast does.
_CASTABLE = (torch.float32, torch.float16, torch.bfloat16)


def _enabled_dtype(t) -> torch.dtype | None:
    if not isinstance(t, torch.Tensor):
        return None
    device_type = t.device.type
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def lower_precision(*tensors):
    """The tensors in the autocast dtype of their device when autocast is on there (each distinct tensor
    cast once, so ``k is v`` stays true), else unchanged."""
    dtype = _enabled_dtype(tensors[0])
    if dtype is None:
        return tensors
    cast: dict[int, torch.Tensor] = {}
    out = []
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dtype in _CASTABLE and t.dtype != dtype:
            t = cast.setdefault(id(t), t.to(dtype))
        out.append(t)
    return tuple(out)


def promote(tensors):
    """Under autocast, the tensors in their widest floating dtype; else unchanged."""
    tensors = list(tensors)
    if not tensors or _enabled_dtype(tensors[0]) is None:
        return tensors
    if any(not isinstance(t, torch.Tensor) for t in tensors):
        return tensors  # the checks name the bad argument
    widest = tensors[0].dtype
    for t in tensors[1:]:
        widest = torch.promote_types(widest, t.dtype)
    return [t if t.dtype == widest else t.to(widest) for t in tensors]
