"""The LayerNorm op on CPU (hrvit_kernels._C): one pass per row reads x and the residual (fp32 or bf16), stores
their sum and the normalised row in the requested dtypes. fp16 inputs and outputs convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _cpu_common

_KERNEL_DTYPES = (torch.float32, torch.bfloat16)  # what the kernel reads and writes itself


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as (rows, C) with unit channel stride and one row stride, in a dtype the kernel reads."""
    rows = _cpu_common.rows_as_read(t).reshape(-1, t.shape[-1])  # a view when the rows are evenly spaced
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _KERNEL_DTYPES else torch.float32


def forward(x, residual, weight, bias, eps: float, out_dtype: torch.dtype) -> list[torch.Tensor]:
    rows, C = _rows(x), x.shape[-1]
    normed = torch.empty(rows.shape, dtype=_kernel_dtype(out_dtype))
    w, b = weight.float().contiguous(), bias.float().contiguous()
    bf16 = torch.bfloat16
    if residual is None:
        _ext.ext().add_layer_norm_forward(rows.shape[0], C, rows.data_ptr(), rows.dtype == bf16, rows.stride(0),
                                          0, False, 0, w.data_ptr(), b.data_ptr(), eps, 0, False,
                                          normed.data_ptr(), normed.dtype == bf16, torch.get_num_threads())
        return [normed.view(x.shape).to(out_dtype)]
    residual_rows = _rows(residual)
    sum_dtype = torch.promote_types(x.dtype, residual.dtype)
    total = torch.empty(rows.shape, dtype=_kernel_dtype(sum_dtype))
    _ext.ext().add_layer_norm_forward(
        rows.shape[0], C, rows.data_ptr(), rows.dtype == bf16, rows.stride(0), residual_rows.data_ptr(),
        residual_rows.dtype == bf16, residual_rows.stride(0), w.data_ptr(), b.data_ptr(), eps, total.data_ptr(),
        total.dtype == bf16, normed.data_ptr(), normed.dtype == bf16, torch.get_num_threads())
    return [total.view(x.shape).to(sum_dtype), normed.view(x.shape).to(out_dtype)]
