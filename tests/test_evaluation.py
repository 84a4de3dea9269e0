"""Datasets and the metric: the four layouts written by the test (odd-size JPEG / PNG files), their label
conventions and every malformed case; IoU, accuracy and their means against an independent re-derivation
from a confusion matrix; the evaluate command end to end."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hrvit_kernels.data import DatasetError, SegmentationDataset
from hrvit_kernels.metrics import IoUMetric


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _sample(rng, h, w, classes, zero_is_ignored):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # With reduce_zero_label the stored values are 0 (ignored) .. classes.
    label = rng.integers(0, classes + (1 if zero_is_ignored else 0), (h, w)).astype(np.uint8)
    label[0, :3] = 255
    return image, label


def make_dataset(root, dataset, split="val", count=2, sizes=((37, 53), (41, 29))):
    """A small dataset in the release layout; returns the written (image, label) arrays."""
    rng = np.random.default_rng(0)
    classes = {"ade20k": 150, "cityscapes": 19, "pascal_context": 60, "coco_stuff": 171}[dataset]
    folder = {"ade20k": {"val": "validation", "train": "training"},
              "coco_stuff": {"val": "test2014", "train": "train2014"},
              "cityscapes": {"val": "val", "train": "train"}, "pascal_context": {"val": "val", "train": "train"}}
    written = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        image, label = _sample(rng, h, w, classes, dataset in ("ade20k", "coco_stuff"))
        stem = f"img{i}"
        if dataset in ("ade20k", "coco_stuff"):
            _write(root / "images" / folder[dataset][split] / f"{stem}.jpg", image)
            _write(root / "annotations" / folder[dataset][split] / f"{stem}.png", label)
        elif dataset == "cityscapes":
            _write(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", image)
            _write(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelTrainIds.png", label)
        else:
            _write(root / "JPEGImages" / f"{stem}.jpg", image)
            _write(root / "SegmentationClassContext" / f"{stem}.png", label)
        written.append((image, label))
    if dataset == "pascal_context":
        listing = root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"img{i}\n" for i in range(count)))
    return written


@pytest.mark.parametrize("dataset", ["ade20k", "cityscapes", "pascal_context", "coco_stuff"])
def test_each_layout_reads_with_its_label_convention(tmp_path, dataset):
    written = make_dataset(tmp_path, dataset)
    data = SegmentationDataset(dataset, tmp_path, "val")
    assert len(data) == 2
    for (image, label), i in zip(written, range(2)):
        read_image, read_label, path = data[i]
        assert read_image.shape == image.shape and read_label.shape == label.shape
        expected = label.astype(np.int64)
        if dataset in ("ade20k", "coco_stuff"):  # reduce_zero_label
            expected = np.where(expected == 0, 255, expected - 1)
            expected[expected == 254] = 255
        assert np.array_equal(read_label, expected), path
    if dataset != "cityscapes":  # JPEG images are lossy; PNG ones are exact
        return
    assert np.array_equal(data[0][0], written[0][0])


def test_malformed_datasets_are_named(tmp_path):
    with pytest.raises(DatasetError, match="data root .* is not a folder"):
        SegmentationDataset("ade20k", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="folder .*images/validation is missing"):
        SegmentationDataset("ade20k", tmp_path / "empty")
    root = tmp_path / "ade"
    make_dataset(root, "ade20k")
    (root / "annotations" / "validation" / "img1.png").unlink()
    with pytest.raises(DatasetError, match="1 images have no label, e.g. .*img1.jpg"):
        SegmentationDataset("ade20k", root)
    _write(root / "annotations" / "validation" / "img1.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"label .*img1.png is 5 x 5 but its image is 29 x 41"):
        SegmentationDataset("ade20k", root)[1]
    _write(root / "annotations" / "validation" / "img1.png", np.full((41, 29), 200, np.uint8))
    with pytest.raises(DatasetError, match=r"values \[199\] outside the 150 classes and 255"):
        SegmentationDataset("ade20k", root)[1]
    with pytest.raises(ValueError, match="unknown dataset 'voc'"):
        SegmentationDataset("voc", root)


def _confusion_metrics(pred, label, classes, ignore=255):
    """mmseg's definitions re-derived from a confusion matrix (numpy, float64)."""
    keep = label != ignore
    matrix = np.zeros((classes, classes))
    np.add.at(matrix, (label[keep], pred[keep]), 1)
    inter = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / matrix.sum(1)
    return np.nanmean(iou), np.nanmean(acc), inter.sum() / matrix.sum(), iou


def test_metric_equals_an_independent_confusion_matrix_derivation():
    rng = np.random.default_rng(1)
    metric = IoUMetric(7)
    preds, labels = [], []
    for h, w in ((13, 17), (9, 5), (20, 3)):
        pred = rng.integers(0, 7, (h, w))
        label = rng.integers(0, 6, (h, w))  # class 6 never labelled: its Acc is NaN, its IoU 0 or NaN
        label[rng.random((h, w)) < 0.2] = 255
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        preds.append(pred.ravel())
        labels.append(label.ravel())
    miou, macc, aacc, iou = _confusion_metrics(np.concatenate(preds), np.concatenate(labels), 7)
    results = metric.compute()
    assert results["mIoU"] == pytest.approx(miou) and results["mAcc"] == pytest.approx(macc)
    assert results["aAcc"] == pytest.approx(aacc)
    got = np.array([results["per_class"][str(c)]["IoU"] for c in range(7)])
    assert np.allclose(got, iou, equal_nan=True)
    assert math.isnan(results["per_class"]["6"]["Acc"])


def test_metric_rejects_bad_input():
    metric = IoUMetric(3)
    with pytest.raises(TypeError, match="argument 'pred' must be an integer tensor"):
        metric.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"'pred' has shape \(2, 2\) but 'label' has \(2, 3\)"):
        metric.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"argument 'label' has values \[5\] outside \[0, 3\)"):
        metric.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 5))
    assert metric.areas.sum() == 0  # rejected calls change nothing
    with pytest.raises(ValueError, match="argument 'num_classes' must be a positive int"):
        IoUMetric(0)


def test_evaluate_command_end_to_end(tmp_path, capsys):
    from hrvit_kernels.cli import main

    make_dataset(tmp_path / "ade", "ade20k", count=2, sizes=((40, 56), (33, 47)))
    out = tmp_path / "results.json"
    assert main(["evaluate", "--model", "hrvit_b1_segformer", "--dataset", "ade20k", "--data-root",
                 str(tmp_path / "ade"), "--workers", "0", "--device", "cpu", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["images"] == 2 and 0 <= results["aAcc"] <= 1 and len(results["per_class"]) == 150
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "wall" in printed
