"""Timing a benchmark step in a fresh interpreter, with the peak memory of its whole process tree."""

from __future__ import annotations

import subprocess
import sys
import time


def measure(code: str, *, timeout: float = 7200) -> tuple[float, float, str]:
    """Run code in a fresh interpreter; return seconds, peak RSS (MiB, the process and its children) and stdout."""
    import psutil

    start = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        if time.perf_counter() - start > timeout:
            for p in [*proc.children(recursive=True), proc]:
                p.kill()
            raise SystemExit(f"timed out after {timeout:.0f} s")
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(stderr[-2000:])
    return seconds, peak / 2**20, stdout
