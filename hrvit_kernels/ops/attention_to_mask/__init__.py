from hrvit_kernels.ops.attention_to_mask.api import attention_to_mask
from hrvit_kernels.ops.attention_to_mask.reference import attention_to_mask_reference

__all__ = ["attention_to_mask", "attention_to_mask_reference"]
