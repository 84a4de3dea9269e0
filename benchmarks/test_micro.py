"""Per-op micro-benchmarks: `pytest benchmarks --benchmark-only` (not part of the default test run).

Every backend that can run here, at HRViT-b1's stage shapes of a 512 x 512 input, forward and
forward+backward."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import atm_cases, hrvit_stage_cases  # noqa: E402
from run import backward_of, make_op_inputs, op_backends  # noqa: E402

CASES = hrvit_stage_cases("b1", 512, 512, 1) + atm_cases(1)
PARAMS = [pytest.param(case, backend, id=f"{case.op}-{case.label}-{backend}")
          for case in CASES
          for backend in op_backends(case.op, None, make_op_inputs(case, "cpu", torch.float32, False)[0])]


@pytest.mark.parametrize("case,backend", PARAMS)
def test_forward(benchmark, case, backend):
    _, call = make_op_inputs(case, "cpu", torch.float32, requires_grad=False)
    with torch.no_grad():
        benchmark(call, backend)


@pytest.mark.parametrize("case,backend", PARAMS)
def test_forward_backward(benchmark, case, backend):
    inputs, call = make_op_inputs(case, "cpu", torch.float32, requires_grad=True)
    benchmark(backward_of(call, inputs), backend)
