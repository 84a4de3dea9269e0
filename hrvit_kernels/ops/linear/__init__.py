from hrvit_kernels.ops.linear.api import linear

__all__ = ["linear"]
