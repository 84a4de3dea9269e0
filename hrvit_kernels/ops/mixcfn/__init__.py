from hrvit_kernels.ops.mixcfn.api import mix_conv_gelu
from hrvit_kernels.ops.mixcfn.reference import mix_conv_gelu_reference

__all__ = ["mix_conv_gelu", "mix_conv_gelu_reference"]
