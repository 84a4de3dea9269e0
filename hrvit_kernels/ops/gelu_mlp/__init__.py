from hrvit_kernels.ops.gelu_mlp.api import gelu_mlp
from hrvit_kernels.ops.gelu_mlp.reference import gelu_mlp_reference

__all__ = ["gelu_mlp", "gelu_mlp_reference"]
