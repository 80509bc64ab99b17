"""A process tree read from /proc, and what can be learnt about each process without stopping it: its
command line, each thread's kernel wait channel and kernel stack, and (with gdb on the machine) its native
stack. Used by the trainer's stall guard (training/stall.py) and by ``make stress``. Where there is no /proc
(macOS, Windows) a tree is the process alone and a description its pid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROC = Path("/proc")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"<unreadable: {exc.strerror}>"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children file, as Linux keeps them per thread)."""
    found: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        found += [int(c) for c in _read(task / "children").split() if c.isdigit()]
    return sorted(set(found))


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents before children."""
    order, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        if (PROC / str(p)).exists():
            order.append(p)
            todo += children(p)
    return order


def command_line(pid: int) -> str:
    return _read(PROC / str(pid) / "cmdline").replace("\0", " ").strip()


def describe(pid: int) -> str:
    """Command line, and per thread its name, state, wait channel and kernel stack."""
    lines = [f"pid {pid}: {command_line(pid)}"]
    for task in sorted((PROC / str(pid) / "task").glob("*"), key=lambda t: int(t.name)):
        status = dict(
            line.split(":", 1) for line in _read(task / "status").splitlines() if ":" in line
        )
        name, state = status.get("Name", "?").strip(), status.get("State", "?").strip()
        lines.append(f"  thread {task.name} ({name}) state={state} wchan={_read(task / 'wchan').strip()}")
        kernel = _read(task / "stack").strip()
        if kernel and not kernel.startswith("<unreadable"):
            lines += [f"    {row}" for row in kernel.splitlines()]
    return "\n".join(lines)


def native_stacks(pid: int, timeout: float = 60.0) -> str:
    """Every thread's C stack by gdb (attached and detached again); empty when gdb is not installed."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return ""
    try:
        out = subprocess.run(
            [gdb, "-p", str(pid), "-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt"],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"<gdb timed out after {timeout:.0f} s>"
    keep = [line for line in out.stdout.splitlines() if line.startswith(("#", "Thread"))]
    return "\n".join(keep) if keep else out.stderr.strip()[-2000:]


def forkserver_workers(pid: int) -> list[int]:
    """The DataLoader workers of ``pid``: the children of its forkserver (data_modules/workers.py),
    the only processes that answer SIGUSR2 with their Python stacks."""
    found = []
    for child in children(pid):
        if "multiprocessing.forkserver" in command_line(child):
            found += children(child)
    return found
