from hrvit_kernels.ops.des.api import DENSE_MAX_CHANNELS, des_factors, kronecker_mlp

__all__ = ["DENSE_MAX_CHANNELS", "des_factors", "kronecker_mlp"]
