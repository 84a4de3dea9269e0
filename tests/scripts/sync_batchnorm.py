"""Run under torchrun (2 processes, gloo, both on cuda:0, so one GPU is enough) with an output folder: one
training step of hrvit_b1_segformer converted to SyncBatchNorm under DDP, each process holding half of a
batch of 4, against the same model with BatchNorm on the joined batch in one process. Rank 0 writes
report.json with the relative differences of its half's outputs and the largest of the, gradients and running statistics."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import hrvit_kernels as hk
from hrvit_kernels._distributed import shutdown

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device("cuda", 0)
torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions would differ by more than BatchNorm's statistics
torch.manual_seed(0)
joined = hk.create_model("hrvit_b1_segformer", num_classes=5).to(device).train()
synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(hk.create_model("hrvit_b1_segformer", num_classes=5))
synced.load_state_dict(joined.state_dict())
synced = synced.to(device).train()
x = torch.randn(4, 3, 64, 96, generator=torch.Generator().manual_seed(1)).to(device)
weights = torch.randn(4, 5, 64, 96, generator=torch.Generator().manual_seed(2)).to(device)

joined_out = joined(x)
(joined_out * weights).mean().backward()
half = slice(2 * rank, 2 * rank + 2)
out = DistributedDataParallel(synced)(x[half])
(out * weights[half]).mean().backward()  # DDP averages the halves' gradients: the joined batch's mean

rel = lambda a, b: ((a - b).norm() / b.norm().clamp_min(1e-12)).item()  # noqa: E731
outputs = rel(out.detach(), joined_out[half].detach())
grads = max(rel(p.grad, q.grad) for p, q in zip(synced.parameters(), joined.parameters()) if q.grad is not None)
stats = max(rel(a, b) for (n, a), (_, b) in zip(synced.named_buffers(), joined.named_buffers())
            if "running" in n)
counted = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
if rank == 0:
    Path(sys.argv[1], "report.json").write_text(json.dumps({"output_rel": outputs, "grad_rel": grads, "running_stats_rel": stats,
                                                            "sync_batchnorm_modules": counted}))
shutdown()
