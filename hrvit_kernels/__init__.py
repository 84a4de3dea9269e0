"""hrvit_kernels: exact HRViT, SegViT, SETR and HLG models on fused kernels."""
from hrvit_kernels._ext import HAS_EXT
from hrvit_kernels.checkpoint import load_checkpoint, read_checkpoint
from hrvit_kernels.inference import Segmenter, inference, inference_config, keep_freed_memory
from hrvit_kernels.models import create_model, list_models, load_pretrained_backbone, model_card
from hrvit_kernels.modules import release_ops, set_release_ops, use_release_ops
from hrvit_kernels.ops import (BACKENDS, add_layer_norm, attention_to_mask, conv_affine_act, cswin_attention,
                               depthwise_conv3x3, depthwise_mlp, gelu_mlp, hlg_global_attention, hlg_local_attention,
                               layer_norm, linear, mix_conv_gelu, resize_sum, spatial_smoothing, use_backend)

__version__ = "0.1.0"

__all__ = ["BACKENDS", "HAS_EXT", "Segmenter", "__version__", "add_layer_norm", "attention_to_mask", "conv_affine_act",
           "create_model", "cswin_attention", "depthwise_conv3x3", "depthwise_mlp", "gelu_mlp", "hlg_global_attention",
           "hlg_local_attention", "inference", "inference_config", "keep_freed_memory", "layer_norm", "linear",
           "list_models", "load_checkpoint", "load_pretrained_backbone", "mix_conv_gelu", "model_card",
           "read_checkpoint", "release_ops", "resize_sum", "set_release_ops", "spatial_smoothing", "use_backend",
           "use_release_ops"]
