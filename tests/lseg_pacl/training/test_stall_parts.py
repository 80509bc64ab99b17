"""The pieces of the stall stop (training/stall.py): which errors are stalls, the process group's timeout,
and the stacks written, a hung DataLoader worker's included."""

import time
from datetime import timedelta

import pytest
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from support.lock_held import Sleeps
from torch.utils.data import DataLoader

from data_modules.workers import worker_options
from lseg_pacl.training.stall import collective_failed, strategy_with_timeout, write_stacks

GLOO_TIMEOUT = ("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                "5000ms for recv operation to complete")
GLOO_PEER = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
             "[127.0.0.1]:1")


@pytest.mark.parametrize("name", ["ddp", "ddp_spawn", "ddp_find_unused_parameters_true"])
def test_a_ddp_strategy_gets_the_collective_timeout(name):
    strategy = strategy_with_timeout(name, 7)
    assert isinstance(strategy, DDPStrategy) and strategy._timeout == timedelta(seconds=7)
    if name == "ddp_spawn":
        assert strategy._start_method == "spawn"  # the registered variant, not plain ddp
    if name == "ddp_find_unused_parameters_true":
        assert strategy._ddp_kwargs.get("find_unused_parameters") is True


@pytest.mark.parametrize("name,seconds", [("auto", 7), ("ddp", None), ("ddp", 0), ("single_device", 7)])
def test_other_strategies_and_no_bound_are_left_as_they_are(name, seconds):
    assert strategy_with_timeout(name, seconds) == name


@pytest.mark.parametrize(
    "exc,stall",
    [
        (RuntimeError(GLOO_TIMEOUT), True),
        (RuntimeError(GLOO_PEER), True),
        (dist.DistBackendError("NCCL communicator was aborted"), True),
        (RuntimeError("DataLoader timed out after 3 seconds"), False),  # a data stall, told apart elsewhere
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("Timed out"), False),
    ],
)
def test_which_errors_are_failed_collectives(exc, stall):
    assert collective_failed(exc) is stall


def test_the_stacks_hold_this_process_and_a_hung_worker(tmp_path):
    loader = DataLoader(Sleeps(), batch_size=None, num_workers=1, **worker_options(1))
    it = iter(loader)  # the worker starts and hangs in item 0
    try:
        deadline = time.monotonic() + 60
        while True:  # until the worker has started and reached item 0
            path = write_stacks(tmp_path / "stalls" / "x-rank0.txt", "rank 0 stalled in test")
            text = path.read_text()
            worker = text.split("== DataLoader worker ==", 1)[-1]
            if "__getitem__" in worker or time.monotonic() > deadline:
                break
        assert text.startswith("rank 0 stalled in test")
        assert "test_the_stacks_hold_this_process_and_a_hung_worker" in text  # this thread
        assert "lock_held.py" in worker and "in __getitem__" in worker  # where the worker hangs, by SIGUSR2
    finally:
        it._shutdown_workers()
