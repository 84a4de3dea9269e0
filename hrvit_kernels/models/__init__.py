"""Models: the HRViT, SegViT, SETR and HLG families, their heads and segmentors, and a card per model;
``create_model`` builds them by name."""
from hrvit_kernels.models import hlg, hrvit_cls, hrvit_segformer, segvit, setr, setr_hlg  # noqa: F401  (register)
from hrvit_kernels.models.cards import ModelCard, model_card
from hrvit_kernels.models.heads import SegFormerHead
from hrvit_kernels.models.hrvit import VARIANTS, HRViT, HRViTConfig
from hrvit_kernels.models.registry import create_model, list_models, register_model
from hrvit_kernels.models.heads.atm import ATMHead, ShrunkATMHead
from hrvit_kernels.models.losses import ATMLoss, cross_entropy_with_aux
from hrvit_kernels.models.pretrained import load_pretrained_backbone
from hrvit_kernels.models.segmentor import EncoderDecoder
from hrvit_kernels.models.vit_mmseg import VisionTransformer
from hrvit_kernels.models.vit_timm import SETRVisionTransformer

__all__ = ["ATMHead", "ATMLoss", "cross_entropy_with_aux", "ShrunkATMHead", "SETRVisionTransformer",
           "VisionTransformer", "VARIANTS", "EncoderDecoder", "HRViT", "HRViTConfig", "ModelCard", "SegFormerHead",
           "create_model", "model_card", "list_models", "load_pretrained_backbone", "register_model"]
