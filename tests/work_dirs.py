"""Reading a training run's work dir in the tests."""
import json
from pathlib import Path


def log_rows(work_dir: Path) -> list[dict]:
    """The JSON-lines log, one dict a line."""
    return [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]


def losses(work_dir: Path) -> list[float]:
    """The logged training losses, in order."""
    return [row["loss"] for row in log_rows(work_dir) if "loss" in row]
