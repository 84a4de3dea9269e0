"""What the two plain ViTs share: position-embedding resizing and gradient checkpointing per block.

Both ViTs take ``with_cp=True``: each block's activations are recomputed in the backward pass instead of
kept (gradient checkpointing per block, as mmseg's ``with_cp``), which trades about a third more compute
for the memory of ViT-L at 512-640 pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hrvit_kernels.ops._checks import sizes_are_traced


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], mode: str, num_extra: int = 1) -> torch.Tensor:
    """(1, extra + S*S, C) stored embeddings -> (1, extra + h*w, C) for a (h, w) token grid."""
    extra, table = pos_embed[:, :num_extra], pos_embed[:, num_extra:]
    side = int(math.isqrt(table.shape[1]))
    # A traced program resizes always (an exact identity at the same size), valid for every grid.
    if not sizes_are_traced() and (side, side) == tuple(grid):
        return pos_embed
    table = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=grid, mode=mode, align_corners=False)
    return torch.cat([extra, table.flatten(2).transpose(1, 2)], dim=1)


def run_block(block: nn.Module, with_cp: bool, *args):
    """block(*args), recomputed in the backward pass under gradient checkpointing (the RNG state of
    DropPath is replayed, so the gradients equal the plain model's)."""
    if with_cp and torch.is_grad_enabled() and args[0].requires_grad:
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)
