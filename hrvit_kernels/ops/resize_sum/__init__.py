from hrvit_kernels.ops.resize_sum.api import resize_sum
from hrvit_kernels.ops.resize_sum.reference import resize_sum_reference

__all__ = ["resize_sum", "resize_sum_reference"]
