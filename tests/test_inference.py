"""Inference: images of every kind users have, the releases' test configurations, whole / slide / multi-scale +
flip inference (slide equal to whole under one window and to a hand-computed average on a 2 x 2 grid), the
pictures, the command line's segment path on a real photograph, and the kept freed memory of CPU inference."""
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hrvit_kernels as hk
from hrvit_kernels.data import classes_of
from hrvit_kernels.inference import (InferenceConfig, Segmenter, colorize, inference_config, memory, overlay,
                                     read_image, rescaled_size, save_png, window_starts)

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_image_takes_paths_pil_arrays_and_tensors(tmp_path):
    rgb = _rgb(7, 9)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), Image.fromarray(rgb), rgb,
                   torch.from_numpy(rgb), torch.from_numpy(rgb).permute(2, 0, 1)):
        assert np.array_equal(read_image(source), rgb)
    grey = rgb[..., 0]
    assert np.array_equal(read_image(grey), np.repeat(grey[..., None], 3, axis=2))
    rgba = np.concatenate([rgb, np.full((7, 9, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(read_image(Image.fromarray(rgba, "RGBA")), rgb)
    deep = rgb.astype(np.uint16) * 257  # 16-bit: scaled back to 8 bits
    assert np.array_equal(read_image(deep), rgb)


def test_read_image_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file at"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="is not an image Pillow can read"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="dtype float32 is not supported"):
        read_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 4, 2\) is not supported"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="got list"):
        read_image([[1, 2]])


def test_inference_configurations_follow_the_cards():
    assert inference_config("hrvit_b1_segformer").mode == "whole"
    setr = inference_config("setr_pup_vit_l")
    assert (setr.mode, setr.crop, setr.stride, setr.base_scale, setr.fixed_window) == ("slide", 512, 341,
                                                                                       (2048, 512), True)
    assert inference_config("segvit_vit_l_pascal_context").crop == 480
    with pytest.raises(ValueError, match="'hrvit_b1' is not a segmentor"):
        inference_config("hrvit_b1")
    assert rescaled_size(375, 500, (2048, 512)) == (512, 683)  # short side to 512
    assert rescaled_size(100, 3000, (2048, 512)) == (68, 2048)  # long side to 2048
    assert window_starts(1000, 512, 341) == [0, 341, 488]
    assert window_starts(300, 512, 341) == [0]


class _PositionalModel(torch.nn.Module):
    """A 1x1 conv plus a term that depends on the position inside the window: slide inference differs
    from whole-image inference, and the average over windows is checkable by hand."""

    def __init__(self, classes=3, crop=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, classes, 1)
        self.position = torch.nn.Parameter(torch.randn(classes, crop, crop))

    def forward(self, x):
        return self.conv(x) + self.position[:, :x.shape[-2], :x.shape[-1]]


def test_slide_averages_the_windows_as_computed_by_hand():
    torch.manual_seed(0)
    model = _PositionalModel()
    rgb = _rgb(6, 6)
    config = InferenceConfig(**PLAIN, mode="slide", crop=4, stride=2)
    labels, probs = Segmenter(model, config, batch_size=3).segment(rgb, return_probs=True)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    total, count = torch.zeros(3, 6, 6), torch.zeros(6, 6)
    with torch.no_grad():
        for y in (0, 2):
            for x0 in (0, 2):
                total[:, y:y + 4, x0:x0 + 4] += model(x[:, :, y:y + 4, x0:x0 + 4])[0]
                count[y:y + 4, x0:x0 + 4] += 1
    expected = (total / count).softmax(0)
    torch.testing.assert_close(probs, expected)
    assert torch.equal(labels, expected.argmax(0))
    assert count.max() == 4 and count.min() == 1  # overlapping windows: the average is not a copy


def test_slide_equals_whole_when_one_window_covers_the_image():
    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", num_classes=5)
    rgb = _rgb(45, 61)
    slide = Segmenter(model, InferenceConfig(**PLAIN, mode="slide", crop=64, stride=48)).segment(rgb, return_probs=True)
    whole = Segmenter(model, InferenceConfig(**PLAIN, mode="whole")).segment(rgb, return_probs=True)
    torch.testing.assert_close(slide[1], whole[1])
    assert torch.equal(slide[0], whole[0])


def test_multi_scale_and_flip_keep_the_image_size():
    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", num_classes=5)
    segmenter = Segmenter(model, InferenceConfig(**PLAIN, mode="whole", base_scale=(96, 64)))
    rgb = _rgb(37, 53)
    labels, probs = segmenter.segment(rgb, flip=True, scales=(0.5, 1.25), return_probs=True)
    assert labels.shape == (37, 53) and probs.shape == (5, 37, 53)
    torch.testing.assert_close(probs.sum(0), torch.ones(37, 53))
    flipped = segmenter.segment(rgb[:, ::-1].copy(), flip=True, scales=(0.5, 1.25), return_probs=True)[1]
    torch.testing.assert_close(flipped.flip(-1), probs, atol=1e-5, rtol=1e-4)  # flip-averaging is symmetric
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    Segmenter(model, InferenceConfig(**PLAIN, mode="whole")).segment(rgb, scales=(1.25, 1.5))
    assert seen == [(46, 66), (56, 80)]  # without a base scale the ratios apply to the image itself
    with pytest.raises(ValueError, match="argument 'scales' must be positive ratios"):
        segmenter.segment(rgb, scales=(0,))
    with pytest.raises(ValueError, match="argument 'mode' must be one of whole, slide"):
        segmenter.segment(rgb, mode="tiles")


def test_setr_windows_are_always_full_size():
    """SETR's fixed-size encoder: an image whose short side is below the crop is resized up first."""
    seen = []

    class Recorder(_PositionalModel):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return self.conv(x)

    config = InferenceConfig(**PLAIN, mode="slide", crop=8, stride=6, fixed_window=True)
    labels = Segmenter(Recorder(), config).segment(_rgb(5, 11))
    assert labels.shape == (5, 11) and seen and all(s == (8, 8) for s in seen)


def test_pictures(tmp_path):
    names, palette = classes_of("cityscapes")
    labels = torch.tensor([[0, 1, 255], [18, 1, 1]])
    colours = colorize(labels, palette)
    assert colours.shape == (2, 3, 3) and tuple(colours[0, 0]) == palette[0] and tuple(colours[0, 2]) == (0, 0, 0)
    picture = overlay(_rgb(2, 3), labels, palette, names)
    assert picture.height >= 2 and picture.width > 3  # the legend is on the right
    save_png(picture, tmp_path / "deep" / "o.png")
    assert Image.open(tmp_path / "deep" / "o.png").size == picture.size
    assert not list((tmp_path / "deep").glob(".*tmp"))


def test_segment_command_on_a_real_photograph(tmp_path, capsys):
    """scikit-image's cat photograph (300 x 451) through the command line with a registered model."""
    skimage_data = pytest.importorskip("skimage.data")
    from hrvit_kernels.cli import main

    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage_data.chelsea()).save(photo)
    assert main(["segment", str(photo), "--model", "hrvit_b1_segformer", "--out", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "chelsea_labels.png"))
    assert labels.shape == (300, 451) and labels.max() < 150
    for suffix in ("color", "overlay"):
        assert Image.open(tmp_path / "out" / f"chelsea_{suffix}.png").height == 300
    assert "chelsea_labels.png" in capsys.readouterr().out


def test_models_command_lists_every_card(capsys):
    from hrvit_kernels.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in hk.list_models()) and "slide 512/341" in out


def test_one_call_inference_with_a_built_model_or_a_name():
    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", num_classes=5)
    rgb = _rgb(33, 47)
    labels = hk.inference(model, rgb, config=InferenceConfig(**PLAIN, mode="whole"))
    assert labels.shape == (33, 47) and int(labels.max()) < 5
    with pytest.raises(ValueError, match=r"with a built model, pass config=inference_config\(name\)"):
        hk.inference(model, rgb)
    with pytest.raises(ValueError, match="Segmenter: argument 'amp' must be None, 'bf16' or 'fp16'"):
        hk.inference(model, rgb, config=InferenceConfig(**PLAIN), amp="int8")


# Allocates, fills and frees a 64 MiB tensor (16,384 pages), then prints the page faults per round of six later
# rounds: with glibc's defaults each round maps the block afresh and faults all its pages in again.
_FAULTS_PER_ROUND = """
import resource, sys, torch
import hrvit_kernels as hk
applied = hk.keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(3):
    torch.empty(16 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    torch.empty(16 << 20).fill_(1.0)
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 6)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_stops_the_page_faults_of_repeated_allocations():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_ROUND, mode], capture_output=True, text=True,
                             check=True)
        applied, per_round = out.stdout.split()
        return applied, int(per_round)

    assert faults("default")[1] > 16000
    applied, per_round = faults("keep")
    assert applied == "True" and per_round < 4000


def test_segmenter_keeps_freed_memory_on_cpu_unless_told_not_to(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    model = hk.create_model("hrvit_b1_segformer", num_classes=3)
    Segmenter(model, inference_config("hrvit_b1_segformer"), keep_freed_memory=False)
    assert calls == []
    Segmenter(model, inference_config("hrvit_b1_segformer"))
    assert calls == [1]
