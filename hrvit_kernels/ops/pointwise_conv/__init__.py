from hrvit_kernels.ops.pointwise_conv.api import pointwise_conv

__all__ = ["pointwise_conv"]
