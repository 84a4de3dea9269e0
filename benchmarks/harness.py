"""Timing and environment capture shared by benchmarks/run.py and the pytest-benchmark micro-benchmarks."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 1,
                        repeats: int = 5) -> dict[str, dict]:
    """Median and spread (min, max, interquartile range) of each fn's wall time in milliseconds.

    The fns take turns, a round at a time, so that a machine whose speed drifts during the run
    (other load, memory pressure) shifts every contender alike and their ratios stay fair. In each
    turn one untimed call comes first, so the timed call follows a call of its own kind, as in steady
    use (not, say, the heap state another backend's large temporaries left).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: _summary(t) for name, t in times.items()}


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 5) -> dict:
    """measure_interleaved for one fn."""
    return measure_interleaved({"fn": fn}, device, warmup, repeats)["fn"]


def speedups(latency: dict, key: str) -> dict:
    """{contender: reference median / its median} for one measurement (key) of a report row's latency."""
    base = latency.get("reference", {}).get(key)
    if not base:
        return {}
    return {b: base["median_ms"] / v[key]["median_ms"] for b, v in latency.items() if key in v}


# A timing whose interquartile range exceeds this share of its median is itself unstable.
UNSTABLE_IQR = 0.5


def noisy(latency: dict, key: str, contender: str) -> bool:
    """True when a speedup's spread exceeds its effect (the relative interquartile ranges of the
    contender and the reference, added, are larger than |speedup - 1|), or when either timing is
    unstable (an interquartile range above half its median, whatever the speedup)."""
    base, mine = latency.get("reference", {}).get(key), latency.get(contender, {}).get(key)
    if not base or not mine or contender == "reference":
        return False
    rel_base, rel_mine = base["iqr_ms"] / base["median_ms"], mine["iqr_ms"] / mine["median_ms"]
    effect = abs(base["median_ms"] / mine["median_ms"] - 1)
    return rel_base + rel_mine > effect or max(rel_base, rel_mine) > UNSTABLE_IQR


def load_per_core() -> float | None:
    """The 1-minute load average per core (None where the OS does not report one)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


# Signs of a loaded machine: another process's load at the start, the matrix-product rate moving between
# the start and the end of the run, an op faster than the measured matrix-product rate allows.
BUSY_LOAD_PER_CORE = 0.5
MATMUL_DRIFT = 0.2


def noise_warnings(report: dict, matmul_rates: list[float], load_before: float | None) -> list[str]:
    """What in this run says its ratios are not to be trusted, in words."""
    warnings = []
    if load_before is not None and load_before > BUSY_LOAD_PER_CORE:
        warnings.append(f"the machine was busy when the run started (load average {load_before:.2f} per core "
                        f"> {BUSY_LOAD_PER_CORE}): other processes share these cores")
    if len(matmul_rates) == 2 and abs(matmul_rates[1] / matmul_rates[0] - 1) > MATMUL_DRIFT:
        warnings.append(f"the matrix-product reference rate moved from {matmul_rates[0]:.0f} to "
                        f"{matmul_rates[1]:.0f} GFLOP/s between the start and the end of the run: the "
                        f"machine's speed changed while it ran")
    for row in report.get("ops", []):
        for label, entry in row["latency"].items():
            if entry.get("forward_share_of_matmul_rate", 0) > 1:
                warnings.append(f"{row['op']} {row['label']} [{label}] ran at {entry['forward_share_of_matmul_rate']:.0%}"
                                f" of the measured matrix-product rate, which it cannot exceed: that rate was "
                                f"measured while the machine was loaded")
    rows = [(r.get("model") or f"{r['op']} {r['label']}", r["latency"]) for r in report.get("models", []) + report.get("ops", [])]
    flagged = [f"{name} [{label}] {key}" for name, latency in rows for label in latency
               for key in ("forward", "train_step", "forward_backward") if noisy(latency, key, label)]
    if flagged:
        warnings.append(f"{len(flagged)} speedups are less certain than their size (spread above the effect, "
                        f"or an unstable timing; marked '~' in the tables): " + "; ".join(flagged[:6])
                        + ("; ..." if len(flagged) > 6 else ""))
    return warnings


def _summary(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "iqr_ms": q[2] - q[0], "repeats": len(times)}


def environment(device: torch.device) -> dict:
    import hrvit_kernels

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "hrvit_kernels": hrvit_kernels.__version__,
        "extension_built": hrvit_kernels.HAS_EXT,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        # Settings that change CPU timings without changing any code: threads and the allocator.
        "tuning_env": {k: v for k, v in sorted(os.environ.items())
                       if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_", "MALLOC_", "LD_PRELOAD"))},
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda)
    return env


def device_slug(env: dict) -> str:
    """File name for results: the GPU's name, or 'cpu-<N>core'."""
    if env.get("gpu"):
        return "".join(c if c.isalnum() else "-" for c in env["gpu"].lower()).strip("-")
    return f"cpu-{env['cpu_count']}core"


class Progress:
    """One line per finished step on stderr, with the step count and elapsed time. The total starts as an
    estimate; ``expect(planned, actual)`` corrects it once a step group's real size is known."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def expect(self, planned: int, actual: int) -> None:
        self.total += actual - planned

    def step(self, what: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total} {time.perf_counter() - self.start:6.1f}s] {what}",
              file=sys.stderr, flush=True)
