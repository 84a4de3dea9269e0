"""Checks for the GPU session (benchmarks/gpu_session.sh) that the test suite runs on CPU only.

    python benchmarks/gpu_checks.py autocast   every family under CUDA autocast (fp16, bf16), train mode,
                                               forward and backward: the default backend (Triton kernels)
                                               as close to fp32 as the reference backend (2x + 0.01)
    python benchmarks/gpu_checks.py memcheck   one small forward and backward per Triton kernel (run under
                                               compute-sanitizer's memcheck)
Exits 1 when a check fails, 0 and a note where there is no CUDA device. ``--device cpu`` runs the same
code on CPU (with TRITON_INTERPRET=1 for memcheck), to try the script without a GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hrvit_kernels as hk  # noqa: E402
from hrvit_kernels.testing import on_backend  # noqa: E402
from tiny_models import FAMILIES, output_tensors  # noqa: E402


def _relative_errors(model, x, backend, dtype):
    """Worst output and all-gradient relative L2 errors of autocast(dtype) against fp32 on one backend."""
    runs = []
    for autocast in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with on_backend(model, backend), torch.autocast(x.device.type, dtype=dtype, enabled=autocast):
            outs = [o.float() for o in output_tensors(model(x))]
        generator = torch.Generator(device=x.device).manual_seed(2)
        sum((o * torch.randn(o.shape, device=x.device, generator=generator)).sum() for o in outs).backward()
        grads = torch.cat([p.grad.float().flatten() for _, p in sorted(model.named_parameters()) if p.grad is not None])
        runs.append((outs, grads))
    (expected, expected_grads), (actual, grads) = runs
    rel = lambda a, e: ((a - e).norm() / e.norm().clamp_min(1e-12)).item()  # noqa: E731
    return max(rel(a, e) for a, e in zip(actual, expected)), rel(grads, expected_grads)


def check_autocast(device: str) -> bool:
    ok = True
    print(f"{'model':28} {'dtype':9} {'ref out':>8} {'auto out':>8} {'ref grad':>8} {'auto grad':>9}")
    for name, config in FAMILIES.items():
        torch.manual_seed(0)
        model = hk.create_model(name, **config).to(device).train()
        x = torch.randn(2, 3, 128, 128, device=device)
        for dtype in (torch.float16, torch.bfloat16):
            ref_out, ref_grad = _relative_errors(model, x, "reference", dtype)
            out, grad = _relative_errors(model, x, "auto", dtype)
            passed = out <= 2 * ref_out + 0.01 and grad <= 2 * ref_grad + 0.01
            ok &= passed
            print(f"{name:28} {str(dtype)[6:]:9} {ref_out:8.4f} {out:8.4f} {ref_grad:8.4f} {grad:9.4f}"
                  f"{'' if passed else '  FAIL'}")
    return ok


def check_memcheck(device: str) -> bool:
    def backward(*outs):
        torch.autograd.backward(outs, [torch.randn_like(o) for o in outs])

    r = lambda *shape: torch.randn(*shape, device=device, requires_grad=True)  # noqa: E731
    q, v = r(2, 5 * 7, 64), r(2, 5 * 7, 64)
    backward(hk.cswin_attention(q, v, v, (5, 7), 3, 32, backend="triton"))
    x, w3, b3, w5, b5 = r(2, 5 * 7, 22), r(11, 1, 3, 3), r(11), r(11, 1, 5, 5), r(11)
    backward(hk.mix_conv_gelu(x, (5, 7), w3, b3, w5, b5, backend="triton"))
    backward(*hk.attention_to_mask(r(2, 33, 48), r(2, 50, 48), r(2, 50, 48), 3, backend="triton"))
    if device == "cuda":
        torch.cuda.synchronize()
    print("memcheck cases ran")
    return True


if __name__ == "__main__":
    args = sys.argv[1:]
    device = "cuda"
    if args[1:2] == ["--device"] and len(args) == 3:
        device, args = args[2], args[:1]
    if len(args) != 1 or args[0] not in ("autocast", "memcheck"):
        sys.exit(__doc__)
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        sys.exit(0)
    sys.exit(0 if (check_autocast(device) if args[0] == "autocast" else check_memcheck(device)) else 1)
