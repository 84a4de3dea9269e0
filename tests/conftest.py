import os

import torch

# Kernel outputs start as NaN in tests, so an element a kernel does not write is caught.
os.environ["HRVIT_KERNELS_POISON"] = "1"
# Triton kernels run in the interpreter on CPU tensors when there is no GPU (set before any import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.pop("HRVIT_KERNELS_BACKEND", None)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
