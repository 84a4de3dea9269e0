"""Run under torchrun (gloo) with an output folder: two backward passes of small models under
DistributedDataParallel; each rank writes the warnings raised, per model and backend, to rank<N>.json there,
and the areas of an IoUMetric fed rank-specific maps, after all_reduce, to metric<N>.json."""
import json
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import hrvit_kernels as hk
from hrvit_kernels._distributed import shutdown
from hrvit_kernels.metrics import IoUMetric
from hrvit_kernels.testing import on_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import FAMILIES, output_tensors  # noqa: E402

dist.init_process_group("gloo")
rows = []
for name in ("hrvit_b1_segformer", "segvit_vit_l_ade20k", "setr_mla_vit_l"):
    for backend in ("reference", "auto"):
        torch.manual_seed(0)
        # SETR-MLA's heads keep mmseg's unused conv_seg (in the released checkpoints), so DDP must be told.
        model = DistributedDataParallel(hk.create_model(name, **FAMILIES[name]),
                                        find_unused_parameters=name == "setr_mla_vit_l")
        with on_backend(model, backend), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                outs = output_tensors(model(torch.randn(1, 3, 64, 64)))  # auxiliary heads too
                sum(o.float().square().mean() for o in outs).backward()
        messages = [str(w.message).splitlines()[0] for w in caught]
        rows.append({"model": name, "backend": backend, "warnings": messages})
del model, outs  # the reducer (reached from the outputs' graph too) holds the process group
(Path(sys.argv[1]) / f"rank{dist.get_rank()}.json").write_text(json.dumps(rows))
generator = torch.Generator().manual_seed(dist.get_rank())
metric = IoUMetric(4)
metric.update(torch.randint(0, 4, (5, 7), generator=generator), torch.randint(0, 4, (5, 7), generator=generator))
metric.all_reduce()
(Path(sys.argv[1]) / f"metric{dist.get_rank()}.json").write_text(json.dumps(metric.areas.tolist()))

# Evaluation shares the images between the processes, each exactly once (5 images over 2 processes).
if len(sys.argv) > 2:
    from hrvit_kernels.data import SegmentationDataset
    from hrvit_kernels.inference import InferenceConfig
    from hrvit_kernels.inference.evaluate import evaluate

    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", num_classes=150)
    config = InferenceConfig((0.0,) * 3, (255.0,) * 3, "whole")
    results = evaluate(model, config, SegmentationDataset("ade20k", sys.argv[2]), workers=0, progress=False)
    (Path(sys.argv[1]) / f"evaluation{dist.get_rank()}.json").write_text(json.dumps(results))
shutdown()
