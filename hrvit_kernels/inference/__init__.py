"""Inference: images in, label maps out, with the releases' test configurations; pictures of the results."""
from hrvit_kernels.inference.images import read_image
from hrvit_kernels.inference.memory import keep_freed_memory
from hrvit_kernels.inference.segmenter import (MS_RATIOS, InferenceConfig, Segmenter, inference, inference_config,
                                               rescaled_size, window_starts)
from hrvit_kernels.inference.visualize import colorize, overlay, save_png

__all__ = ["MS_RATIOS", "InferenceConfig", "Segmenter", "colorize", "inference", "inference_config",
           "keep_freed_memory", "overlay", "read_image", "rescaled_size", "save_png", "window_starts"]
