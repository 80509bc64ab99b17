"""How the bench measures: wall time after warm-up, and peak memory of one call in a fresh process.

Peak memory on the CPU is the growth of the process's peak resident set (``ru_maxrss``) over its size once the
inputs exist, measured in a spawned child so that nothing allocated earlier hides the peak; on CUDA it is
``max_memory_allocated`` over the memory held before the call.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def seconds(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def max_rss_bytes() -> int:
    """The process's peak resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return max_rss_bytes()


def peak_bytes(fn: Callable[[], Any], device: str) -> int:
    """Memory one call of ``fn`` needs beyond what is allocated before it (see the module doc)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    before = current_rss_bytes()  # in a fresh process (in_fresh_process) the peak so far is about this
    fn()
    return max(0, max_rss_bytes() - before)


def _child(queue, target: Callable[..., dict], args: tuple) -> None:
    try:
        queue.put(("ok", target(*args)))
    except BaseException as exc:  # reported to the parent, which decides
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def in_fresh_process(target: Callable[..., dict], *args: Any, timeout: float = 1800) -> dict:
    """``target(*args)`` in a spawned process (a module-level function returning a dict): a clean peak-memory
    baseline, and an out-of-memory kill that ends the child, not the bench."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, target, args))
    proc.start()
    try:
        status, value = queue.get(timeout=timeout)
    except Exception:
        status, value = "error", f"no result (exit code {proc.exitcode}; killed for memory or time?)"
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    if status != "ok":
        raise RuntimeError(value)
    return value
