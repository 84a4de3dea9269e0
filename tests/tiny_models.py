"""One small configuration per registered family (``create_model(name, **FAMILIES[name])``), for tests
that run every family; ``with_cp`` adds gradient checkpointing where each family takes it;
``output_tensors`` flattens any model's output."""
import torch

SEGVIT = dict(img_size=64, num_classes=5, decode_head=dict(embed_dims=32, num_heads=4, channels=32),
              backbone=dict(embed_dims=64, num_layers=4, num_heads=4, out_indices=(1, 2, 3)))
SHRUNK = dict(SEGVIT, backbone=dict(embed_dims=64, num_layers=4, num_heads=4, out_indices=(1, 3), shrink_idx=2))
SETR = dict(img_size=64, num_classes=5, decode_head=dict(channels=32, hidden_channels=32),
            auxiliary_head=dict(channels=32, hidden_channels=32),
            backbone=dict(embed_dim=64, depth=4, num_heads=4, out_indices=(0, 1, 2, 3)))
SETR_MLA = dict(img_size=64, num_classes=5, decode_head=dict(channels=32, mlahead_channels=16),
                auxiliary_head=dict(channels=32),
                backbone=dict(embed_dim=64, depth=4, num_heads=4, out_indices=(0, 1, 2, 3), mla_channels=32))
FAMILIES = {
    "hrvit_b1": dict(),
    "hrvit_b1_segformer": dict(num_classes=5),
    "segvit_vit_l_ade20k": SEGVIT,
    "segvit_shrunk_vit_l_ade20k": SHRUNK,
    "setr_naive_vit_l": SETR,
    "setr_pup_vit_l": SETR,
    "setr_mla_vit_l": SETR_MLA,
    "hlg_tiny": dict(num_classes=5, depths=(1, 2, 1, 1)),
    "setr_hlg_small": dict(num_classes=5, backbone=dict(depths=(1, 2, 1, 1)), decode_head=dict(channels=64),
                           auxiliary_head=dict(channels=32)),
}


def with_cp(name: str) -> dict:
    """The family's small configuration with gradient checkpointing per block."""
    config = dict(FAMILIES[name])
    if "backbone" in config:
        config["backbone"] = dict(config["backbone"], with_cp=True)
    else:
        config["with_cp"] = True  # HRViT builders take the backbone's arguments directly
    return config


def output_tensors(out) -> list:
    """The tensors of a model's output: a tensor, a list of maps, or a dict of those."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in output_tensors(v)]
    return [t for v in out for t in output_tensors(v)]
