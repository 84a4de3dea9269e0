"""Run under torchrun (2 gloo processes) with a dataset folder and an output folder: an uninterrupted run of
4 iterations against one stopped after 2 and resumed. Rank 0 writes report.json."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hrvit_kernels.train import checkpoint_paths, default_recipe, train

root, out = Path(sys.argv[1]), Path(sys.argv[2])
recipe = default_recipe("hrvit_b1_segformer").replace(
    iterations=4, checkpoint_interval=2, crop=64, batch_size=2, workers=0, log_interval=1, warmup_iters=0, lr=1e-3,
    model_overrides=dict(num_classes=2))
train(recipe, root, out / "a", progress=False)
train(recipe, root, out / "b", progress=False, stop_after=2)
train(recipe, root, out / "b", progress=False)

rank = dist.get_rank()
if rank == 0:
    losses = {d: [json.loads(line)["loss"] for line in (out / d / "log.jsonl").read_text().splitlines()]
              for d in ("a", "b")}
    final = [torch.load(checkpoint_paths(out / d)[-1], weights_only=True)["model"] for d in ("a", "b")]
    (out / "report.json").write_text(json.dumps({
        "losses_uninterrupted": losses["a"], "losses_resumed": losses["b"],
        "weights_equal": all(torch.equal(final[0][k], final[1][k]) for k in final[0])}))
dist.destroy_process_group()
