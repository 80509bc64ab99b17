"""A run that stalls (a sample that never loads, a rank that stops joining collectives) stops within its
configured bound with exit code 76 on every rank, writes its stacks, and resumes to the same end, bit for bit,
as a run that never stalled. Real subprocesses, timeouts of seconds."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import WORLD
from support.run_states import same, state

STALLED = 76

HELPERS = textwrap.dedent("""
    import os, time

    class BlockingAt:
        '''A dataset whose ``block``-th __getitem__ call in a process never returns (a hung file system).'''

        def __init__(self, dataset, block):
            self.dataset, self.block, self.calls = dataset, block, 0

        def __len__(self):
            return len(self.dataset)

        def __getattr__(self, name):
            if name == "dataset":
                raise AttributeError(name)
            return getattr(self.dataset, name)

        def __getitem__(self, index):
            self.calls += 1
            if self.calls == self.block:
                while True:
                    time.sleep(3600)
            return self.dataset[index]
""")

LAUNCHER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lightning.pytorch.callbacks import Callback

    import stall_helpers
    import lseg_pacl.training.data as data
    import lseg_pacl.training.runner as runner
    from lseg_pacl.commands.cli import main

    class StopJoiningAt(Callback):
        '''On one rank, at one step: never reach the step's collectives (asleep in a hook).'''

        def __init__(self, rank, step):
            self.rank, self.step = rank, step

        def on_train_batch_start(self, trainer, *args):
            if trainer.global_rank == self.rank and trainer.global_step == self.step:
                while True:
                    time.sleep(3600)

    if __name__ == "__main__":
        block = int(os.environ.get("BLOCK_CALL", "-1"))
        if block > 0:
            real = data._coco_captions
            data._coco_captions = lambda *a, **k: stall_helpers.BlockingAt(real(*a, **k), block)
        if "SLEEP_RANK" in os.environ:
            real_callbacks = runner.checkpoint_callbacks
            stop = StopJoiningAt(int(os.environ["SLEEP_RANK"]), int(os.environ["SLEEP_STEP"]))
            runner.checkpoint_callbacks = lambda *a: [*real_callbacks(*a), stop]
        sys.exit(main(sys.argv[1:]))
""")


def _script(tmp_path):
    (tmp_path / "stall_helpers.py").write_text(HELPERS)
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    return script


def _env(**extra):
    clean = {k: v for k, v in os.environ.items() if "WANDB" not in k}
    return {**clean, **{k: str(v) for k, v in extra.items()}}


def run(tmp_path, args, **env):
    return subprocess.run([sys.executable, str(_script(tmp_path)), "train", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(tmp_path, args, **env):
    """Two ranks started together, as torchrun or SLURM start them: (exit codes, stderr) per rank."""
    script, port = _script(tmp_path), _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "train", *args, "run.id=pair", "trainer.devices=2",
             "trainer.strategy=ddp"],
            env=_env(**env, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=2, NODE_RANK=0,
                     LOCAL_RANK=r, RANK=r),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for r in (0, 1)
    ]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    return [p.returncode for p in procs], errs


def assert_same_end(got, expected):
    for key in ("global_step", "epoch", "state_dict", "optimizer_states", "lr_schedulers"):
        assert same(got[key], expected[key]), key


def common(world, tmp, workers=1):
    return [
        "demo_pacl",
        "model.clip.pretrained=null",
        "logger.wandb.mode=disabled",
        f"run.root={tmp / 'runs'}",
        f"data.synthetic.out={world}",
        f"data.synthetic.n_train={WORLD['n_train']}",
        f"data.synthetic.n_val={WORLD['n_val']}",
        "data.batch_size=8",
        "data.val_batch_size=8",
        f"data.num_workers={workers}",
        "trainer.max_steps=10",
        "trainer.val_check_interval=3",
        "trainer.enable_progress_bar=false",
    ]


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stall_reference")
    done = run(tmp, [*common(world, tmp), f"run.dir={tmp / 'ref'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    return state(tmp / "ref")


def stall_report(run_dir):
    files = sorted((run_dir / "stalls").glob("*-rank*.txt"))
    assert files, f"no stacks written under {run_dir / 'stalls'}"
    return [f.read_text() for f in files]


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers,bound",
    # 20 s: the wait after a step also covers a validation's start-up, slow on 2 busy cores
    [(1, ["stall.data_timeout=20", "stall.watchdog=120"]), (0, ["stall.data_timeout=20"])],
    ids=["in-a-worker", "in-the-training-process"],
)
def test_a_sample_that_never_loads_stops_the_run_and_it_resumes_bit_identical(
    world, reference, tmp_path, workers, bound
):
    target = tmp_path / "stalled"
    args = common(world, tmp_path, workers)
    start = time.monotonic()
    stalled = run(tmp_path, [*args, *bound, f"run.dir={target}"], BLOCK_CALL=8 * 4 + 1)  # the 5th batch
    took = time.monotonic() - start
    assert stalled.returncode == STALLED, stalled.stderr[-3000:]
    assert took < 120, took  # the bound is seconds: never the default half hour
    message = [line for line in stalled.stderr.splitlines() if line.startswith("error: ")]
    assert len(message) == 1 and "rank 0 stalled in demo_pacl" in message[0], stalled.stderr[-2000:]
    assert "waiting for the batch" in message[0] and "(stall.data_timeout)" in message[0]
    assert str(target / "stalls") in message[0]
    report = stall_report(target)[0]
    assert "every thread" in report and "__getitem__" in report  # where it hung, in the worker or here
    saved = state(target)
    assert 0 < saved["global_step"] < 10  # saved where it stopped, between steps
    resumed = run(tmp_path, [*args, f"resume={target}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(state(target), reference)


@pytest.fixture(scope="module")
def ddp_reference(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stall_ddp_reference")
    codes, errs = run_pair(tmp, [*common(world, tmp), f"run.dir={tmp / 'ref'}"])
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    return state(tmp / "ref")


@pytest.mark.slow
def test_a_rank_that_stops_joining_collectives_stops_every_rank_and_it_resumes_bit_identical(
    world, ddp_reference, tmp_path
):
    target = tmp_path / "stalled"
    args = [*common(world, tmp_path), f"run.dir={target}"]
    bounds = ["stall.collective_timeout=5", "stall.watchdog=30"]  # rank 1's start may take 20 s under load
    codes, errs = run_pair(tmp_path, [*args, *bounds], SLEEP_RANK=1, SLEEP_STEP=4)
    assert codes == [STALLED, STALLED], errs[0][-3000:] + "\n-----\n" + errs[1][-3000:]
    assert "rank 0 stalled" in errs[0] and "stall.collective_timeout" in errs[0]
    assert "rank 1 stalled" in errs[1] and "stall.watchdog" in errs[1]
    reports = stall_report(target)  # one per rank; rank 1's shows where it hangs: the hook that never returns
    assert len(reports) == 2 and "launch.py\", line 20 in on_train_batch_start" in reports[1], reports[1]
    assert state(target)["global_step"] == 4  # rank 0 saved at the step boundary where it waited
    codes, errs = run_pair(tmp_path, [*args, "resume=auto"])  # what the requeued SLURM job runs
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    assert_same_end(state(target), ddp_reference)
