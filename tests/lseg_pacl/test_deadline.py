"""The deadline (lseg_pacl/deadline.py): a phase that outlasts its limit interrupts the main thread where it
waits; a phase with no limit, or one that ends in time, does not."""

import time

import pytest

from lseg_pacl.deadline import Deadline, StallInterrupt


def test_a_phase_that_outlasts_its_limit_interrupts_the_main_thread():
    seen = []
    deadline = Deadline(seen.append, lambda why: pytest.fail(f"hard exit: {why}"), grace=60)
    deadline.start()
    start = time.monotonic()
    try:
        deadline.beat("waiting for a batch", 1.0, "stall.data_timeout")
        with pytest.raises(StallInterrupt, match="stall.data_timeout"):
            time.sleep(60)  # a wait that would never end
    finally:
        deadline.stop()
    assert time.monotonic() - start < 30
    assert len(seen) == 1 and "waiting for a batch" in seen[0]


def test_beats_in_time_and_unbounded_phases_never_fire():
    deadline = Deadline(lambda r: pytest.fail(r), lambda why: pytest.fail(why))
    deadline.start()
    try:
        for _ in range(6):
            deadline.beat("a step", 1.0)
            time.sleep(0.3)
        deadline.beat("computing", None)
        time.sleep(2.0)
    finally:
        deadline.stop()
    assert deadline.fired is None
