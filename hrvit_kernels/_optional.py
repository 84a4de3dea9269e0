"""Imports of the optional dependencies, with an error that says which extra installs them."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

EXTRAS = {"PIL": ("Pillow", "infer"), "numpy": ("numpy", "infer"), "tqdm": ("tqdm", "infer"),
          "timm": ("timm", "pretrain"), "torchvision": ("torchvision", "pretrain")}


def require(module: str):
    """The module, or an ImportError naming the package and the extra that installs it."""
    if module.split(".")[0] == "timm":
        _declare_torchvision_operators_if_unloadable()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module.split(".")[0], (module, "infer"))
        raise ImportError(f"{module} is needed here: pip install {package} (or pip install -e \".[{extra}]\")") from exc


def _declare_torchvision_operators_if_unloadable() -> None:
    """timm imports torchvision. A torchvision wheel built against another torch build (PyPI's CUDA wheel
    beside a CPU-only torch, for example) cannot load its C++ operators; torchvision then still works for
    images and transforms, except that its import fails while it registers fake functions for ``nms`` and
    ``qnms``. Where its library cannot be loaded, those two schemas are declared here first: they stay without
    kernels (calling them raises), and nothing here uses them."""
    import sys

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or "torchvision" in sys.modules or not spec.submodule_search_locations:
        return
    library = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    if library is None:
        return
    try:
        torch.ops.load_library(str(library))
        return
    except (OSError, RuntimeError):
        pass
    global _TORCHVISION_FRAGMENT
    if _TORCHVISION_FRAGMENT is None and not hasattr(torch.ops.torchvision, "nms"):
        _TORCHVISION_FRAGMENT = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            _TORCHVISION_FRAGMENT.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


_TORCHVISION_FRAGMENT = None
