from hrvit_kernels.ops.hlg_conv_blocks.api import conv_affine_act, depthwise_conv3x3, depthwise_mlp, spatial_smoothing
from hrvit_kernels.ops.hlg_conv_blocks.reference import (conv_affine_act_reference, depthwise_conv3x3_reference,
                                                        depthwise_mlp_reference, spatial_smoothing_reference)

__all__ = ["conv_affine_act", "conv_affine_act_reference", "depthwise_conv3x3", "depthwise_conv3x3_reference",
           "depthwise_mlp", "depthwise_mlp_reference", "spatial_smoothing", "spatial_smoothing_reference"]
