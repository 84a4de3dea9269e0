"""What the report needs to know of each op, in one table: its public function and backends, the inputs of
a case (from the shape dict of cases.py), the least memory traffic of a call and whether its time is
compute (a FLOP rate is reported) or memory traffic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import hrvit_kernels as hk
from hrvit_kernels.ops.attention_to_mask import api as atm_api
from hrvit_kernels.ops.cswin_attention import api as cswin_api
from hrvit_kernels.ops.hlg_attention import api as hlg_api
from hrvit_kernels.ops.hlg_attention.checks import WINDOW
from hrvit_kernels.ops.layer_norm import api as layer_norm_api
from hrvit_kernels.modules.hlg import HEAD_DIM
from hrvit_kernels.ops.mixcfn import api as mix_api
from hrvit_kernels.ops.resize_sum import api as resize_api


@dataclass(frozen=True)
class BenchOp:
    function: Callable                      # the public op, called with backend=
    available: dict                         # backend -> availability check (the op's api.AVAILABLE)
    # (shape dict, r(*sizes) -> random tensor) -> (tensors to differentiate, the op's arguments)
    make_inputs: Callable[[dict, Callable], tuple[tuple, tuple]]
    # elements read once and written once by one call (each input and output), for bandwidth shares
    minimal_traffic: Callable[[dict], int]
    compute_bound: bool = True


def _cswin(s, r):
    q, v = r(s["B"], s["H"] * s["W"], s["C"]), r(s["B"], s["H"] * s["W"], s["C"])
    return (q, v), (q, v, v, (s["H"], s["W"]), s["stripe_width"], s["head_dim"])


def _mix(s, r):
    R, split = s["R"], s["R"] // 2
    inputs = (r(s["B"], s["H"] * s["W"], R), r(split, 1, 3, 3), r(split), r(R - split, 1, 5, 5), r(R - split))
    return inputs, (inputs[0], (s["H"], s["W"]), *inputs[1:])


def _atm(s, r):
    inputs = (r(s["B"], s["Q"], s["C"]), r(s["B"], s["L"], s["C"]), r(s["B"], s["L"], s["C"]))
    return inputs, (*inputs, s["heads"])


def _resize(s, r):
    inputs = tuple(r(s["B"], s["C"], h, w) for h, w in s["sizes"])
    return inputs, (list(inputs), s["size"])


def _hlg_local(s, r):
    n = s["H"] * s["W"]
    inputs = (r(s["B"], n, s["C"]), r(s["B"], n, s["C"]), r(s["C"] // HEAD_DIM, WINDOW * WINDOW, WINDOW * WINDOW))
    return inputs, (inputs[0], inputs[1], (s["H"], s["W"]), s["dilated"], inputs[2])


def _hlg_global(s, r):
    offsets = (2 * s["H"] - 1) * (2 * s["W"] - 1)
    inputs = (r(s["B"], s["H"] * s["W"], s["C"]), r(s["B"], s["M"], s["C"]), r(s["B"], s["M"], s["C"]),
              r(s["C"] // HEAD_DIM, offsets))
    return inputs, (*inputs[:3], (s["H"], s["W"]), inputs[3])


def _add_layer_norm(s, r):
    n = s["H"] * s["W"]
    inputs = (r(s["B"], n, s["C"]), r(s["B"], n, s["C"]), r(s["C"]), r(s["C"]))
    return inputs, inputs


OPS = {
    # k = v is read once
    "cswin_attention": BenchOp(hk.cswin_attention, cswin_api.AVAILABLE, _cswin,
                               lambda s: 3 * s["B"] * s["H"] * s["W"] * s["C"]),
    "mix_conv_gelu": BenchOp(hk.mix_conv_gelu, mix_api.AVAILABLE, _mix,
                             lambda s: 2 * s["B"] * s["H"] * s["W"] * s["R"]),
    "attention_to_mask": BenchOp(hk.attention_to_mask, atm_api.AVAILABLE, _atm,
                                 lambda s: s["B"] * (2 * s["Q"] * s["C"] + 2 * s["L"] * s["C"] + s["Q"] * s["L"])),
    "hlg_local_attention": BenchOp(hk.hlg_local_attention, hlg_api.AVAILABLE, _hlg_local,
                                   lambda s: 3 * s["B"] * s["H"] * s["W"] * s["C"]),
    "hlg_global_attention": BenchOp(hk.hlg_global_attention, hlg_api.AVAILABLE, _hlg_global,
                                    lambda s: s["B"] * (2 * s["H"] * s["W"] * s["C"] + 2 * s["M"] * s["C"])),
    # x and residual read, their sum and the norm written
    "add_layer_norm": BenchOp(hk.add_layer_norm, layer_norm_api.AVAILABLE, _add_layer_norm,
                              lambda s: 4 * s["B"] * s["H"] * s["W"] * s["C"], compute_bound=False),
    "resize_sum": BenchOp(hk.resize_sum, resize_api.AVAILABLE, _resize,
                          lambda s: s["B"] * s["C"] * (sum(h * w for h, w in s["sizes"]) + s["size"][0] * s["size"][1]),
                          compute_bound=False),
}
