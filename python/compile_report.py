"""Compiles every shipped Triton kernel configuration for sm_80 and sm_90 without a GPU and reports
shared memory and registers; exits 1 if any configuration fails to compile or needs more shared
memory than the device has.

    python python/compile_report.py [--arch 80 90] [--json out.json]

Triton enforces tl.dot shape rules and shared-memory limits here, which the CPU interpreter does not.
Registers and spills come from cuobjdump -res-usage on the generated cubin.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
os.environ.pop("TRITON_INTERPRET", None)  # compile for real, even when called from the interpreted tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

# Largest dynamic shared memory one block may use (bytes): A100 (sm_80) and H100 (sm_90).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
KERNEL_MODULES = ["hrvit_kernels.ops.cswin_attention.triton_kernels", "hrvit_kernels.ops.mixcfn.triton_kernels",
                  "hrvit_kernels.ops.attention_to_mask.triton_kernels", "hrvit_kernels.ops.hlg_attention.triton_kernels"]


def _cuobjdump() -> str:
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else "cuobjdump"


def resource_usage(cubin: bytes) -> dict:
    """Registers and local (spill) bytes per thread, from cuobjdump -res-usage on the cubin."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        out = subprocess.run([_cuobjdump(), "-res-usage", str(path)], capture_output=True, text=True).stdout
    found = {key: re.search(rf"{key}:(\d+)", out) for key in ("REG", "LOCAL")}
    return {"registers": int(found["REG"].group(1)) if found["REG"] else None,
            "spill_bytes": int(found["LOCAL"].group(1)) if found["LOCAL"] else None}


def compile_all(archs: list[int]) -> list[dict]:
    import importlib

    rows = []
    for module in KERNEL_MODULES:
        for name, fn, signature, constexprs in importlib.import_module(module).shipped_configs():
            full_sig = {arg: signature.get(arg, "constexpr") for arg in fn.arg_names}
            for arch in archs:
                row = {"kernel": name, "arch": f"sm_{arch}"}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        compiled = triton.compile(ASTSource(fn, full_sig, constexprs=constexprs),
                                                  target=GPUTarget("cuda", arch, 32))
                    row.update(shared_bytes=compiled.metadata.shared, num_warps=compiled.metadata.num_warps,
                               **resource_usage(compiled.asm["cubin"]))
                    row["ok"] = row["shared_bytes"] <= SHARED_LIMIT[arch]
                    if not row["ok"]:
                        row["error"] = f"needs {row['shared_bytes']} B of shared memory > {SHARED_LIMIT[arch]}"
                except Exception as exc:  # a compile error is a finding, not a crash of the report
                    row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                rows.append(row)
                print(f"{'ok ' if row['ok'] else 'BAD'} {row['arch']} {name}: "
                      + (f"{row['shared_bytes']} B shared, {row['registers']} registers, {row['spill_bytes']} B spilled, "
                          f"{row['num_warps']} warps"
                         if "shared_bytes" in row else "") + (f" -- {row['error']}" if "error" in row else ""),
                      flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=sorted(SHARED_LIMIT))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = compile_all(args.arch)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} configurations compile within the shared-memory limit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
