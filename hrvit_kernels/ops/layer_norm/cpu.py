"""The LayerNorm op on CPU (hrvit_kernels._C): one pass per row reads x and the residual (fp32 or bf16), stores
their sum and the normalised row in the requested dtypes. fp16 inputs and outputs convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _cpu_common
from hrvit_kernels.ops.layer_norm import checks

_KERNEL_DTYPES = (torch.float32, torch.bfloat16)  # what the kernel reads and writes itself


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as (rows, C) with unit channel stride and one row stride, in a dtype the kernel reads."""
    rows = _cpu_common.rows_as_read(t).reshape(-1, t.shape[-1])  # a view when the rows are evenly spaced
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _KERNEL_DTYPES else torch.float32


def _rows_arg(rows: torch.Tensor | None) -> tuple[int, bool, int]:
    """(address, is bf16, row stride) of a (rows, C) operand; an absent one is (0, False, 0)."""
    if rows is None:
        return 0, False, 0
    return rows.data_ptr(), rows.dtype == torch.bfloat16, rows.stride(0)


def forward(x, residual, weight, bias, eps: float, out_dtype: torch.dtype) -> list[torch.Tensor]:
    rows, C = _rows(x), x.shape[-1]
    residual_rows = None if residual is None else _rows(residual)
    total_dtype = checks.sum_dtype(x, residual)
    total = None if residual is None else torch.empty(rows.shape, dtype=_kernel_dtype(total_dtype))
    normed = torch.empty(rows.shape, dtype=_kernel_dtype(out_dtype))
    w, b = weight.float().contiguous(), bias.float().contiguous()
    _ext.ext().add_layer_norm_forward(rows.shape[0], C, *_rows_arg(rows), *_rows_arg(residual_rows), w.data_ptr(),
                                      b.data_ptr(), eps, *_rows_arg(total)[:2], *_rows_arg(normed)[:2],
                                      torch.get_num_threads())
    normed = normed.view(x.shape).to(out_dtype)
    return [normed] if residual is None else [total.view(x.shape).to(total_dtype), normed]
