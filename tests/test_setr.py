"""SETR: released keys, parameter counts and multiply-adds; Naive / PUP / MLA outputs in train and eval
mode on small configurations; auxiliary losses; position-embedding resizing; bad input."""

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.flops import count_macs, count_params
from hrvit_kernels.models import cross_entropy_with_aux
from hrvit_kernels.testing import on_backend, randn, with_batchnorm_statistics

from release_keys import model_keys, released_keys

RELEASED = [("setr_naive_vit_l", "setr_naive_ade", 305_669_296, 362.7),
            ("setr_pup_vit_l", "setr_pup_ade", 318_307_292, 418.2),
            ("setr_mla_vit_l", "setr_mla_ade", 310_568_836, 378.7)]


def _tiny(name, **extra):
    levels = (0, 1, 2, 3)
    backbone = dict(embed_dim=64, depth=4, num_heads=4, out_indices=levels, drop_path_rate=0.0)
    if name == "setr_mla_vit_l":
        return hk.create_model(name, img_size=64, num_classes=5, backbone=dict(backbone, mla_channels=32),
                               decode_head=dict(channels=32, mlahead_channels=16), auxiliary_head=dict(channels=32),
                               **extra)
    return hk.create_model(name, img_size=64, num_classes=5, backbone=backbone,
                           decode_head=dict(channels=32, hidden_channels=32),
                           auxiliary_head=dict(channels=32, hidden_channels=32), **extra)


@pytest.mark.parametrize("name,keys,params,gflops", RELEASED)
def test_released_keys_shapes_and_parameter_counts(name, keys, params, gflops):
    model = hk.create_model(name)
    assert model_keys(model) == released_keys(keys)
    assert count_params(model) == params  # 305.67M / 318.31M / 310.57M, auxiliary heads included


@pytest.mark.slow
@pytest.mark.parametrize("name,keys,params,gflops", RELEASED)
def test_multiply_adds_of_backbone_and_main_head_match_the_release(name, keys, params, gflops):
    model = hk.create_model(name)
    with on_backend(model, "reference"):
        macs = count_macs(model, torch.randn(1, 3, 512, 512)).total  # eval: no auxiliary heads
    assert abs(macs / 1e9 / gflops - 1) < 0.01


@pytest.mark.parametrize("name,aux", [("setr_naive_vit_l", 3), ("setr_pup_vit_l", 4), ("setr_mla_vit_l", 4)])
def test_train_and_eval_outputs_and_auxiliary_loss(name, aux):
    model = _tiny(name).train()
    label = torch.randint(0, 5, (2, 64, 64))
    label[:, :4] = 255
    out = model(randn(2, 3, 64, 64))
    assert out["pred"].shape == (2, 5, 64, 64) and len(out["aux"]) == aux
    assert all(a.shape == (2, 5, 64, 64) for a in out["aux"])
    losses = cross_entropy_with_aux(out, label)
    assert set(losses) == {"loss_ce"} | {f"loss_ce_aux{i}" for i in range(aux)}
    expected = 0.4 * torch.nn.functional.cross_entropy(out["aux"][0], label, ignore_index=255)
    torch.testing.assert_close(losses["loss_ce_aux0"], expected)
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        assert model(randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize("name", ["setr_naive_vit_l", "setr_pup_vit_l", "setr_mla_vit_l"])
def test_other_input_sizes_resize_the_position_embeddings(name):
    model = _tiny(name).eval()
    with torch.no_grad():
        assert model(randn(1, 3, 96, 48)).shape == (1, 5, 96, 48)


def test_mla_drops_the_class_token_and_naive_keeps_it():
    naive, mla = _tiny("setr_naive_vit_l"), _tiny("setr_mla_vit_l")
    seen = {}
    for name, model in (("naive", naive), ("mla", mla)):
        model.backbone.blocks[0].register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape[1]))
        with torch.no_grad():
            model.eval()(randn(1, 3, 64, 64))
    assert seen == {"naive": 17, "mla": 16}


def test_setr_rejects_bad_input():
    with pytest.raises(ValueError, match=r"SETRVisionTransformer: input must be \(B, C, H, W\) with H, W >= 16"):
        _tiny("setr_naive_vit_l")(randn(1, 3, 8, 64))
    with pytest.raises(ValueError, match=r"out_indices \(3, 30\) must lie in \[0, 24\)"):
        hk.create_model("setr_naive_vit_l", backbone=dict(out_indices=(3, 30)))


@pytest.mark.parametrize("backend", ["reference", "cpp" if hk.HAS_EXT else "reference"])
def test_pup_inference_runs_its_conv_bn_relu_layers_as_one_op(backend, monkeypatch):
    """For inference (eval mode, no gradient) PUP's conv + BatchNorm + ReLU layers are conv_affine_act calls (on
    CPU a Winograd convolution, forced here at a small size), equal to the layers called one by one, which run
    while a gradient is recorded."""
    import hrvit_kernels.modules.batchnorm as batchnorm_modules
    from hrvit_kernels.ops.hlg_conv_blocks import cpu
    monkeypatch.setattr(cpu, "WINOGRAD_MIN_TILES", 1)
    calls = []
    op = batchnorm_modules.conv_affine_act
    monkeypatch.setattr(batchnorm_modules, "conv_affine_act", lambda *args: calls.append(args[-1]) or op(*args))
    model = with_batchnorm_statistics(_tiny("setr_pup_vit_l")).eval()
    x = randn(1, 3, 80, 64)
    with on_backend(model, backend):
        with torch.no_grad():
            inferred = model(x)
        assert calls == ["relu"] * 4
        recorded = model(x)
    torch.testing.assert_close(inferred, recorded.detach(), rtol=1e-4, atol=1e-4)
