"""Published figures of the registered models, for the benchmark report and the tests.

``release_gmacs``: multiply-adds (G) the authors' release gives when measured with fvcore (1 multiply-add
= 1, batch 1) at ``size``; segmentors are measured to the decode head's output (before the final resize).
``paper_params_m`` / ``paper_gflops`` / ``paper_miou``: as printed in the paper (its FLOP counter is unknown).
"""
from __future__ import annotations

PUBLISHED: dict[str, dict] = {
    "hrvit_b1": dict(size=512, params=7_758_008, release_gmacs=10.75),
    "hrvit_b2": dict(size=512, params=20_310_944, release_gmacs=25.09),
    "hrvit_b3": dict(size=512, params=25_507_960, release_gmacs=28.73),
    "hrvit_b1_segformer": dict(size=512, params=8_183_118, release_gmacs=16.00, paper_params_m=8.2,
                               paper_gflops=14.6, paper_miou=45.88),
    "hrvit_b2_segformer": dict(size=512, params=20_809_782, release_gmacs=30.48, paper_params_m=20.8,
                               paper_gflops=28.0, paper_miou=48.76),
    "hrvit_b3_segformer": dict(size=512, params=28_724_494, release_gmacs=71.01, paper_params_m=28.7,
                               paper_gflops=67.9, paper_miou=50.20),
}
