"""Training: the releases' recipes, pipeline, parameter-wise optimiser rules and schedules, and a loop for one
process or many (torchrun) with exact resume."""
from hrvit_kernels.train.loop import TrainingDiverged, checkpoint_paths, train
from hrvit_kernels.train.recipes import Recipe, default_recipe

__all__ = ["Recipe", "TrainingDiverged", "checkpoint_paths", "default_recipe", "train"]
