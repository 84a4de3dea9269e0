"""Readers of the four benchmark datasets in the folder layouts users have (recipes of the releases):

- ade20k (ADEChallengeData2016): images/{training,validation}/*.jpg, annotations/{...}/*.png (same stem);
  reduce_zero_label;
- cityscapes: leftImg8bit/{train,val}/<city>/*_leftImg8bit.png, gtFine/{...}/<city>/*_gtFine_labelTrainIds.png;
  train ids;
- pascal_context: JPEGImages/*.jpg listed in ImageSets/SegmentationContext/{train,val}.txt,
  SegmentationClassContext/*.png; as stored (60 classes, background 0);
- coco_stuff (10K): images/{train2014,test2014}/*.jpg, annotations/{...}/*.png; reduce_zero_label.

reduce_zero_label: 0 becomes 255 (ignored) and every other value v becomes v - 1. Labels are checked: a
missing folder, an image without a label, a label whose size differs from its image's, or values outside
the classes and 255 raise an error that names the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hrvit_kernels._optional import require
from hrvit_kernels.data.classes import classes_of

IGNORE_INDEX = 255
# The releases' base scale (long edge, short edge) per dataset: the training pipeline's resize at ratio 1, and
# the test-time resize.
BASE_SCALES = {"ade20k": (2048, 512), "cityscapes": (2048, 1024), "pascal_context": (520, 520),
               "coco_stuff": (2048, 512)}
SPLITS = {
    "ade20k": {"train": "training", "val": "validation"},
    "cityscapes": {"train": "train", "val": "val"},
    "pascal_context": {"train": "train", "val": "val"},
    "coco_stuff": {"train": "train2014", "val": "test2014"},
}


class DatasetError(ValueError):
    """A dataset folder that does not have the expected layout or content."""


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path


def _pairs(dataset: str, root: Path, split: str) -> list[Sample]:
    folder = SPLITS[dataset][split]
    if dataset in ("ade20k", "coco_stuff"):
        images, labels = root / "images" / folder, root / "annotations" / folder
        found = sorted(images.glob("*.jpg"))
        pairs = [Sample(p, labels / f"{p.stem}.png") for p in found]
    elif dataset == "cityscapes":
        images, labels = root / "leftImg8bit" / folder, root / "gtFine" / folder
        found = sorted(images.glob("*/*_leftImg8bit.png"))
        pairs = [Sample(p, labels / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
                 for p in found]
    else:
        images, labels = root / "JPEGImages", root / "SegmentationClassContext"
        listing = root / "ImageSets" / "SegmentationContext" / f"{folder}.txt"
        if not listing.is_file():
            raise DatasetError(f"{dataset}: the split list {listing} is missing")
        stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        pairs = [Sample(images / f"{s}.jpg", labels / f"{s}.png") for s in stems]
        missing = [p.image for p in pairs if not p.image.is_file()]
        if missing:
            raise DatasetError(f"{dataset}: {len(missing)} images of {listing.name} are missing, e.g. {missing[0]}")
    for path in (images, labels):
        if not path.is_dir():
            raise DatasetError(f"{dataset}: folder {path} is missing (expected layout: see "
                               f"hrvit_kernels.data.datasets)")
    if not pairs:
        raise DatasetError(f"{dataset}: no images for split {split!r} under {images}")
    unlabelled = [p.image for p in pairs if not p.label.is_file()]
    if unlabelled:
        raise DatasetError(f"{dataset}: {len(unlabelled)} images have no label, e.g. {unlabelled[0]} (expected "
                           f"{pairs[[p.image for p in pairs].index(unlabelled[0])].label})")
    return pairs


class SegmentationDataset:
    """``dataset[i]`` -> (H x W x 3 RGB uint8 array, H x W int64 label array with 255 ignored, image path).
    ``transform(image, label)``, when given, is applied to both."""

    def __init__(self, dataset: str, root, split: str = "val", transform=None):
        if dataset not in SPLITS:
            raise ValueError(f"SegmentationDataset: unknown dataset {dataset!r}; accepted: {', '.join(SPLITS)}")
        if split not in ("train", "val"):
            raise ValueError(f"SegmentationDataset: split must be 'train' or 'val', got {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{dataset}: data root {root} is not a folder")
        self.dataset, self.root, self.split, self.transform = dataset, root, split, transform
        self.class_names, self.palette = classes_of(dataset)
        self.num_classes = len(self.class_names)
        self.reduce_zero_label = dataset in ("ade20k", "coco_stuff")
        self.samples = _pairs(dataset, root, split)

    def __len__(self) -> int:
        return len(self.samples)

    def read_label(self, sample: Sample, image_shape) -> "object":
        np = require("numpy")
        Image = require("PIL.Image")
        with Image.open(sample.label) as opened:
            if opened.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"{self.dataset}: label {sample.label} has mode {opened.mode!r}; a label map is a "
                                   f"single-channel PNG of class indices")
            label = np.asarray(opened).astype(np.int64)
        if label.shape != tuple(image_shape[:2]):
            raise DatasetError(f"{self.dataset}: label {sample.label} is {label.shape[1]} x {label.shape[0]} but "
                               f"its image is {image_shape[1]} x {image_shape[0]}")
        if self.reduce_zero_label:
            label = np.where(label == 0, IGNORE_INDEX, label - 1)
            label[label == IGNORE_INDEX - 1] = IGNORE_INDEX  # 255 stays ignored
        bad = (label != IGNORE_INDEX) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            values = sorted(set(label[bad].tolist()))[:5]
            raise DatasetError(f"{self.dataset}: label {sample.label} has values {values} outside the "
                               f"{self.num_classes} classes and {IGNORE_INDEX}")
        return label

    def __getitem__(self, index: int):
        from hrvit_kernels.inference.images import read_image

        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.read_label(sample, image.shape)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, str(sample.image)
