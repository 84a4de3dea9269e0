"""F.linear against the product by a weight packed once for oneDNN (hrvit_kernels/ops/_packed_products.py) at
HLG's product shapes, fp32, in turns; prints a markdown table (ms and G multiply-adds/s, medians).

    python benchmarks/packed_products.py [--rounds 40]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrvit_kernels.ops import _packed_products as packed  # noqa: E402

# (rows, in, out, where): hlg_small's MLP products at 224 (stage 4, stage 3, stage 1), a stage-3 projection,
# and a product below the size where packing pays.
SHAPES = [(49, 768, 3072, "stage-4 MLP"), (49, 3072, 768, "stage-4 MLP"), (196, 384, 1536, "stage-3 MLP"),
          (196, 1536, 384, "stage-3 MLP"), (196, 384, 384, "stage-3 projection"), (3136, 96, 384, "stage-1 MLP"),
          (64, 96, 96, "window tokens")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if not packed.supported():
        sys.exit("no packed products on this CPU / PyTorch build")
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| rows x in -> out | F.linear ms (G MAC/s) | packed ms (G MAC/s) | speedup |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for rows, k, n, where in SHAPES:
            layer, x = nn.Linear(k, n), torch.randn(rows, k)
            calls = {"F.linear": lambda: F.linear(x, layer.weight, layer.bias),
                     "packed": lambda: packed.linear(x, layer.weight, layer.bias)}
            times = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    call()
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
            ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            rate = {name: rows * k * n / (v * 1e6) for name, v in ms.items()}
            print(f"| {rows} x {k} -> {n} ({where}) | {ms['F.linear']:.3f} ({rate['F.linear']:.0f}) | "
                  f"{ms['packed']:.3f} ({rate['packed']:.0f}) | {ms['F.linear'] / ms['packed']:.2f}x |")


if __name__ == "__main__":
    main()
