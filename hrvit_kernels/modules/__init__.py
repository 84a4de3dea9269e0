"""Thin nn.Modules over the ops, with the released checkpoints' parameter names."""
from hrvit_kernels.modules.attention import HRViTAttention
from hrvit_kernels.modules.des import DES
from hrvit_kernels.modules.drop_path import DropPath
from hrvit_kernels.modules.linear import Linear
from hrvit_kernels.modules.mixcfn import MixCFN, MixConv
from hrvit_kernels.modules.release_ops import release_ops, set_release_ops, use_release_ops

__all__ = ["DES", "DropPath", "HRViTAttention", "Linear", "MixCFN", "MixConv", "release_ops", "set_release_ops",
           "use_release_ops"]
