"""Thin nn.Modules over the ops, with the released checkpoints' parameter names."""
from hrvit_kernels.modules.attention import HRViTAttention
from hrvit_kernels.modules.des import DES
from hrvit_kernels.modules.drop_path import DropPath
from hrvit_kernels.modules.mixcfn import MixCFN, MixConv

__all__ = ["DES", "DropPath", "HRViTAttention", "MixCFN", "MixConv"]
