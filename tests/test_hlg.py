"""HLG classifiers and SETR-HLG segmentors: keys, order and shapes of the key files, parameter counts,
multiply-adds at 224, blocks against a naive implementation of the specification's data flow (whole windows,
as at 224), our design for other sizes (odd sizes, padded windows), every backend against the reference,
the timm interface, the release's head keywords, bad input, recipes."""
import math

import pytest
import torch
import torch.nn.functional as F

import hrvit_kernels as hk
from hrvit_kernels.flops import count_macs, count_params
from hrvit_kernels.testing import assert_as_accurate_as_reference, assert_close_within, on_backend, randn
from naive import hlg_windows_naive
from release_keys import model_keys, released_keys

CLASSIFIERS = ["hlg_tiny", "hlg_small", "hlg_medium", "hlg_large"]
BLOCK_TOL = (1e-5, 1e-5)


def _perturbed(model):
    """Every parameter moved off its initial value (LayerNorm weights 1, biases 0, tiny position MLPs), so
    that a wrong wiring cannot hide behind an identity."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_keys_and_parameters_are_the_releases(name):
    model = hk.create_model(name)
    assert model_keys(model) == released_keys(name)
    assert count_params(model) == hk.model_card(name).params


def test_segmentor_keys_and_parameters_are_the_releases():
    model = hk.create_model("setr_hlg_small")
    assert model_keys(model) == released_keys("setr_hlg_small_ade")
    assert count_params(model) == hk.model_card("setr_hlg_small").params == 38_016_464
    # The segmentation backbone: the classifier's keys minus the head, plus the per-stage output norms.
    backbone = {k for k, _ in released_keys("setr_hlg_small_ade") if k.startswith("backbone.")}
    classifier = {f"backbone.{k}" for k, _ in released_keys("hlg_small") if not k.startswith("head.")}
    assert backbone - classifier == {f"backbone.norm_out_{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert classifier <= backbone
    cityscapes = hk.create_model("setr_hlg_large", num_classes=19)
    assert cityscapes.decode_head.conv_seg.out_channels == 19 and len(cityscapes.backbone.block3) == 18


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_multiply_adds_at_224_within_one_percent_of_the_release(name):
    model = hk.create_model(name).eval()
    with on_backend(model, "reference"):
        macs = count_macs(model, torch.randn(1, 3, 224, 224)).total
    assert abs(macs / 1e9 / hk.model_card(name).release_gmacs - 1) < 0.01
    with on_backend(model, "cpp" if hk.HAS_EXT else "reference"):  # the kernels declare the same products
        assert count_macs(model, torch.randn(1, 3, 224, 224)).total == macs


def _position_bias(dpb, dy, dx):
    x = dpb.pos_proj(torch.tensor([float(dy), float(dx)]))
    for layers in (dpb.pos1, dpb.pos2, dpb.pos3):
        x = layers[2](F.relu(layers[0](x)))
    return x  # (heads,)


def _naive_block(block, x):
    """One block of stages 1-3 as the specification writes it (section 2.1-2.2), at a map of whole windows."""
    shortcut = block.down_proj(x) if block.first else x
    B, C, H, W = shortcut.shape
    tokens = lambda m: m.flatten(2).transpose(1, 2)  # noqa: E731
    a = tokens(shortcut) + block.norm2(tokens(block.mlp(x)))
    a_map = a.transpose(1, 2).reshape(B, C, H, W)
    s = tokens(F.gelu(a_map + block.spatial_smooth(a_map)))
    u = block.norm0(s)
    q, v = block.q(u), block.v(u)
    heads, d = C // 32, 32
    local = torch.zeros_like(s)
    windows = hlg_windows_naive(H, W, block.dilated)
    local_bias = {}
    for pixels in windows:
        rows = torch.tensor([y * W + x_ for y, x_ in pixels])
        bias = torch.stack([torch.stack([
            local_bias.setdefault((i // 7 - j // 7, i % 7 - j % 7),
                                  _position_bias(block.pos_local, i // 7 - j // 7, i % 7 - j % 7))
            for j in range(49)]) for i in range(49)])  # (49, 49, heads)
        for h in range(heads):
            ch = slice(h * d, (h + 1) * d)
            logits = q[:, rows, ch] @ q[:, rows, ch].transpose(1, 2) * d ** -0.5 + bias[..., h]
            local[:, rows, ch] = logits.softmax(-1) @ v[:, rows, ch]
    s = s + local
    means = torch.stack([s[:, [y * W + x_ for y, x_ in pixels]].mean(1) for pixels in windows], 1)
    t = block.h0_norm(means)
    query = q + tokens(block.aux_q(block.norm1(local).transpose(1, 2).reshape(B, C, H, W)))
    k_g, v_g = block.k(t), block.v(t)
    M = len(windows)
    global_bias = torch.empty(H * W, M, heads)
    cache = {}
    for i in range(H * W):
        for m in range(M):  # pixel i at (i // H, i % H); window token m at the pseudo-position (m // H, m % H)
            offset = (i // H - m // H, i % H - m % H)
            global_bias[i, m] = cache.setdefault(offset, _position_bias(block.pos_global, *offset))
    out = torch.zeros_like(s)
    for h in range(heads):
        ch = slice(h * d, (h + 1) * d)
        logits = query[..., ch] @ k_g[..., ch].transpose(1, 2) * d ** -0.5 + global_bias[..., h]
        out[..., ch] = logits.softmax(-1) @ v_g[..., ch]
    return (s + block.global_attn(out)).transpose(1, 2).reshape(B, C, H, W)


def _naive_last_block(block, x):
    """A stage-4 block (section 2.3): merge + MLP, then global attention over all tokens with a post-norm."""
    shortcut = block.down_proj(x) if block.first else x
    B, C, H, W = shortcut.shape
    t = shortcut.flatten(2).transpose(1, 2) + block.norm2(block.mlp(x).flatten(2).transpose(1, 2))
    q, k, v = block.q(t), block.k(t), block.v(t)
    heads, d = C // 32, 32
    bias = torch.stack([torch.stack([_position_bias(block.pos_global, i // W - j // W, i % W - j % W)
                                     for j in range(H * W)]) for i in range(H * W)])
    out = torch.zeros_like(t)
    for h in range(heads):
        ch = slice(h * d, (h + 1) * d)
        out[..., ch] = ((q[..., ch] @ k[..., ch].transpose(1, 2)) * d ** -0.5 + bias[..., h]).softmax(-1) @ v[..., ch]
    return (t + block.norm1(block.global_attn(out))).transpose(1, 2).reshape(B, C, H, W)


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("stage,index,in_size", [(0, 0, 28), (0, 1, 14), (1, 1, 14), (3, 0, 14)])
def test_blocks_match_a_naive_reading_of_the_specification(backend, stage, index, in_size):
    """Maps of whole 7 x 7 windows (14 x 14: two per side), where our design is the release's 224 network:
    contiguous and dilated windows, a stage's first block (stride-2 merge), the last stage."""
    model = _perturbed(hk.create_model("hlg_tiny"))
    block = getattr(model, f"block{stage + 1}")[index]
    x = randn(2, block.mlp.fc1.in_channels, in_size, in_size)
    naive = _naive_last_block if stage == 3 else _naive_block
    with torch.no_grad(), on_backend(model, backend):
        assert_close_within(block(x), naive(block, x), BLOCK_TOL, f"block{stage + 1}.{index}")


@pytest.mark.parametrize("H,W", [(97, 131), (32, 45), (224, 224)])
def test_any_input_size(H, W):
    model = hk.create_model("hlg_tiny").eval()
    with torch.no_grad():
        logits = model(randn(1, 3, H, W))
        maps = hk.create_model("setr_hlg_small").backbone.eval()(randn(1, 3, H, W))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    for i, m in enumerate(maps):
        side = lambda n: math.ceil(n / 2 ** (i + 2))  # noqa: E731
        assert m.shape[-2:] == (side(H), side(W)) and torch.isfinite(m).all()


def test_padded_windows_ignore_the_padding():
    """Our design at sizes the release does not take: windows past the map's edge attend among their real
    pixels only (the naive loops skip the padded slots)."""
    from naive import hlg_local_attention_naive

    q, v, bias = randn(1, 120, 32), randn(1, 120, 32), randn(1, 49, 49)
    for dilated in (False, True):
        assert_close_within(hk.hlg_local_attention(q, v, (10, 12), dilated, bias, backend="reference"),
                            hlg_local_attention_naive(q, v, 10, 12, dilated, bias, 32 ** -0.5), BLOCK_TOL, "local")


@pytest.mark.parametrize("name,size", [("hlg_small", (75, 61)), ("setr_hlg_small", (64, 83))])
def test_kernels_are_as_accurate_as_the_reference_forward_and_backward(name, size, monkeypatch):
    """Output and every parameter's gradient of the default backend, and its output for inference (no gradient
    recorded: HLG's conv-block and MLP ops), against float64, within 4x the float32 reference's own error (a deep
    network's sums in other orders; perturbed weights, so no identity hides). Every 3x3 stride-1 convolution
    with enough channels takes the Winograd path at these small sizes too (SETR-HLG's fusion conv, with ReLU)."""
    from hrvit_kernels.ops.hlg_conv_blocks import cpu
    monkeypatch.setattr(cpu, "WINOGRAD_MIN_TILES", 1)
    model = hk.create_model(name, **({"num_classes": 10} if name.startswith("setr") else {}))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.eval()
    x = randn(2, 3, *size)
    results = {}
    for backend, dtype in (("reference", torch.float64), ("reference", torch.float32), ("auto", torch.float32)):
        model.to(dtype).zero_grad(set_to_none=True)
        with on_backend(model, backend):
            out = model(x.to(dtype))
        out.square().mean().backward()
        results[backend, dtype] = [out.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
    exact = results["reference", torch.float64]
    # A floor at the scale of all gradients: some are exactly zero in exact arithmetic (a position bias's
    # last bias shifts every logit of a head alike, which the softmax ignores) and only rounding remains.
    floors = [1e-6 * exact[0].abs().max().item()] + [1e-6 * max(e.abs().max().item() for e in exact[1:])] * (
        len(exact) - 1)
    for i, (a, r, e) in enumerate(zip(results["auto", torch.float32], results["reference", torch.float32], exact)):
        assert_as_accurate_as_reference(a, r, e, f"{name} result {i}", 4.0, floors[i])
    with torch.no_grad(), on_backend(model, "auto"):  # inference: the conv-block and MLP ops run too
        inferred = model(x)
    assert_as_accurate_as_reference(inferred, results["reference", torch.float32][0], exact[0], f"{name} inference",
                                    4.0, floors[0])


def test_timm_interface():
    model = hk.create_model("hlg_tiny", num_classes=10).eval()
    x = randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 4, 512) and model.num_features == 512
        assert torch.equal(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (2, 512)
    assert model.get_classifier() is model.head and model.pretrained_cfg["classifier"] == "head"
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, 512)


def test_release_head_keywords_and_bad_input():
    decode_head = dict(type="HLGUPHead", in_channels=[96, 192, 384, 768], channels=512, in_index=[0, 1, 2, 3],
                       num_classes=150, dropout_ratio=0.1, norm_cfg=dict(type="SyncBN", requires_grad=True),
                       align_corners=False, loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0))
    auxiliary_head = dict(type="FCNHead", in_channels=384, in_index=2, channels=256, num_convs=1,
                          concat_input=False, dropout_ratio=0.1, num_classes=150,
                          norm_cfg=dict(type="SyncBN", requires_grad=True), align_corners=False,
                          loss_decode=dict(type="CrossEntropyLoss", loss_weight=0.4))
    model = hk.create_model("setr_hlg_small", decode_head=decode_head, auxiliary_head=auxiliary_head)
    assert model_keys(model) == released_keys("setr_hlg_small_ade")
    with pytest.raises(TypeError, match="HLGUPHead: unexpected keyword argument\\(s\\) 'depht'"):
        hk.create_model("setr_hlg_small", decode_head=dict(depht=2))
    with pytest.raises(ValueError, match="H and W must be at least 32, got \\(31, 64\\)"):
        hk.create_model("hlg_tiny")(randn(1, 3, 31, 64))


def test_recipes():
    from hrvit_kernels.train import default_classification_recipe, default_recipe

    seg = default_recipe("setr_hlg_medium")
    assert (seg.optimizer, seg.lr, seg.weight_decay, seg.head_lr_mult, seg.warmup_iters, seg.crop) == (
        "adamw", 6e-5, 0.0, 10.0, 1500, 512)
    cls = default_classification_recipe("hlg_small")
    assert (cls.lr, cls.batch_size, cls.min_lr, cls.warmup_lr, cls.clip_grad, cls.model_ema_decay,
            cls.drop_path_rate, cls.cooldown_epochs) == (5e-4, 128, 5e-6, 5e-7, 5.0, 0.99996, 0.2, 0)


def test_position_bias_is_kept_only_while_valid():
    from hrvit_kernels.modules.hlg import DynamicPositionBias
    bias = DynamicPositionBias(6, 3)
    with torch.no_grad():
        first = bias.table((5, 4))
        assert bias.table((5, 4)) is first  # kept
        bias.pos3[2].bias.add_(1.0)  # an in-place change of a parameter
        changed = bias.table((5, 4))
        torch.testing.assert_close(changed, first + 1.0)
        assert bias.table((3, 3)).shape == (3, 25)
    with torch.enable_grad():
        recorded = bias.table((5, 4))
    assert recorded.grad_fn is not None  # with gradients recorded, computed afresh
    torch.testing.assert_close(recorded.detach(), changed)


@pytest.mark.slow
def test_inference_compiles_fullgraph_and_equals_eager():
    """torch.compile(fullgraph=True) of an HLG classifier for inference: the conv-block ops, the attentions and
    the position biases (computed, not kept, while compiling) trace without a graph break."""
    model = _perturbed(hk.create_model("hlg_tiny"))
    x = randn(1, 3, 64, 72)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert_close_within(compiled(x), model(x), BLOCK_TOL, "compiled hlg_tiny")


def test_segmentor_inference_ops_declare_the_layers_multiply_adds():
    """setr_hlg_small's multiply-adds are the same whichever backend runs (the inference ops declare what the
    layers they replace count, BatchNorms and resizes included)."""
    model = hk.create_model("setr_hlg_small").eval()
    x = randn(1, 3, 96, 128)
    counts = []
    for backend in ("reference", "cpp" if hk.HAS_EXT else "reference"):
        with on_backend(model, backend):
            counts.append(count_macs(model, x).total)
    assert counts[0] == counts[1]
