"""The released models' state_dict keys and shapes, copied from the specification into tests/data/keys
(one file per model: name TAB shape, in order), so that the key tests run in every clone."""
from pathlib import Path

import torch

KEYS = Path(__file__).resolve().parent / "data" / "keys"


def released_keys(name: str) -> list[tuple[str, str]]:
    """(key, shape as text) rows of tests/data/keys/<name>.txt."""
    return [tuple(line.split("\t")) for line in (KEYS / f"{name}.txt").read_text().splitlines()]


def model_keys(model: torch.nn.Module) -> list[tuple[str, str]]:
    return [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()]
