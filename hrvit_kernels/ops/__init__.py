"""The package's ops. Each takes ``backend=`` ("auto", "reference", "triton", "cpp")."""
from hrvit_kernels.ops._dispatch import BACKENDS, use_backend
from hrvit_kernels.ops.attention_to_mask import attention_to_mask
from hrvit_kernels.ops.cswin_attention import cswin_attention
from hrvit_kernels.ops.des import kronecker_mlp
from hrvit_kernels.ops.gelu_mlp import gelu_mlp
from hrvit_kernels.ops.hlg_attention import hlg_global_attention, hlg_local_attention
from hrvit_kernels.ops.hlg_conv_blocks import conv_affine_act, depthwise_conv3x3, depthwise_mlp, spatial_smoothing
from hrvit_kernels.ops.layer_norm import add_layer_norm, layer_norm
from hrvit_kernels.ops.linear import linear
from hrvit_kernels.ops.mixcfn import mix_conv_gelu
from hrvit_kernels.ops.pointwise_conv import pointwise_conv
from hrvit_kernels.ops.resize_sum import resize_sum

__all__ = ["BACKENDS", "add_layer_norm", "attention_to_mask", "conv_affine_act", "cswin_attention", "depthwise_conv3x3",
           "depthwise_mlp", "gelu_mlp", "hlg_global_attention", "hlg_local_attention", "kronecker_mlp", "layer_norm",
           "linear", "mix_conv_gelu", "pointwise_conv", "resize_sum", "spatial_smoothing", "use_backend"]
