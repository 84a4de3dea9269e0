"""Running a test script on two gloo processes through torchrun."""
import os
import subprocess
import sys
from pathlib import Path


def run_two_processes(script: Path, *args, threads: int | None = 1) -> None:
    """Runs script on 2 processes and fails with the processes' own output when either fails. Python's fault
    handler is on, so a process that aborts (SIGABRT, SIGSEGV) prints where each of its threads was."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        # torchrun's own error summary is long: show it after what the processes wrote.
        raise AssertionError(f"torchrun exited with {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
                             f"--- stderr ---\n{result.stderr[-12000:]}")
