"""The GELU MLP on CPU: the two products by PyTorch's BLAS, the hidden activations in a per-thread kept buffer
with bias + GELU applied in place (hrvit_kernels._C): no fresh hidden tensor (at 16384 x 2048 its first-touch
page faults and the separate bias copy and GELU output cost about a third of the first product). fp32 inside;
other dtypes convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc


@torch.autocast("cpu", enabled=False)  # the products must be fp32: the kernel writes fp32 into them
def forward(x, weight1, bias1, weight2, bias2) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).float()
    hidden = weight1.shape[0]
    pre = torch.mm(rows, weight1.float().t(), out=_alloc.scratch("gelu_mlp", (rows.shape[0], hidden)))
    b1 = bias1.float().contiguous()
    _ext.ext().affine_gelu_inplace(rows.shape[0], hidden, pre.data_ptr(), 0, b1.data_ptr(), torch.get_num_threads())
    out = torch.addmm(bias2.float(), pre, weight2.float().t())
    return out.view(*x.shape[:-1], weight2.shape[0]).to(x.dtype)
