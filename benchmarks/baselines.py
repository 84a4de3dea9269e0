"""What a user would otherwise run, for the op rows of benchmarks/run.py.

Every baseline computes the same function as the package's op (the report checks its error too):
- ``compile``: torch.compile of the package's reference (the release-style sequence for the stripe
  attention: partition + pad + matmul + softmax + matmul + merge; transposes + cuDNN/oneDNN depthwise
  convs + concat + GELU for MixCFN; matmul + mean + softmax + matmul for ATM; pad + partition + matmul +
  bias + masked softmax + matmul + merge for HLG's local attention, a bias gather + matmul + softmax +
  matmul for its global attention; an add + layer_norm for the residual sum and norm).
- ``sdpa``: scaled_dot_product_attention on the partitioned (padded, key-masked) stripes.
- ``flex``: torch.compile(flex_attention) over each half's whole token sequence with a same-stripe
  mask_mod (block-sparse: only blocks that share a stripe are computed).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from hrvit_kernels.ops.attention_to_mask.reference import attention_to_mask_reference
from hrvit_kernels.ops.cswin_attention import stripe_heads
from hrvit_kernels.ops.cswin_attention.reference import cswin_attention_reference
from hrvit_kernels.ops.hlg_attention.reference import (hlg_global_attention_reference,
                                                       hlg_local_attention_reference)
from hrvit_kernels.ops.layer_norm.reference import add_layer_norm_reference
from hrvit_kernels.ops.mixcfn.reference import mix_conv_gelu_reference
from hrvit_kernels.ops.resize_sum.reference import resize_sum_reference

BASELINES = ("compile", "sdpa", "flex")

# Every shape and grad mode compiles its own graph (dynamic=False); past dynamo's default limit of 8
# recompiles a function silently falls back to eager, which would time eager under the compile label.
# So: a high limit, and an error rather than a silent fallback if it is ever reached.
for _limit in ("recompile_limit", "cache_size_limit"):  # the name differs between torch versions
    if hasattr(torch._dynamo.config, _limit):
        setattr(torch._dynamo.config, _limit, 1024)
        break
if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
    torch._dynamo.config.fail_on_recompile_limit_hit = True


def _transpose_image(t, rows, cols):
    B, _, c = t.shape
    return t.reshape(B, rows, cols, c).transpose(1, 2).reshape(B, rows * cols, c)


def _sdpa_half(q, k, v, rows, cols, sw, heads):
    B, _, c = q.shape
    d = c // heads
    n = -(-rows // sw)
    pad = n * sw - rows

    def stripes(t):
        t = F.pad(t.reshape(B, rows, cols, c), (0, 0, 0, 0, 0, pad))
        return t.reshape(B * n, sw * cols, heads, d).transpose(1, 2)

    mask = None
    if pad:
        row = torch.arange(sw * cols, device=q.device) // cols + sw * torch.arange(n, device=q.device)[:, None]
        mask = (row < rows)[:, None, None, :].repeat(B, 1, 1, 1)  # (B*n, 1, 1, L) keys kept
    out = F.scaled_dot_product_attention(stripes(q), stripes(k), stripes(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(B, n * sw, cols, c)[:, :rows].reshape(B, rows * cols, c)


def sdpa_cswin(q, k, v, hw, stripe_width, head_dim):
    H, W = hw
    C = q.shape[-1]
    half = C // 2
    heads, _ = stripe_heads(C, head_dim)
    horizontal = _sdpa_half(q[..., :half], k[..., :half], v[..., :half], H, W, stripe_width, heads)
    qt, kt, vt = (_transpose_image(t[..., half:], H, W) for t in (q, k, v))
    vertical = _transpose_image(_sdpa_half(qt, kt, vt, W, H, stripe_width, heads), W, H)
    return torch.cat([horizontal, vertical], dim=-1)


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=None)
def _stripe_block_mask(rows, cols, sw, device):
    from torch.nn.attention.flex_attention import create_block_mask

    def same_stripe(b, h, q_idx, kv_idx):  # row-major tokens of a rows x cols image
        return (q_idx // cols) // sw == (kv_idx // cols) // sw

    return create_block_mask(same_stripe, None, None, rows * cols, rows * cols, device=device)


def flex_cswin(q, k, v, hw, stripe_width, head_dim):
    H, W = hw
    B, N, C = q.shape
    half = C // 2
    heads, d = stripe_heads(C, head_dim)
    flex = _compiled_flex()
    if not torch.is_grad_enabled():  # flex_attention refuses inputs that require grad on CPU
        q, k, v = q.detach(), k.detach(), v.detach()

    def run(q, k, v, rows, cols):
        split = lambda t: t.reshape(B, N, heads, d).transpose(1, 2)  # noqa: E731
        mask = _stripe_block_mask(rows, cols, stripe_width, str(q.device))
        return flex(split(q), split(k), split(v), block_mask=mask).transpose(1, 2).reshape(B, N, half)

    horizontal = run(q[..., :half], k[..., :half], v[..., :half], H, W)
    qt, kt, vt = (_transpose_image(t[..., half:], H, W) for t in (q, k, v))
    vertical = _transpose_image(run(qt, kt, vt, W, H), W, H)
    return torch.cat([horizontal, vertical], dim=-1)


@functools.lru_cache(maxsize=None)
def _compiled(fn):
    return torch.compile(fn, dynamic=False)


def _reference_cswin(q, k, v, hw, stripe_width, head_dim):
    heads, used = stripe_heads(q.shape[-1], head_dim)
    return cswin_attention_reference(q, k, v, hw, stripe_width, heads, used ** -0.5)


def _reference_atm(q, k, v, heads):
    return attention_to_mask_reference(q, k, v, heads, (q.shape[-1] // heads) ** -0.5)


def _reference_hlg_local(q, v, hw, dilated, bias):
    return hlg_local_attention_reference(q, v, hw, dilated, bias, (q.shape[-1] // bias.shape[0]) ** -0.5)


def _reference_hlg_global(q, k, v, hw, table):
    return hlg_global_attention_reference(q, k, v, hw, table, (q.shape[-1] // table.shape[0]) ** -0.5)


def _reference_add_layer_norm(x, residual, weight, bias):
    out_dtype = torch.promote_types(x.dtype, residual.dtype)
    return tuple(add_layer_norm_reference(x, residual, weight, bias, 1e-5, out_dtype))


# The uncompiled callables: "compile" is torch.compile of the op's reference.
BASELINES = {
    "cswin_attention": {"compile": _reference_cswin, "sdpa": sdpa_cswin, "flex": flex_cswin},
    "mix_conv_gelu": {"compile": mix_conv_gelu_reference},
    "attention_to_mask": {"compile": _reference_atm},
    "resize_sum": {"compile": resize_sum_reference},
    "add_layer_norm": {"compile": _reference_add_layer_norm},
    "hlg_local_attention": {"compile": _reference_hlg_local},
    "hlg_global_attention": {"compile": _reference_hlg_global},
}


def baseline(op: str, name: str):
    """The callable for baseline ``name`` of ``op`` with the op's public signature, or None."""
    fn = BASELINES.get(op, {}).get(name)
    return _compiled(fn) if fn is not None and name == "compile" else fn
