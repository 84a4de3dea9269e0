from hrvit_kernels.models.heads.segformer import SegFormerHead

__all__ = ["SegFormerHead"]
