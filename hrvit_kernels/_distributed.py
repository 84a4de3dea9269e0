"""torch.distributed set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def init_from_environment() -> tuple[int, int]:
    """(rank, world size): the default group is initialised under torchrun (NCCL with GPUs, gloo without)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device() -> torch.device:
    """This process's GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def shutdown() -> None:
    """Tears the default group down in an order that cannot race: every object holding the group (a DDP
    reducer, pending gloo work) is freed while the group is still up, all processes meet, then the group goes.
    Left to interpreter exit, gloo's teardown can abort a process ("terminate called without an active
    exception") while another still uses the connection."""
    if not dist.is_initialized():
        return
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
