"""The depthwise MLP on CPU in token layout: the pointwise convolutions as matrix products (PyTorch's BLAS), the
first affine (with the first bias) + GELU in place after the first one, the depthwise conv (the second affine
folded into its weights) + GELU in one pass (hrvit_kernels._C). fp32 inside; other dtypes convert here. The output is NCHW in
channels-last memory: the tokens themselves, so a caller that flattens it to tokens gets them without a copy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc


@torch.autocast("cpu", enabled=False)  # the products must be fp32: the kernels write fp32 into them
def forward(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
            stride: int) -> torch.Tensor:
    B, C, H, W = x.shape
    hidden, out_channels = weight1.shape[0], weight2.shape[0]
    out_h, out_w = (H - 1) // stride + 1, (W - 1) // stride + 1
    scale1, scale2 = scale1.float(), scale2.float()
    # affine(x w^T + b) = (x w^T) * scale + (b * scale + shift); the same with the depthwise conv, whose
    # weights are few enough to scale (the first product's would cost a pass over a large matrix).
    shift1 = (bias1.float() * scale1 + shift1.float()).contiguous()
    scale1 = scale1.contiguous()
    taps = (weight_dw.float().reshape(hidden, 9) * scale2[:, None]).t().contiguous()  # tap-major (9, hidden)
    b_dw = (bias_dw.float() * scale2 + shift2.float()).contiguous()

    tokens = x.float().permute(0, 2, 3, 1).reshape(B * H * W, C)  # a view for channels-last maps
    pre = torch.mm(tokens, weight1.float().t())
    assert pre.dtype == torch.float32 and pre.is_contiguous()
    ext, threads = _ext.ext(), torch.get_num_threads()
    ext.affine_gelu_inplace(B * H * W, hidden, pre.data_ptr(), scale1.data_ptr(), shift1.data_ptr(), threads)
    mid = _alloc.empty((B * out_h * out_w, hidden))
    ext.depthwise_conv3_gelu_forward(B, H, W, hidden, stride, pre.data_ptr(), H * W * hidden, hidden,
                                     taps.data_ptr(), b_dw.data_ptr(), mid.data_ptr(), threads)
    out = torch.addmm(bias2.float(), mid, weight2.float().t())
    return out.reshape(B, out_h, out_w, out_channels).permute(0, 3, 1, 2).to(x.dtype)


def _gelu_grad(a: torch.Tensor) -> torch.Tensor:
    """d GELU(a) / da = Phi(a) + a phi(a) (exact GELU)."""
    return 0.5 * (1.0 + torch.erf(a * 0.5 ** 0.5)) + a * torch.exp(-0.5 * a * a) * (2 * torch.pi) ** -0.5


@torch.autocast("cpu", enabled=False)
def backward(grad_out, x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
             stride: int) -> list[torch.Tensor]:
    """Every input's gradient, in PyTorch ops in fp32 from the forward recomputed in NCHW: the fused forward is
    for inference, and gradients through it (saliency maps, attacks) need only be right."""
    inputs = (x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2)
    x, w1, b1, s1, t1, w_dw, b_dw, s2, t2, w2, b2 = (t.float() for t in inputs)
    g = grad_out.float()
    per_channel = lambda v: v[None, :, None, None]  # noqa: E731
    h1 = F.conv2d(x, w1[:, :, None, None], b1)
    a1 = h1 * per_channel(s1) + per_channel(t1)
    g1 = F.gelu(a1)
    h2 = F.conv2d(g1, w_dw, b_dw, stride, 1, groups=w_dw.shape[0])
    a2 = h2 * per_channel(s2) + per_channel(t2)
    g2 = F.gelu(a2)

    grad_b2, grad_w2 = g.sum((0, 2, 3)), torch.einsum("bohw,bchw->oc", g, g2)
    grad_a2 = torch.einsum("bohw,oc->bchw", g, w2) * _gelu_grad(a2)
    grad_s2, grad_t2 = (grad_a2 * h2).sum((0, 2, 3)), grad_a2.sum((0, 2, 3))
    grad_g1, grad_w_dw, grad_b_dw = torch.ops.aten.convolution_backward(
        grad_a2 * per_channel(s2), g1, w_dw, [w_dw.shape[0]], [stride, stride], [1, 1], [1, 1], False, [0, 0],
        w_dw.shape[0], [True, True, True])
    grad_a1 = grad_g1 * _gelu_grad(a1)
    grad_s1, grad_t1 = (grad_a1 * h1).sum((0, 2, 3)), grad_a1.sum((0, 2, 3))
    grad_h1 = grad_a1 * per_channel(s1)
    grad_b1, grad_w1 = grad_h1.sum((0, 2, 3)), torch.einsum("bhyx,bcyx->hc", grad_h1, x)
    grad_x = torch.einsum("bhyx,hc->bcyx", grad_h1, w1)
    grads = (grad_x, grad_w1, grad_b1, grad_s1, grad_t1, grad_w_dw, grad_b_dw, grad_s2, grad_t2, grad_w2, grad_b2)
    return [grad.to(t.dtype).contiguous() for grad, t in zip(grads, inputs)]
