"""One stress run: a command in its own session, its output in ``<run dir>/output.log``, watched for a stall
(no new output for ``stall_after`` seconds; a training run prints at every step). A stalled run is dumped
(``stall.txt``: every process's threads, kernel wait channels and stacks, native stacks by gdb; then every
process's Python stacks, written by faulthandler into output.log on SIGABRT) and killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lseg_pacl.processes import command_line, describe, native_stacks, tree


@dataclass
class Outcome:
    scenario: str
    index: int
    status: str  # ok | failed | stalled
    returncode: int | None
    seconds: float
    run_dir: str
    dump: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def dump_stall(root_pid: int, run_dir: Path, log: Path, waited: float) -> Path:
    """Everything about the stalled process tree into ``run_dir/stall.txt``, then SIGABRT to each process,
    children first, so that faulthandler (PYTHONFAULTHANDLER=1) writes its Python stacks into ``log``."""
    pids = tree(root_pid)
    report = run_dir / "stall.txt"
    with open(report, "w", encoding="utf-8") as f:
        f.write(f"stalled: no output for {waited:.0f} s; {len(pids)} processes\n\n")
        for pid in pids:
            f.write(describe(pid) + "\n")
            native = native_stacks(pid)
            if native:
                rows = "\n".join(f"    {r}" for r in native.splitlines())
                f.write(f"  native stacks (gdb):\n{rows}\n")
            f.write("\n")
        f.write(f"Python stacks: in {log.name}, after the lines '=== SIGABRT to pid ...'\n")
    for pid in reversed(pids):
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n=== SIGABRT to pid {pid}: {command_line(pid)} ===\n")
        try:
            os.kill(pid, signal.SIGABRT)
        except ProcessLookupError:
            continue
        time.sleep(1.0)
    return report


def run_watched(
    scenario: str, index: int, command: list[str], run_dir: Path, stall_after: float, env: dict[str, str]
) -> Outcome:
    """Run ``command`` to its end, or until it stalls (then dumped and killed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "output.log"
    env = {**env, "PYTHONFAULTHANDLER": "1", "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    last_size, last_change, dump = -1, time.monotonic(), None
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            size = _size(log)
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > stall_after:
                dump = dump_stall(proc.pid, run_dir, log, time.monotonic() - last_change)
                break
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    status = "stalled" if dump else ("ok" if proc.returncode == 0 else "failed")
    return Outcome(scenario, index, status, proc.returncode, round(time.monotonic() - start, 1), str(run_dir),
                   str(dump) if dump else None)


class CpuLoad:
    """``workers`` busy processes for as long as the context lasts (the other jobs of a shared machine)."""

    def __init__(self, workers: int, python: str) -> None:
        self.workers, self.python, self.procs = workers, python, []

    def __enter__(self) -> CpuLoad:
        self.procs = [
            subprocess.Popen([self.python, "-c", "while True: pass"], start_new_session=True)
            for _ in range(self.workers)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
