"""HRViT b1/b2/b3 and the SegFormer segmentors: keys, shapes, parameter counts, multiply-adds, odd input
sizes, configuration, gradient checkpointing, and agreement between backends."""
import copy

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.flops import count_macs, count_params
from hrvit_kernels.models.cards import CARDS
from hrvit_kernels.testing import (FP32_SUMMED_TOL, FP64_TOL, MODEL_TOL, REWRITE_TOL, assert_as_accurate_as_reference,
                                  assert_close_within, on_backend, randn)

from release_keys import model_keys, released_keys
from tiny_models import FAMILIES, output_tensors, with_cp


# Exact counts from the spec (section 1 and 7), written out here rather than read from the cards so
# that a wrong table cannot make the test pass.
BACKBONE_PARAMS = {"hrvit_b1": 7_758_008, "hrvit_b2": 20_310_944, "hrvit_b3": 25_507_960}
SEGFORMER_PARAMS = {"hrvit_b1_segformer": 8_183_118, "hrvit_b2_segformer": 20_809_782,
                    "hrvit_b3_segformer": 28_724_494}
CITYSCAPES_PARAMS = {"hrvit_b1_segformer": 8_149_451, "hrvit_b2_segformer": 20_776_115,
                     "hrvit_b3_segformer": 28_623_755}


@pytest.mark.parametrize("variant", ["b1", "b2", "b3"])
def test_state_dict_keys_and_shapes_equal_the_release(variant):
    model = hk.create_model(f"hrvit_{variant}")
    assert model_keys(model) == released_keys(f"hrvit_{variant}_backbone")


@pytest.mark.parametrize("variant", ["b1", "b2", "b3"])
def test_release_style_checkpoint_loads_strictly_into_the_segmentor(variant):
    backbone = hk.create_model(f"hrvit_{variant}").state_dict()
    segmentor = hk.create_model(f"hrvit_{variant}_segformer")
    checkpoint = {f"backbone.{k}": v for k, v in backbone.items()}
    checkpoint.update({k: v for k, v in segmentor.state_dict().items() if k.startswith("decode_head.")})
    segmentor.load_state_dict(checkpoint, strict=True)
    heads = {k.split(".")[1] for k in checkpoint if k.startswith("decode_head.")}
    assert heads == {"convs", "fusion_conv", "conv_seg"}


@pytest.mark.parametrize("name", sorted(BACKBONE_PARAMS))
def test_backbone_parameter_counts(name):
    assert count_params(hk.create_model(name)) == BACKBONE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(SEGFORMER_PARAMS))
def test_segformer_parameter_counts(name):
    assert count_params(hk.create_model(name)) == SEGFORMER_PARAMS[name]
    assert count_params(hk.create_model(name, num_classes=19)) == CITYSCAPES_PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in CARDS if n.startswith("hrvit") and not n.endswith("_cls")))
def test_multiply_adds_reproduce_the_release_within_one_percent(name):
    model, card = hk.create_model(name), CARDS[name]
    assert card.params == {**BACKBONE_PARAMS, **SEGFORMER_PARAMS}[name]
    x = torch.randn(1, 3, card.input_size, card.input_size)
    with on_backend(model, "reference"):
        macs = count_macs(model, x, getattr(model, "encode_decode", None)).total
    assert abs(macs / 1e9 / card.release_gmacs - 1) < 0.01


@pytest.mark.parametrize("H,W", [(64, 64), (97, 131), (32, 45)])
def test_any_input_size_gives_cropped_maps(H, W):
    model = hk.create_model("hrvit_b1").eval()
    with torch.no_grad():
        maps = model(randn(1, 3, H, W))
    for i, m in enumerate(maps):
        stride = 4 * 2 ** i
        assert m.shape == (1, model.out_channels[i], -(-H // stride), -(-W // stride))
        assert torch.isfinite(m).all()


def test_padding_equals_running_the_padded_input():
    """Crop semantics: a 40 x 72 input behaves as its zero-padded 64 x 96 version, cropped."""
    model = hk.create_model("hrvit_b1").eval()
    x = randn(1, 3, 40, 72)
    with torch.no_grad():
        maps = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 24, 0, 24)))
    for m, p in zip(maps, padded):
        torch.testing.assert_close(m, p[..., :m.shape[-2], :m.shape[-1]])


@pytest.mark.parametrize("variant", ["b1", "b2", "b3"])
def test_segformer_outputs_logits_at_input_size(variant):
    model = hk.create_model(f"hrvit_{variant}_segformer", num_classes=7).eval()
    with torch.no_grad():
        out = model(randn(2, 3, 65, 33))
    assert out.shape == (2, 7, 65, 33)


def test_backends_agree_on_a_whole_model():
    model = hk.create_model("hrvit_b1_segformer").eval()
    for m in model.modules():  # attn_bn starts at zero; switch the attention on so it is tested
        if isinstance(m, hk.modules.HRViTAttention):
            torch.nn.init.normal_(m.attn_bn.weight)
    x = randn(1, 3, 64, 96)
    with torch.no_grad():
        with on_backend(model, "reference"):
            expected = model(x)
        actual = model(x)  # auto
    assert_close_within(actual, expected, MODEL_TOL, "auto")


def test_stripe_widths_and_drop_path_are_configurable():
    model = hk.create_model("hrvit_b3", stripe_widths=(1, 2, 3, 9), drop_path_rate=0.3)
    stage = model.features[11]
    assert [blocks[0].attn.stripe_width for blocks in stage.branches] == [1, 2, 3, 9]
    rates = [blk.drop_path.drop_prob for s in model.features[1::2] for blk in max(s.branches, key=len)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert len(set(rates)) == 26  # one per position of the ramp over sum(max blocks per stage)


def test_attention_bn_starts_at_zero():
    model = hk.create_model("hrvit_b1")
    bns = [m.attn_bn for m in model.modules() if isinstance(m, hk.modules.HRViTAttention)]
    assert bns and all(bn.weight.abs().sum() == 0 and bn.bias.abs().sum() == 0 for bn in bns)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_gradient_checkpointing_gives_the_same_gradients(name):
    # Train mode with the families' drop-path and dropout: the recomputation replays the same draws.
    torch.manual_seed(1)
    plain = hk.create_model(name, **FAMILIES[name]).train()
    checkpointed = hk.create_model(name, **with_cp(name)).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = randn(2, 3, 64, 64)
    grads, saved = [], []
    for model in (plain, checkpointed):
        torch.manual_seed(2)
        saved.append(0)

        def count_saved(t):
            saved[-1] += t.numel()  # what autograd keeps outside checkpointed regions
            return t

        with torch.autograd.graph.saved_tensors_hooks(count_saved, lambda t: t):
            outs = output_tensors(model(x))
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert saved[1] < 0.7 * saved[0], saved  # the blocks' activations are not kept
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        assert_close_within(grads[1][n], grads[0][n], REWRITE_TOL, n)


def test_training_step_runs_on_every_backend():
    model = hk.create_model("hrvit_b1_segformer", num_classes=5).train()
    x, label = randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    for backend in ("reference", "auto"):
        with on_backend(model, backend):
            loss = torch.nn.functional.cross_entropy(model(x), label)
            model.zero_grad()
            loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.slow
def test_whole_model_compiles_fullgraph_with_inductor_and_equals_eager():
    model = hk.create_model("hrvit_b1").eval()
    for m in model.modules():
        if isinstance(m, hk.modules.HRViTAttention):
            torch.nn.init.normal_(m.attn_bn.weight)
    x = randn(1, 3, 64, 64)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for actual, expected in zip(compiled(x), model(x)):
            assert_close_within(actual, expected, MODEL_TOL, "auto")


@pytest.mark.parametrize("training", [False, True])
def test_segformer_head_folded_fusion_equals_the_release_sequence(training):
    """Outside the reference backend the fusion conv (and eval BatchNorm) are folded into the level
    convs and the levels summed in place; outputs and gradients must equal the release's sequence."""
    from hrvit_kernels.models.heads.segformer import SegFormerHead

    torch.manual_seed(0)
    head = SegFormerHead([8, 16, 24, 32], channels=12, num_classes=5).train(training)
    bn = head.fusion_conv.bn
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    head.dropout.p = 0.0  # dropout draws differ between the two calls
    maps = [randn(2, c, s, s + 1).requires_grad_() for c, s in zip([8, 16, 24, 32], [17, 9, 5, 3])]
    results = []
    for backend in ("reference", "auto"):
        with on_backend(head, backend):
            out = head(maps)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
                                    maps + list(head.parameters()))
        results.append((out, grads))
    (expected, expected_grads), (actual, actual_grads) = results
    assert_close_within(actual, expected, REWRITE_TOL, "output")
    # atol 1e-4: in training mode the level-conv bias gradients are zero up to rounding (BatchNorm
    # removes per-channel shifts), so only their absolute size is meaningful.
    for a, e in zip(actual_grads, expected_grads):
        assert_close_within(a, e, FP32_SUMMED_TOL, "gradient")


@pytest.mark.parametrize("channels", [32, 48, 96, 128, 256])
def test_des_dense_form_equals_the_factored_form(channels):
    """Off the reference backend DES's op runs as two dense Kronecker-product linears on small channel
    counts and without axis swaps on larger ones; outputs and the gradients of the input and all four
    parameters must equal the release's factored sequence."""
    torch.manual_seed(0)
    # float64: the two forms sum in different orders, and float32 rounding of the parameter gradients
    # (sums over all tokens of O(10) terms) varies with the BLAS kernel; in float64 they agree to 1e-10.
    des = hk.modules.DES(channels).double()
    for p in des.parameters():  # random biases too: a wrongly ordered bias repeat must show
        torch.nn.init.normal_(p)
    x = randn(2, 37, channels, dtype=torch.float64).requires_grad_()
    weights = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).view_as(x)
    params = [des.proj_right.weight, des.proj_right.bias, des.proj_left.weight, des.proj_left.bias]
    results = []
    for backend in ("reference", "auto"):
        out = hk.ops.kronecker_mlp(x, des.k, des.p, *params, backend=backend)
        results.append((out, torch.autograd.grad((out * weights).sum(), [x, *params])))
    (expected, expected_grads), (actual, actual_grads) = results
    assert_close_within(actual, expected, FP64_TOL, "output")
    for a, e in zip(actual_grads, expected_grads):
        assert_close_within(a, e, FP64_TOL, "gradient")
    with hk.release_ops(des, True):  # the module's release switch runs the factored form
        torch.testing.assert_close(des(x), expected, atol=0, rtol=0)


@pytest.mark.parametrize("training", [False, True])
def test_attention_epilogue_outside_the_reference_equals_the_release_sequence(training):
    """Outside the reference backend the attention block sums into the conv path in place and folds eval
    BatchNorm into the output projection; outputs and all gradients must equal the release's sequence.

    Gradients are checked against the release sequence in float64: each must be about as close to it as
    the float32 release sequence is. (In training the output projection's bias gradient is zero in exact
    arithmetic, as BatchNorm follows: in float32 it is pure rounding, ~3e-4, in either backend.)"""
    torch.manual_seed(0)
    attn = hk.modules.HRViTAttention(64, head_dim=32, stripe_width=2).train(training)
    with torch.no_grad():  # the release initialises attn_bn to zero: make it non-trivial
        attn.attn_bn.weight.normal_()
        attn.attn_bn.bias.normal_()
        attn.attn_bn.running_mean.normal_()
        attn.attn_bn.running_var.uniform_(0.5, 2.0)
    x = randn(2, 35, 64).requires_grad_()
    weights = torch.linspace(-1, 1, x.numel()).view_as(x)

    def run(module, backend, dtype):
        inp = x.detach().to(dtype).requires_grad_()
        with on_backend(module, backend):
            out = module(inp, 5, 7)
        return out, torch.autograd.grad((out * weights.to(dtype)).sum(), [inp, *module.parameters()])

    exact, exact_grads = run(copy.deepcopy(attn).double(), "reference", torch.float64)
    expected, expected_grads = run(attn, "reference", torch.float32)
    actual, actual_grads = run(attn, "auto", torch.float32)
    assert_close_within(actual, expected, REWRITE_TOL, "output")
    names = ["x"] + [name for name, _ in attn.named_parameters()]
    for name, a, e, g in zip(names, actual_grads, expected_grads, exact_grads):
        assert_as_accurate_as_reference(a, e, g, f"grad of {name}", 4.0, 1e-6 * g.abs().max().item())
    with torch.no_grad(), on_backend(attn, "auto"):  # the in-place Hardswish path
        assert_close_within(attn(x, 5, 7), expected, REWRITE_TOL, "in place")
