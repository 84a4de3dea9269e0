"""Atomic file writes: a temporary file beside the target, then a rename, so that an interrupted run never
leaves a truncated file. The file gets the mode a plain open() would give it (an existing file's mode, else
0666 less the umask), not the temporary file's private 0600."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    status = Path("/proc/self/status")
    if status.exists():  # Linux: read it without changing it (os.umask would, for every thread)
        for line in status.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomically(path, payload) -> None:
    write_atomically(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")
