"""Flash-attention steps shared by the Triton kernels of the stripe attention and attention-to-mask
(imported only by those kernel modules, which import triton)."""
import triton
import triton.language as tl


@triton.jit
def load_head_rows(ptr, batch_offset, rows, row_stride, c0, offs_d, mask):
    """The tile ptr[batch_offset + rows * row_stride + c0 + offs_d] of one head's channels, zero where
    ``mask`` is off; ``rows`` is a column of token indices (shape (n, 1))."""
    return tl.load(ptr + batch_offset + rows * row_stride + c0 + offs_d[None, :], mask=mask, other=0.0)


@triton.jit
def load_saved_stats(Lse, Delta, row_start, rows, mask):
    """The backward's per-query statistics at row_start + rows: the saved log-sum-exp in base 2, and
    delta = rowsum(dO * O)."""
    lse_log2 = tl.load(Lse + row_start + rows, mask=mask, other=0.0)  # saved in base 2
    return lse_log2, tl.load(Delta + row_start + rows, mask=mask, other=0.0)


@triton.jit
def online_softmax_step(s, v, m_i, l_i, acc):
    """One key tile of the online softmax: s are base-2 logits (masked keys at -inf), v the tile's values.
    Returns the updated running maximum, row sum and unnormalised output."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)


@triton.jit
def softmax_grad_tile(q, k, v, do, lse_log2, delta, valid, qk_scale_log2):
    """Probabilities P = exp2(q k^T scale log2e - lse) from the saved log-sum-exp (zero outside
    ``valid``) and the logit gradient dS = P (dO v^T - delta), delta = rowsum(dO * O)."""
    p = tl.exp2(tl.dot(q, tl.trans(k)) * qk_scale_log2 - lse_log2[:, None])
    p = tl.where(valid, p, 0.0)
    return p, p * (tl.dot(do, tl.trans(v)) - delta[:, None])
