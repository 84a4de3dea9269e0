from hrvit_kernels.ops.cswin_attention.api import cswin_attention
from hrvit_kernels.ops.cswin_attention.checks import stripe_heads
from hrvit_kernels.ops.cswin_attention.reference import cswin_attention_reference

__all__ = ["cswin_attention", "cswin_attention_reference", "stripe_heads"]
