"""The stress harness (lseg_pacl/stress/): a run that stops printing is dumped (every process: threads,
wait channels, Python stacks) and counted as stalled; one that finishes is not."""

import os
import sys
import textwrap

from lseg_pacl.processes import describe, tree
from lseg_pacl.stress.harness import run_watched

FORKS_AND_WAITS = textwrap.dedent("""
    import multiprocessing as mp, time

    def sleeper():
        time.sleep(3600)

    if __name__ == "__main__":
        p = mp.get_context("fork").Process(target=sleeper)
        p.start()
        print("started", flush=True)
        p.join()
""")


def test_a_run_that_stops_printing_is_dumped_and_counted(tmp_path):
    command = [sys.executable, "-c", FORKS_AND_WAITS]
    outcome = run_watched("t", 0, command, tmp_path / "r", 3, dict(os.environ))
    assert outcome.status == "stalled" and outcome.dump
    report = (tmp_path / "r" / "stall.txt").read_text()
    assert report.count("\npid ") + report.startswith("pid ") >= 2  # the parent and its child
    assert "wchan=" in report
    log = (tmp_path / "r" / "output.log").read_text()
    assert "=== SIGABRT to pid" in log and "in sleeper" in log  # the child's Python stack, by faulthandler


def test_a_run_that_finishes_is_ok(tmp_path):
    outcome = run_watched("t", 0, [sys.executable, "-c", "print('hi')"], tmp_path / "r", 30, dict(os.environ))
    assert outcome.status == "ok" and outcome.returncode == 0 and outcome.dump is None


def test_the_process_tree_and_its_description():
    pids = tree(os.getpid())
    assert pids[0] == os.getpid()
    text = describe(os.getpid())
    assert text.startswith(f"pid {os.getpid()}:") and "thread" in text
