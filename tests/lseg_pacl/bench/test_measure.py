import pytest

from lseg_pacl.bench.measure import in_fresh_process, seconds


def allocate(mib: int) -> dict:
    import torch

    from lseg_pacl.bench.measure import peak_bytes

    return {"peak": peak_bytes(lambda: torch.ones(mib * 2**18).sum(), "cpu")}


def fail() -> dict:
    raise RuntimeError("boom")


@pytest.mark.slow
def test_peak_memory_in_a_fresh_process_sees_a_known_allocation():
    small, large = in_fresh_process(allocate, 16)["peak"], in_fresh_process(allocate, 256)["peak"]
    assert large >= 250 * 2**20 > small


@pytest.mark.slow
def test_a_failing_child_is_reported_not_hidden():
    with pytest.raises(RuntimeError, match="boom"):
        in_fresh_process(fail)


def test_seconds_is_the_median_after_warmup():
    calls = []
    assert seconds(lambda: calls.append(1), repeats=3, warmup=2) >= 0
    assert len(calls) == 5
