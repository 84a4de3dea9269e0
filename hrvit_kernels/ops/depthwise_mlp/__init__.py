from hrvit_kernels.ops.depthwise_mlp.api import depthwise_mlp
from hrvit_kernels.ops.depthwise_mlp.reference import depthwise_mlp_reference

__all__ = ["depthwise_mlp", "depthwise_mlp_reference"]
