"""The releases' own head configurations (as their config files write them, `type` and all) build the same
models as the registered defaults, with the releases' meaning of every keyword; keywords no release uses,
and release settings that would change the model, are refused by name."""
import copy

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import randn

SYNC_BN = dict(type="SyncBN", requires_grad=True)
CE = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
AUX_CE = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)


def _up_head(in_index, aux=False, **extra):
    """The release's VisionTransformerUpHead dict for ADE20K (configs/_base_/models/setr_naive_pup.py with
    the ADE20K config's overrides)."""
    return dict(type="VisionTransformerUpHead", in_channels=1024, channels=512, in_index=in_index, img_size=512,
                embed_dim=1024, num_classes=150, norm_cfg=SYNC_BN, upsampling_method="bilinear",
                align_corners=False, loss_decode=AUX_CE if aux else CE, **extra)


RELEASE = {
    "setr_naive_vit_l": dict(
        decode_head=_up_head(23, num_conv=2, conv3x3_conv1x1=False),
        auxiliary_head=[_up_head(i, aux=True, num_conv=2, conv3x3_conv1x1=False) for i in (9, 14, 19)]),
    "setr_pup_vit_l": dict(
        decode_head=_up_head(23, num_conv=4, num_upsampe_layer=4),
        auxiliary_head=[_up_head(i, aux=True, num_conv=2, num_upsampe_layer=2) for i in (9, 14, 19, 23)]),
    "setr_mla_vit_l": dict(
        decode_head=dict(type="VIT_MLAHead", in_channels=1024, channels=512, img_size=512, mla_channels=256,
                         mlahead_channels=128, num_classes=150, norm_cfg=SYNC_BN, align_corners=False,
                         loss_decode=CE),
        auxiliary_head=[dict(type="VIT_MLA_AUXIHead", in_channels=256, channels=512, in_index=i, img_size=512,
                             num_classes=150, align_corners=False, loss_decode=AUX_CE) for i in range(4)]),
}


def _shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", list(RELEASE))
def test_release_head_configs_build_the_registered_model(name):
    torch.manual_seed(0)
    default = hk.create_model(name)
    released = hk.create_model(name, **copy.deepcopy(RELEASE[name]))
    assert _shapes(released) == _shapes(default)
    released.load_state_dict(default.state_dict())
    # The heads compute the same function: compare them on random backbone features.
    default.train(), released.train()
    features = [randn(1, 1024 if name != "setr_mla_vit_l" else 256, 8, 8) for _ in range(4)]
    torch.manual_seed(1)
    expected = [default.decode_head(features)] + [h(features) for h in default.auxiliary_head]
    torch.manual_seed(1)
    actual = [released.decode_head(features)] + [h(features) for h in released.auxiliary_head]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


def test_the_release_layer_index_must_be_an_output_of_the_backbone():
    with pytest.raises(ValueError, match=r"decode_head: in_index = 22 is layer 22, not one of the backbone's "
                                         r"out_indices \(9, 14, 19, 23\); add it to backbone=dict\(out_indices=...\)"):
        hk.create_model("setr_naive_vit_l", decode_head=dict(in_index=22))
    model = hk.create_model("setr_naive_vit_l", backbone=dict(out_indices=(9, 14, 19, 22, 23)),
                            decode_head=dict(in_index=22))
    assert model.decode_head.in_index == 3  # layer 22 is the backbone's fourth output


def test_release_keywords_with_another_meaning_are_refused():
    with pytest.raises(TypeError, match=r"SETRUpHead: unexpected keyword argument\(s\) 'num_convs'"):
        hk.create_model("setr_naive_vit_l", decode_head=dict(num_convs=1))
    with pytest.raises(ValueError, match="SETRUpHead: argument 'norm_cfg' must name one of BN, SyncBN, BN2d"):
        hk.create_model("setr_naive_vit_l", decode_head=dict(norm_cfg=dict(type="GN", num_groups=32)))
    with pytest.raises(ValueError, match=r"\(num_conv, num_upsampe_layer\) = \(4, 1\) is not one the release"):
        hk.create_model("setr_pup_vit_l", decode_head=dict(num_upsampe_layer=1))
    with pytest.raises(ValueError, match="argument 'upsampling_method' must be 'bilinear'"):
        hk.create_model("setr_pup_vit_l", decode_head=dict(upsampling_method="deconv"))
    with pytest.raises(ValueError, match=r"ATMHead: argument 'crop_train' = True selects a release variant"):
        hk.create_model("segvit_vit_l_ade20k", decode_head=dict(crop_train=True))


def test_segvit_heads_take_the_release_keywords():
    common = dict(img_size=64, num_classes=5, backbone=dict(embed_dims=64, num_layers=4, num_heads=4,
                                                              out_indices=(1, 3), shrink_idx=2))
    head = dict(embed_dims=32, num_heads=4, channels=32, type="TPNATMHead", shrink_ratio=16, CE_loss=False,
                crop_train=False, norm_cfg=SYNC_BN, align_corners=False,
                loss_decode=dict(type="ATMLoss", num_classes=5, dec_layers=3, loss_weight=1.0))
    model = hk.create_model("segvit_shrunk_vit_l_ade20k", decode_head=head, **common).eval()
    with torch.no_grad():
        assert model(randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
