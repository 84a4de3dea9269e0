"""The releases' shared initialisation, and the gradient layout every model keeps."""
from __future__ import annotations

import torch
from torch import nn


def init_transformer_weights(module: nn.Module) -> None:
    """Linear weights truncated normal (std 0.02) and biases 0; LayerNorm and BatchNorm weight 1, bias 0;
    convolutions keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _restride_grad(param: torch.Tensor) -> None:
    grad = param.grad
    if grad is None or grad.layout != torch.strided or grad.stride() == param.stride():
        return
    if all(a == b for n, a, b in zip(param.shape, grad.stride(), param.stride()) if n > 1):
        # Same memory layout, different strides on size-1 dims: the same tensor, restrided without a copy.
        param.grad = grad.as_strided(param.shape, param.stride(), grad.storage_offset())


def keep_gradient_layout(module: nn.Module) -> None:
    """Gradients with exactly their parameters' strides.

    Convolutions on channels-last inputs (HRViT's token maps are channels-last views) return weight
    gradients such as (9, 1, 3, 1) for a (C, 1, 3, 3) weight of strides (9, 9, 3, 1): the same memory,
    which autograd accepts, but DistributedDataParallel compares strides literally and warns "Grad
    strides do not match bucket view strides" on every such parameter. A hook after gradient
    accumulation (it runs before DDP's reducer reads the gradient) restrides those gradients; it costs
    no copy. Applied once per parameter however often it is called.
    """
    for param in module.parameters():
        if param.dim() > 1 and 1 in param.shape and not getattr(param, "_keeps_gradient_layout", False):
            param.register_post_accumulate_grad_hook(_restride_grad)
            param._keeps_gradient_layout = True
