from hrvit_kernels.ops.layer_norm.api import add_layer_norm, layer_norm
from hrvit_kernels.ops.layer_norm.reference import add_layer_norm_reference

__all__ = ["add_layer_norm", "add_layer_norm_reference", "layer_norm"]
