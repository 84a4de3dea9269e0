"""Models: HRViT b1/b2/b3 backbones and SegFormer segmentors; ``create_model`` builds them by name."""
from hrvit_kernels.models import hrvit_segformer  # noqa: F401  (registers the segmentors)
from hrvit_kernels.models.heads import SegFormerHead
from hrvit_kernels.models.hrvit import VARIANTS, HRViT, HRViTConfig
from hrvit_kernels.models.registry import create_model, list_models, register_model
from hrvit_kernels.models.segmentor import EncoderDecoder

__all__ = ["VARIANTS", "EncoderDecoder", "HRViT", "HRViTConfig", "SegFormerHead", "create_model",
           "list_models", "register_model"]
