"""SegViT: keys, parameter counts and multiply-adds of the released models, QD/QU behaviour on small
configurations, the ATM loss against hand computations, train/eval outputs, odd input sizes."""
import math

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.flops import count_macs, count_params
from hrvit_kernels.models import ATMLoss
from hrvit_kernels.testing import MODEL_TOL, assert_close_within, on_backend, randn

from release_keys import model_keys, released_keys

TINY = dict(img_size=64, num_classes=5, decode_head=dict(embed_dims=32, num_heads=4, channels=32))
TINY_BACKBONE = dict(embed_dims=64, num_layers=4, num_heads=4, out_indices=(1, 2, 3), drop_path_rate=0.0)
TINY_SHRUNK_BACKBONE = dict(embed_dims=64, num_layers=4, num_heads=4, out_indices=(1, 3), shrink_idx=2,
                            drop_path_rate=0.0)


@pytest.mark.parametrize("name,keys,params", [("segvit_vit_l_ade20k", "segvit_vitl_ade_full", 344_305_303),
                                              ("segvit_shrunk_vit_l_ade20k", "segvit_vitl_ade_shrunk", 344_598_679)])
def test_released_keys_shapes_and_parameter_counts(name, keys, params):
    model = hk.create_model(name)
    assert model_keys(model) == released_keys(keys)
    assert count_params(model) == params  # 344.31M / 344.60M


@pytest.mark.slow
@pytest.mark.parametrize("name,size,gflops", [("segvit_vit_l_ade20k", 640, 637.9), ("segvit_shrunk_vit_l_ade20k", 640, 373.5),
                                              ("segvit_vit_l_pascal_context", 480, 321.6),
                                              ("segvit_shrunk_vit_l_coco_stuff", 512, 224.8)])
def test_multiply_adds_match_the_release_within_one_percent(name, size, gflops):
    model = hk.create_model(name)
    with on_backend(model, "reference"):
        macs = count_macs(model, torch.randn(1, 3, size, size)).total
    assert abs(macs / 1e9 / gflops - 1) < 0.01


def test_train_and_eval_outputs():
    model = hk.create_model("segvit_vit_l_ade20k", backbone=TINY_BACKBONE, **TINY).train()
    out = model(randn(2, 3, 64, 64))
    assert set(out) == {"pred_logits", "pred_masks", "pred", "aux_outputs"}
    assert out["pred_logits"].shape == (2, 5, 6) and out["pred_masks"].shape == (2, 5, 64, 64)
    assert [a["pred_masks"].shape for a in out["aux_outputs"]] == [(2, 5, 4, 4), (2, 5, 4, 4)]
    model.eval()
    with torch.no_grad():
        assert model(randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)


def test_non_square_and_odd_inputs_where_the_release_fails():
    model = hk.create_model("segvit_vit_l_ade20k", backbone=TINY_BACKBONE, **TINY).eval()
    with torch.no_grad():
        assert model(randn(1, 3, 80, 48)).shape == (1, 5, 80, 48)  # 5 x 3 token grid
        assert model(randn(1, 3, 70, 45)).shape == (1, 5, 70, 45)


def test_backends_agree_on_segvit():
    model = hk.create_model("segvit_vit_l_ade20k", backbone=TINY_BACKBONE, **TINY).eval()
    x = randn(1, 3, 64, 64)
    with torch.no_grad():
        with on_backend(model, "reference"):
            expected = model(x)
        assert_close_within(model(x), expected, MODEL_TOL, "auto")


def test_query_based_downsampling_keeps_top_left_tokens_as_residual():
    from hrvit_kernels.models.vit_mmseg import TransformerEncoderLayer

    layer = TransformerEncoderLayer(32, 4, 4.0, True, 0.0, shrink=True).eval()
    torch.nn.init.zeros_(layer.attn.attn.out_proj.weight)
    torch.nn.init.zeros_(layer.attn.attn.out_proj.bias)
    torch.nn.init.zeros_(layer.ffn.layers[1].weight)
    torch.nn.init.zeros_(layer.ffn.layers[1].bias)  # attention and FFN contribute nothing
    x = randn(2, 6 * 4, 32)
    out, grid = layer(x, (6, 4))
    assert grid == (3, 2)
    torch.testing.assert_close(out, x.unflatten(1, (6, 4))[:, ::2, ::2].flatten(1, 2))
    with pytest.raises(ValueError, match="even token grid, got 5 x 4"):
        layer(randn(1, 20, 32), (5, 4))


def test_shrunk_model_upsamples_with_grid_queries():
    model = hk.create_model("segvit_shrunk_vit_l_ade20k", backbone=TINY_SHRUNK_BACKBONE, **TINY)
    features = model.backbone(randn(1, 3, 64, 64))
    assert [f.shape[-2:] for f in features] == [(4, 4), (2, 2)]  # layer 1 full grid, layer 3 quarter
    model.train()
    out = model(randn(2, 3, 64, 64))
    assert out["pred_masks"].shape == (2, 5, 64, 64) and len(out["aux_outputs"]) == 2
    model.eval()
    with torch.no_grad():
        assert model(randn(1, 3, 64, 96)).shape == (1, 5, 64, 96)


def _hand_loss(pred_logits, pred_masks, label, ignore=255):
    """Written out for one image: present classes, weighted CE, focal and dice by explicit loops."""
    N = pred_logits.shape[1]
    present = [k for k in range(N) if (label == k).any()]
    num_masks = max(len(present), 1)
    weights = [1.0] * N + [0.1]
    num, den = 0.0, 0.0
    for k in range(N):
        target = k if k in present else N
        logp = torch.log_softmax(pred_logits[0, k].double(), 0)[target].item()
        num += -weights[target] * logp
        den += weights[target]
    focal, dice = 0.0, 0.0
    for k in present:
        p = torch.sigmoid(pred_masks[0, k].double()).flatten()
        t = (label[0] == k).double().flatten()
        terms = []
        for pi, ti in zip(p.tolist(), t.tolist()):
            pt = pi if ti else 1 - pi
            ce = -math.log(pt)
            terms.append((0.25 if ti else 0.75) * ce * (1 - pt) ** 2)
        focal += sum(terms) / len(terms)
        dice += 1 - (2 * (p * t).sum().item() + 1) / (p.sum().item() + t.sum().item() + 1)
    return num / den, 20 * focal / num_masks, dice / num_masks


def test_atm_loss_matches_a_hand_computation_with_ignored_pixels():
    torch.manual_seed(3)
    label = torch.tensor([[[0, 0, 1], [255, 1, 1]]])  # one image, classes 0 and 1 present, one ignored
    outputs = dict(pred_logits=randn(1, 3, 4), pred_masks=randn(1, 3, 2, 3), aux_outputs=[])
    losses = ATMLoss(num_classes=3, dec_layers=1)(outputs, label)
    ce, mask, dice = _hand_loss(outputs["pred_logits"], outputs["pred_masks"], label)
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}
    assert losses["loss_ce"].item() == pytest.approx(ce, rel=1e-5)
    assert losses["loss_mask"].item() == pytest.approx(mask, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice, rel=1e-5)


def test_atm_loss_on_a_model_has_auxiliary_terms_and_gradients():
    model = hk.create_model("segvit_vit_l_ade20k", backbone=TINY_BACKBONE, **TINY).train()
    label = torch.randint(0, 5, (2, 64, 64))
    label[:, :8] = 255
    losses = ATMLoss(num_classes=5, dec_layers=3)(model(randn(2, 3, 64, 64)), label)
    assert set(losses) == {f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_atm_loss_rejects_bad_input():
    with pytest.raises(ValueError, match=r"ATMLoss: 'label' must be \(B, H, W\) class indices, got shape \(2, 3\)"):
        ATMLoss(3, 1)(dict(pred_logits=randn(1, 3, 4), pred_masks=randn(1, 3, 2, 3)), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="training-mode dict"):
        ATMLoss(3, 1)(randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_loss_and_shrunk_head_check_their_configuration():
    outputs = dict(pred_logits=randn(1, 3, 4), pred_masks=randn(1, 3, 2, 3), aux_outputs=[])
    with pytest.raises(ValueError, match=r"ATMLoss: dec_layers = 3, but 'outputs' holds 1 supervised outputs"):
        ATMLoss(3, dec_layers=3)(outputs, torch.zeros(1, 2, 3, dtype=torch.long))
    head = hk.models.ShrunkATMHead(img_size=64, in_channels=16, channels=32, num_classes=5, embed_dims=32, num_heads=4)
    with pytest.raises(ValueError, match=r"deep feature's grid \(4, 4\) is not the shallow grid \(4, 4\) "
                                         r"down-sampled by 2 \(the backbone's query-based down-sampling\)"):
        head([randn(1, 16, 4, 4), randn(1, 16, 4, 4)])
