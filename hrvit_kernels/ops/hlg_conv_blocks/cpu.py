"""HLG's conv blocks on CPU in token layout: pointwise convolutions as matrix products (oneDNN with weights
packed once, or PyTorch's BLAS), full 3x3 convolutions by oneDNN on channels-last maps, and the affines
(BatchNorms), GELUs, residual and depthwise conv fused into passes over the tokens (hrvit_kernels._C). fp32
inside; other dtypes convert here. Outputs are NCHW in channels-last memory: the tokens themselves, so a caller
that flattens them to tokens gets them without a copy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops import _packed_products as packed


def _product(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             kept: str | None = None) -> torch.Tensor:
    """rows @ weight^T (+ bias) in fp32 for 2-D rows: by the weight packed once where that applies (few rows,
    ``ops/_packed_products.py``), else by the BLAS, into the kept buffer named ``kept`` where one is named (a
    fresh large output's pages fault on first touch)."""
    weight = weight.float()
    if packed.applies(rows, weight, bias):
        return packed.linear(rows, weight, bias)
    if bias is not None:
        return torch.addmm(bias.float(), rows, weight.t())
    out = None if kept is None else _alloc.scratch(kept, (rows.shape[0], weight.shape[0]))
    return torch.mm(rows, weight.t(), out=out)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B*H*W, C) contiguous fp32 tokens of an NCHW map: a view of a channels-last map."""
    return x.float().permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous()


@torch.autocast("cpu", enabled=False)  # the products must be fp32: the kernels write fp32 into them
def depthwise_mlp(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
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

    tokens = _tokens(x)
    pre = _product(tokens, weight1, kept="depthwise_mlp")
    ext, threads = _ext.ext(), torch.get_num_threads()
    ext.affine_gelu_inplace(B * H * W, hidden, pre.data_ptr(), scale1.data_ptr(), shift1.data_ptr(), threads)
    mid = _alloc.scratch("depthwise_mlp_mid", (B * out_h * out_w, hidden))
    ext.depthwise_conv3_forward(B, H, W, hidden, stride, True, pre.data_ptr(), H * W * hidden, hidden,
                                     taps.data_ptr(), b_dw.data_ptr(), mid.data_ptr(), threads)
    out = _product(mid, weight2, bias2.float())
    return out.reshape(B, out_h, out_w, out_channels).permute(0, 3, 1, 2).to(x.dtype)


@torch.autocast("cpu", enabled=False)
def spatial_smoothing(x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3, bias3, scale3,
                      shift3) -> torch.Tensor:
    B, C, H, W = x.shape
    mid = weight1.shape[0]
    ext, threads = _ext.ext(), torch.get_num_threads()
    tokens = _tokens(x)
    # affine(t + b) = t * scale + (b * scale + shift): the biases join the shifts, the weights stay as they are.
    shifts = [(b.float() * s.float() + t.float()).contiguous()
              for b, s, t in ((bias1, scale1, shift1), (bias2, scale2, shift2), (bias3, scale3, shift3))]
    scales = [s.float().contiguous() for s in (scale1, scale2, scale3)]
    hidden = _product(tokens, weight1, kept="spatial_smoothing")
    ext.affine_gelu_inplace(B * H * W, mid, hidden.data_ptr(), scales[0].data_ptr(), shifts[0].data_ptr(), threads)
    image = hidden.view(B, H, W, mid).permute(0, 3, 1, 2)  # channels-last: oneDNN's own layout
    conv = F.conv2d(image, weight2.float(), padding=1).permute(0, 2, 3, 1).reshape(B * H * W, mid).contiguous()
    ext.affine_gelu_inplace(B * H * W, mid, conv.data_ptr(), scales[1].data_ptr(), shifts[1].data_ptr(), threads)
    out = _product(conv, weight3)
    ext.residual_affine_gelu_inplace(B * H * W, C, out.data_ptr(), tokens.data_ptr(), scales[2].data_ptr(),
                                     shifts[2].data_ptr(), threads)
    return out.view(B, H, W, C).permute(0, 3, 1, 2).to(x.dtype)


@torch.autocast("cpu", enabled=False)
def conv_affine_act(x, weight, bias, scale, shift, stride: int, padding: int, groups: int,
                    activation: str) -> torch.Tensor:
    """3x3 stride-1 convolutions of large maps by Winograd's F(2x2, 3x3) with the affine and activation in its
    output transform; others by oneDNN on channels-last memory (measured 1.3-1.5x faster than on NCHW for HLG's
    stem), then affine + activation in place on its tokens."""
    scale = scale.float().contiguous()
    shift = (shift.float() + (bias.float() * scale if bias is not None else 0)).contiguous()
    image = x.float().contiguous(memory_format=torch.channels_last)
    if winograd_applies(image, weight, stride, padding, groups):
        return conv3x3_winograd(image, weight, scale, shift, _ACTIVATION_CODES[activation]).to(x.dtype)
    out = F.conv2d(image, weight.float().contiguous(memory_format=torch.channels_last), None, stride, padding, 1,
                   groups).contiguous(memory_format=torch.channels_last)
    B, C, H, W = out.shape
    tokens = out.permute(0, 2, 3, 1)  # a view: (B, H, W, C) contiguous
    if activation == "gelu":
        _ext.ext().affine_gelu_inplace(B * H * W, C, tokens.data_ptr(), scale.data_ptr(), shift.data_ptr(),
                                       torch.get_num_threads())
    else:
        torch.addcmul(shift, tokens, scale, out=tokens).relu_()
    return out.to(x.dtype)


_ACTIVATION_CODES = {"gelu": 2, "relu": 1}  # the kernels' (0: none)
# Winograd against oneDNN's direct convolution on the 2-core development machine: 1.32x on HLG's 112 x 112 x 96
# stem conv, 1.5-1.6x on SETR-HLG's 128 x 128 x 1440 -> 512 fusion conv, 1.4-1.6x on SETR-PUP's 256-channel
# layers, even at 28 x 28 x 48 (196 tiles), 0.6-0.7x on 14 x 14 maps and with 24 channels: below these sizes its
# 16 products are too small for the BLAS.
WINOGRAD_MIN_TILES, WINOGRAD_MIN_CHANNELS = 400, 32
_WINOGRAD_TILES = 512  # tiles per chunk of the products, fewer when the channels are many (_CHUNK_BYTES)
_WINOGRAD_CHUNK_BYTES = 16 << 20  # one chunk's transformed inputs or products: stays in the last-level cache


def winograd_applies(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int) -> bool:
    B, _, H, W = x.shape
    tiles = B * ((H + 1) // 2) * ((W + 1) // 2)
    return (tuple(weight.shape[-2:]) == (3, 3) and stride == 1 and padding == 1 and groups == 1
            and min(weight.shape[:2]) >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES)


def conv3x3_winograd(image: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                     activation: int) -> torch.Tensor:
    """activation(conv3x3(image, weight, padding=1) * scale + shift) for an fp32 channels-last (B, C, H, W)
    image: NCHW in channels-last memory. Tile rows go in chunks: input transform, 16 products, output
    transform, so that the transformed tiles stay in cache."""
    B, C, H, W = image.shape
    out_channels = weight.shape[0]
    ext, threads = _ext.ext(), torch.get_num_threads()
    weight = weight.float().contiguous()  # held: the kernel reads it through its address
    filters = _alloc.scratch("winograd_filters", (16, C, out_channels))
    ext.winograd_filter_transform(out_channels, C, weight.data_ptr(), filters.data_ptr(), threads)
    tile_h, tile_w = (H + 1) // 2, (W + 1) // 2
    chunk_tiles = min(_WINOGRAD_TILES, _WINOGRAD_CHUNK_BYTES // (64 * max(C, out_channels)))
    chunk_rows = max(1, chunk_tiles // tile_w)
    out = _alloc.empty((B, H, W, out_channels))
    for first in range(0, B * tile_h, chunk_rows):
        rows = min(chunk_rows, B * tile_h - first)
        tiles = _alloc.scratch("winograd_tiles", (16, rows * tile_w, C))
        ext.winograd_input_transform(B, H, W, C, first, rows, image.data_ptr(), tiles.data_ptr(), threads)
        products = torch.bmm(tiles, filters, out=_alloc.scratch("winograd_products", (16, rows * tile_w,
                                                                                        out_channels)))
        ext.winograd_output_transform(B, H, W, out_channels, first, rows, products.data_ptr(), scale.data_ptr(),
                                      shift.data_ptr(), activation, out.data_ptr(), threads)
    return out.permute(0, 3, 1, 2)


@torch.autocast("cpu", enabled=False)
def depthwise_conv(x, weight, bias) -> torch.Tensor:
    B, C, H, W = x.shape
    tokens = _tokens(x)
    taps = weight.float().reshape(C, 9).t().contiguous()
    b = bias.float().contiguous()
    out = _alloc.empty((B * H * W, C))
    _ext.ext().depthwise_conv3_forward(B, H, W, C, 1, False, tokens.data_ptr(), H * W * C, C, taps.data_ptr(),
                                       b.data_ptr(), out.data_ptr(), torch.get_num_threads())
    return out.view(B, H, W, C).permute(0, 3, 1, 2).to(x.dtype)
