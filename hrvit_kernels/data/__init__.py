"""Datasets: class names and palettes, and readers of the four benchmark layouts."""
from hrvit_kernels.data.classes import DATASET_CLASSES, classes_of
from hrvit_kernels.data.datasets import IGNORE_INDEX, DatasetError, SegmentationDataset

__all__ = ["DATASET_CLASSES", "DatasetError", "IGNORE_INDEX", "SegmentationDataset", "classes_of"]
