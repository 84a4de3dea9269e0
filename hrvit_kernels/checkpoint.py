"""Reading checkpoints: untrusted input, so files are unpickled with ``weights_only=True`` (tensors and
plain containers only; a pickle that would run code is refused), and a model is changed only when every
key and shape fits."""
from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

# Wrappers users have: mmcv/mmseg {"state_dict", "meta", "optimizer"}, timm/DeiT {"model"}, EMA weights.
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")
DDP_PREFIX = "module."


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes do not fit the model; the model was left unchanged."""


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> dict:
    """The object stored at ``path``, unpickled with ``weights_only=True``. ``trusted=True`` allows a
    full unpickle, which runs whatever code the file carries: only for files you made yourself."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_checkpoint: argument 'path' = {str(path)!r} is not a file")
    return torch.load(path, map_location="cpu", weights_only=not trusted)


def extract_state_dict(checkpoint: Mapping) -> tuple[dict, str]:
    """(state_dict, detected format) from a raw state_dict or a known wrapper, ``module.`` prefixes
    of DistributedDataParallel removed."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"extract_state_dict: a checkpoint must be a dict, got {type(checkpoint).__name__}")
    state, fmt = checkpoint, "state_dict"
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state, fmt = checkpoint[key], f"{{'{key}': ...}} wrapper"
            break
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise TypeError(f"extract_state_dict: no state_dict found (a dict of name -> tensor, or one under "
                        f"{', '.join(repr(k) for k in WRAPPER_KEYS)}); top-level keys: {list(checkpoint)[:8]}")
    if all(k.startswith(DDP_PREFIX) for k in state):
        state, fmt = {k[len(DDP_PREFIX):]: v for k, v in state.items()}, fmt + " with DDP 'module.' prefix"
    return dict(state), fmt


def describe_keys(title: str, items: list[str]) -> str:
    """'N title (the first five, ...)' for an error message about checkpoint keys."""
    shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
    return f"{len(items)} {title}" + (f" ({shown})" if items else "")


def load_checkpoint(model: nn.Module, checkpoint, trusted: bool = False) -> str:
    """Loads a checkpoint (a path or an already read object) into ``model`` strictly and returns the
    detected format. On any missing, unexpected or wrongly shaped key it raises
    :class:`CheckpointMismatchError` listing them, and the model is left unchanged."""
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(checkpoint, trusted)
    state, fmt = extract_state_dict(checkpoint)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(
            f"load_checkpoint: the checkpoint ({fmt}) does not fit {type(model).__name__}: "
            f"{describe_keys('missing', missing)}; {describe_keys('unexpected', unexpected)}; "
            f"{describe_keys('wrongly shaped (checkpoint vs model)', wrong_shape)}. The model was not changed.")
    model.load_state_dict(state, strict=True)
    return fmt
