"""ImageNet checkpoints into segmentors' backbones: timm-named and mmseg-named ViTs into both ViT encoders
(names converted, position embeddings resized the release's way, classifier and final norm dropped), an
HRViT classifier into an HRViT backbone, and mismatches that leave the model unchanged."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.checkpoint import CheckpointMismatchError
from hrvit_kernels.models._vit_common import resize_pos_embed
from hrvit_kernels.models.pretrained import load_pretrained_backbone

from tiny_models import FAMILIES


def _timm_vit(grid: int) -> dict:
    """A ViT classifier checkpoint in timm's naming (the tiny encoders' sizes, another token grid), as timm
    saves it under {'model': ...}."""
    setr = hk.create_model("setr_naive_vit_l", **FAMILIES["setr_naive_vit_l"]).backbone
    state = {k: torch.randn_like(v) for k, v in setr.state_dict().items()}
    state["pos_embed"] = torch.randn(1, grid * grid + 1, state["pos_embed"].shape[2])
    state.update({"norm.weight": torch.randn(64), "norm.bias": torch.randn(64),
                  "head.weight": torch.randn(1000, 64), "head.bias": torch.randn(1000)})
    return {"model": state}


def test_timm_vit_into_segvit_converts_names_and_resizes_bicubically():
    checkpoint = _timm_vit(grid=6)
    model = hk.create_model("segvit_vit_l_ade20k", **FAMILIES["segvit_vit_l_ade20k"])
    report = load_pretrained_backbone(model, checkpoint)
    state, layer = checkpoint["model"], model.backbone.layers[1]
    assert torch.equal(layer.attn.attn.in_proj_weight, state["blocks.1.attn.qkv.weight"])
    assert torch.equal(layer.ffn.layers[1].weight, state["blocks.1.mlp.fc2.weight"])
    assert torch.equal(model.backbone.patch_embed.projection.weight, state["patch_embed.proj.weight"])
    expected = resize_pos_embed(state["pos_embed"], (4, 4), "bicubic", num_extra=1)  # 64 px / 16 = 4 x 4
    torch.testing.assert_close(model.backbone.pos_embed.data, expected)
    assert "timm naming -> mmseg" in report and "6x6 -> 4x4 (bicubic)" in report and "head.weight" in report


def test_mmseg_vit_into_setr_converts_back_and_resizes_bilinearly():
    segvit = hk.create_model("segvit_vit_l_ade20k", **FAMILIES["segvit_vit_l_ade20k"]).backbone
    state = {k: torch.randn_like(v) for k, v in segvit.state_dict().items()}
    state["pos_embed"] = torch.randn(1, 37, 64)
    model = hk.create_model("setr_mla_vit_l", **FAMILIES["setr_mla_vit_l"])
    neck_before = model.backbone.mla.mla_p2_1x1[0].weight.clone()
    report = load_pretrained_backbone(model, {"state_dict": state, "meta": {}})
    assert torch.equal(model.backbone.blocks[2].attn.qkv.weight, state["layers.2.attn.attn.in_proj_weight"])
    assert torch.equal(model.backbone.blocks[2].norm1.bias, state["layers.2.ln1.bias"])
    expected = resize_pos_embed(state["pos_embed"], (4, 4), "bilinear", num_extra=1)
    torch.testing.assert_close(model.backbone.pos_embed.data, expected)
    assert torch.equal(model.backbone.mla.mla_p2_1x1[0].weight, neck_before)  # the neck keeps its init
    assert "mmseg naming -> timm" in report and "keep their initialisation" in report


def test_hrvit_classifier_into_the_backbone_drops_its_head():
    backbone = hk.create_model("hrvit_b1")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in backbone.state_dict().items()}
    state.update({"head.fc.weight": torch.randn(1000, 8), "head.fc.bias": torch.randn(1000)})
    model = hk.create_model("hrvit_b1_segformer", num_classes=5)
    report = load_pretrained_backbone(model, {"state_dict_ema": state})
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert "dropped 2" in report


def test_a_mismatch_leaves_the_model_unchanged():
    checkpoint = _timm_vit(grid=4)
    del checkpoint["model"]["blocks.3.mlp.fc1.weight"]
    checkpoint["model"]["blocks.0.attn.proj.weight"] = torch.randn(3, 3)
    model = hk.create_model("segvit_vit_l_ade20k", **FAMILIES["segvit_vit_l_ade20k"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"1 encoder keys missing \(layers.3.ffn.layers.0.0.weight\); "
                                                      r"0 unexpected; 1 wrongly shaped \(checkpoint vs model\) "
                                                      r"\(layers.0.attn.attn.out_proj.weight: \(3, 3\) vs \(64, 64\)\)"):
        load_pretrained_backbone(model, checkpoint)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
