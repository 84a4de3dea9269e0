"""HLG's local window attention (query as key, contiguous or dilated windows) and global window-token
attention, with their position biases."""
from hrvit_kernels.ops.hlg_attention.api import hlg_global_attention, hlg_local_attention

__all__ = ["hlg_global_attention", "hlg_local_attention"]
