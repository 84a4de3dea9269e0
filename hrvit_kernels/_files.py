"""Atomic file writes: a temporary file beside the target, then a rename, so that an interrupted run never
leaves a truncated file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomically(path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomically(path, payload) -> None:
    write_atomically(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")
