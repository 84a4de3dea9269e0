"""Imports of the optional dependencies, with an error that says which extra installs them."""
from __future__ import annotations

import importlib

EXTRAS = {"PIL": ("Pillow", "infer"), "numpy": ("numpy", "infer"), "tqdm": ("tqdm", "infer")}


def require(module: str):
    """The module, or an ImportError naming the package and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module.split(".")[0], (module, "infer"))
        raise ImportError(f"{module} is needed here: pip install {package} (or pip install -e \".[{extra}]\")") from exc
