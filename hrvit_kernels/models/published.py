"""Published figures of the registered models, for the benchmark report and the tests.

``release_gmacs``: multiply-adds (G) the authors' release gives when measured with fvcore (1 multiply-add
= 1, batch 1) at ``size``; segmentors are measured to the decode head's output (before the final resize;
SETR without its auxiliary heads). ``params``: exact parameter counts of the released state dicts.
``paper_params_m`` / ``paper_gflops`` / ``paper_miou``: as printed in the paper or the release README
(HRViT's FLOP counter is unknown; SegViT's and SETR's GFLOPs are fvcore multiply-adds).
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
    "segvit_vit_l_ade20k": dict(size=640, params=344_305_303, release_gmacs=637.9, paper_params_m=344.31,
                                paper_gflops=637.9, paper_miou=54.6),
    "segvit_shrunk_vit_l_ade20k": dict(size=640, params=344_598_679, release_gmacs=373.5, paper_params_m=344.60,
                                       paper_gflops=373.5, paper_miou=53.9),
    "segvit_vit_l_coco_stuff": dict(size=512, release_gmacs=383.9, paper_gflops=383.9, paper_miou=49.9),
    "segvit_shrunk_vit_l_coco_stuff": dict(size=512, release_gmacs=224.8, paper_gflops=224.8, paper_miou=49.1),
    "segvit_vit_l_pascal_context": dict(size=480, release_gmacs=321.6, paper_gflops=321.6, paper_miou=64.1),
    "segvit_shrunk_vit_l_pascal_context": dict(size=480, release_gmacs=186.9, paper_gflops=186.9, paper_miou=62.3),
    "setr_naive_vit_l": dict(size=512, params=305_669_296, release_gmacs=362.7, paper_params_m=305.67,
                             paper_gflops=362.7, paper_miou=48.06),
    "setr_pup_vit_l": dict(size=512, params=318_307_292, release_gmacs=418.2, paper_params_m=318.31,
                           paper_gflops=418.2, paper_miou=48.62),
    "setr_mla_vit_l": dict(size=512, params=310_568_836, release_gmacs=378.7, paper_params_m=310.57,
                           paper_gflops=378.7, paper_miou=48.64),
}
