"""Training: the releases' segmentation recipes, pipeline, parameter-wise optimiser rules and schedules, and a
loop for one process or many (torchrun) with exact resume; ImageNet-style pretraining of the classifiers
(timm's components)."""
from hrvit_kernels.train.classification import (ClassificationRecipe, default_classification_recipe,
                                                train_classifier)
from hrvit_kernels.train.loop import TrainingDiverged, checkpoint_paths, train
from hrvit_kernels.train.recipes import Recipe, default_recipe

__all__ = ["ClassificationRecipe", "Recipe", "TrainingDiverged", "checkpoint_paths", "default_classification_recipe",
           "default_recipe", "train", "train_classifier"]
