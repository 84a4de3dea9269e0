"""DistributedDataParallel on two gloo processes: no warnings, in particular none about gradient strides
(convolutions on channels-last inputs returned depthwise-weight gradients with other strides on size-1
dims, and DDP compared them literally, on every parameter of the kind); IoUMetric sums its areas across
the processes, and evaluation shares the images between them, each exactly once."""
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import hrvit_kernels as hk
from hrvit_kernels.metrics import IoUMetric
from test_evaluation import make_dataset
from torchrun import run_two_processes

SCRIPT = Path(__file__).resolve().parent / "scripts" / "ddp_grad_layout.py"


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_ddp_backward_raises_no_warnings(tmp_path):
    data = tmp_path / "ade"
    make_dataset(data, "ade20k", count=5, sizes=((33, 47), (40, 36)))
    run_two_processes(SCRIPT, tmp_path, data)
    for rank in range(2):
        rows = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(rows) == 3 * 2  # models x backends
        for row in rows:
            assert row["warnings"] == [], row
    # IoUMetric.all_reduce: every rank holds the areas of both ranks' maps.
    expected = IoUMetric(4)
    for rank in range(2):
        generator = torch.Generator().manual_seed(rank)
        expected.update(torch.randint(0, 4, (5, 7), generator=generator),
                        torch.randint(0, 4, (5, 7), generator=generator))
    for rank in range(2):
        assert json.loads((tmp_path / f"metric{rank}.json").read_text()) == expected.areas.tolist()
    # Distributed evaluation: every image once, and the metric of the single-process run.
    from hrvit_kernels.data import SegmentationDataset
    from hrvit_kernels.inference import InferenceConfig
    from hrvit_kernels.inference.evaluate import evaluate

    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", num_classes=150)
    single = evaluate(model, InferenceConfig((0.0,) * 3, (255.0,) * 3, "whole"), SegmentationDataset("ade20k", data),
                      workers=0, progress=False)
    for rank in range(2):
        shared = json.loads((tmp_path / f"evaluation{rank}.json").read_text())
        assert shared["images"] == 5 and shared["aAcc"] == pytest.approx(single["aAcc"])
        assert shared["mIoU"] == pytest.approx(single["mIoU"], nan_ok=True)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
def test_the_command_line_tears_the_process_group_down_before_exit(tmp_path, capsys):
    """Left to interpreter exit, gloo's teardown can abort a process; each command ends the group itself."""
    from hrvit_kernels.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))  # holds the group until freed
        assert main(["models"]) == 0
        assert not dist.is_initialized()
        del ddp
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert main(["models"]) == 0  # without a group: nothing to do
