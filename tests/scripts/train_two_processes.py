"""Run under torchrun (2 gloo processes) with a dataset folder, an output folder and the task
("segmentation": hrvit_b1_segformer on an ADE20K layout; "classification": hrvit_b1_cls on an ImageNet
layout): an uninterrupted run of 4 iterations against one stopped after 2 and resumed. Rank 0 writes
report.json."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hrvit_kernels._distributed import shutdown
from hrvit_kernels.train import (checkpoint_paths, default_classification_recipe, default_recipe, train,
                                 train_classifier)

root, out, task = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if task == "segmentation":
    run = train
    recipe = default_recipe("hrvit_b1_segformer").replace(
        iterations=4, checkpoint_interval=2, crop=64, batch_size=2, workers=0, log_interval=1, warmup_iters=0,
        lr=1e-3, model_overrides=dict(num_classes=2))
else:
    run = train_classifier
    recipe = default_classification_recipe("hrvit_b1_cls").replace(
        epochs=2, warmup_epochs=1, cooldown_epochs=0, checkpoint_interval=2, input_size=32, batch_size=4, workers=0,
        log_interval=1, model_ema_decay=0.9)
run(recipe, root, out / "a", progress=False)
run(recipe, root, out / "b", progress=False, stop_after=2)
run(recipe, root, out / "b", progress=False)

rank = dist.get_rank()
if rank == 0:
    logs = {d: [json.loads(line) for line in (out / d / "log.jsonl").read_text().splitlines()] for d in ("a", "b")}
    final = [torch.load(checkpoint_paths(out / d)[-1], weights_only=True) for d in ("a", "b")]
    keys = ("model", "ema") if task == "classification" else ("model",)
    (out / "report.json").write_text(json.dumps({
        "losses_uninterrupted": [row["loss"] for row in logs["a"] if "loss" in row],
        "losses_resumed": [row["loss"] for row in logs["b"] if "loss" in row],
        "validations": [row["validation"] for row in logs["a"] if "validation" in row],
        "weights_equal": all(torch.equal(final[0][part][k], final[1][part][k]) for part in keys
                             for k in final[0][part])}))
shutdown()
