"""HRViT's ImageNet classifiers: the release's keys in order, parameter counts, multiply-adds at 224, any input
size, the timm interface, the release's initialisation, and a classifier checkpoint into the backbone."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.flops import count_macs, count_params
from hrvit_kernels.models.hrvit_cls import HRViTClassifier
from hrvit_kernels.testing import on_backend, randn

from release_keys import model_keys, released_keys

# hrvit.md section 10: exact counts and the release's multiply-adds (fvcore) at 224 x 224.
CLASSIFIERS = [("hrvit_b1_cls", 19_685_152, 2.811051008), ("hrvit_b2_cls", 32_486_408, 5.343587392),
               ("hrvit_b3_cls", 37_870_304, 5.967974400)]


@pytest.mark.parametrize("name,params,gmacs", CLASSIFIERS)
def test_keys_parameters_and_multiply_adds_are_the_releases(name, params, gmacs):
    model = hk.create_model(name)
    assert model_keys(model) == released_keys(name)  # names, shapes and order
    assert count_params(model) == params == hk.model_card(name).params
    with on_backend(model, "reference"):
        macs = count_macs(model, torch.randn(1, 3, 224, 224)).total
    assert abs(macs / 1e9 / gmacs - 1) < 0.01


@pytest.mark.parametrize("H,W", [(224, 224), (97, 131), (32, 45)])
def test_any_input_size_gives_class_logits(H, W):
    model = hk.create_model("hrvit_b1_cls", num_classes=7).eval()
    with torch.no_grad():
        assert model(randn(2, 3, H, W)).shape == (2, 7)
        assert model.forward_features(randn(1, 3, H, W)).shape == (1, 2048, -(-H // 32), -(-W // 32))


def test_timm_interface():
    model = hk.create_model("hrvit_b1_cls").eval()
    x = randn(1, 3, 64, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features) == (1, 2048)
        torch.testing.assert_close(model.forward_head(features), model(x))
    assert model.get_classifier() is model.head.classifier and model.pretrained_cfg["crop_pct"] == 0.9
    model.reset_classifier(10)
    assert model.get_classifier().out_features == 10 and model(x).shape == (1, 10)
    model.reset_classifier(0)
    assert model(x).shape == (1, 2048) and not any(k.startswith("head.classifier") for k in model.state_dict())
    with pytest.raises(ValueError, match="reset_classifier: argument 'num_classes' must be an int >= 0"):
        model.reset_classifier(-1)


def test_release_initialisation_and_a_checkpoint_into_the_backbone():
    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_cls")
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    bound = 1 / linear.in_features ** 0.5  # PyTorch's default: bias uniform in +-1/sqrt(fan_in)
    assert linear.bias.abs().max() <= bound and linear.bias.abs().max() > 0.5 * bound
    assert all(m.attn_bn.weight.abs().sum() == 0 for m in model.modules() if isinstance(m, hk.modules.HRViTAttention))
    checkpointed = HRViTClassifier(hk.models.VARIANTS["b1"], with_cp=True)
    assert all(abs(m.attn_bn.momentum - (1 - 0.9 ** 0.5)) < 1e-12
               for m in checkpointed.modules() if isinstance(m, hk.modules.HRViTAttention))
    segmentor = hk.create_model("hrvit_b1_segformer", num_classes=5)
    report = hk.load_pretrained_backbone(segmentor, {"state_dict": model.state_dict()})
    assert "dropped" in report
    for k, v in segmentor.backbone.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
