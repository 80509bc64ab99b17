"""A run killed with SIGKILL (a real subprocess) at any step, or while writing a checkpoint, or stopped by
SIGTERM / SIGUSR1, and resumed, ends bit-identical to an uninterrupted run: weights, optimizer and scheduler
state, step counters."""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import WORLD
from support.run_states import same, state

LAUNCHER = textwrap.dedent("""
    import os, signal, sys
    import lseg_pacl.training.checkpointing as ckpt
    import lseg_pacl.training.runner as runner
    from lightning.pytorch.callbacks import Callback
    from lseg_pacl.commands.cli import main

    kill_step = int(os.environ.get("KILL_AT_STEP", "-1"))
    signal_step = int(os.environ.get("SIGNAL_AT_STEP", "-1"))
    signal_name = os.environ.get("SIGNAL", "SIGTERM")
    kill_save, how = int(os.environ.get("KILL_IN_SAVE", "-1")), os.environ.get("KILL_HOW", "")

    class KillAt(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if trainer.global_step == signal_step:  # a scheduler's notice: handled before the step trains
                os.kill(os.getpid(), getattr(signal, signal_name))

    real_callbacks = runner.checkpoint_callbacks
    real_manifest, real_write = ckpt.write_manifest, ckpt.write_atomic
    runner.checkpoint_callbacks = lambda *a: [*real_callbacks(*a), KillAt()]
    saves = []

    def write_atomic(path, write):
        if str(path).endswith(".ckpt"):
            saves.append(path)
            if len(saves) == kill_save and how == "mid_file":  # the temporary file half written
                import io
                buf = io.BytesIO(); write(buf)
                with open(path.with_name(f".{path.name}.{os.getpid()}.tmp"), "wb") as f:
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, write)

    def write_manifest(path, *args):
        if len(saves) == kill_save and how == "before_manifest":  # new file in place, its manifest not yet
            os.kill(os.getpid(), signal.SIGKILL)
        return real_manifest(path, *args)

    ckpt.write_atomic, ckpt.write_manifest = write_atomic, write_manifest
    if __name__ == "__main__":  # DataLoader workers import this script too (data_modules/workers.py)
        sys.exit(main(sys.argv[1:]))
""")


def run(tmp_path, args, **env):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    clean = {k: v for k, v in os.environ.items() if "WANDB" not in k}  # never this process's W&B service
    environ = {**clean, **{k: str(v) for k, v in env.items()}}
    return subprocess.run(
        [sys.executable, str(script), "train", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    args = common(world, tmp)
    done = run(tmp, [*args, f"run.dir={tmp / 'ref'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    return args, state(tmp / "ref")


def common(world, tmp):
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
        "data.num_workers=1",
        "trainer.max_steps=14",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill,extra",
    [
        (dict(KILL_AT_STEP=5), []),
        (dict(KILL_AT_STEP=7), []),
        (
            dict(KILL_AT_STEP=8),
            ["trainer.val_check_interval=5"],
        ),  # resumes from the epoch-boundary save (step 6)
        (dict(KILL_IN_SAVE=4, KILL_HOW="mid_file"), []),
        (dict(KILL_IN_SAVE=5, KILL_HOW="before_manifest"), []),
    ],
    ids=["mid-epoch", "after-epoch-end", "epoch-boundary", "during-write", "before-manifest"],
)
def test_a_killed_run_resumes_bit_identical(reference, tmp_path, kill, extra):
    """Validation never touches training's random draws, so the reference (validating every 2 steps) also
    stands for a run validating elsewhere."""
    args, expected = reference
    target = tmp_path / "killed"
    killed = run(tmp_path, [*args, *extra, f"run.dir={target}"], **kill)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run(tmp_path, [*args, f"resume={target}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = state(target)
    for key in ("global_step", "epoch", "state_dict", "optimizer_states", "lr_schedulers"):
        assert same(got[key], expected[key]), key
    assert got["loops"]["fit_loop"]["epoch_progress"] == expected["loops"]["fit_loop"]["epoch_progress"]
    assert not list((target / "checkpoints").glob(".*.tmp"))  # a killed write's leftovers are cleared


@pytest.mark.slow
@pytest.mark.parametrize("sig,step", [("SIGTERM", 5), ("SIGUSR1", 6)])
def test_a_preempted_run_saves_stops_and_resumes_bit_identical(reference, tmp_path, sig, step):
    args, expected = reference
    target = tmp_path / "preempted"
    stopped = run(tmp_path, [*args, f"run.dir={target}"], SIGNAL_AT_STEP=step, SIGNAL=sig)
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    assert f"stopped by {sig} at step {step}" in stopped.stderr
    assert state(target)["global_step"] == step  # saved at the boundary where the signal was seen
    resumed = run(tmp_path, [*args, f"run.dir={target}", "resume=auto"])  # what a requeued job runs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = state(target)
    for key in ("global_step", "epoch", "state_dict", "optimizer_states", "lr_schedulers"):
        assert same(got[key], expected[key]), key


@pytest.fixture(scope="module")
def shard_reference(world, tmp_path_factory):
    from support.layouts import make_shards

    tmp = tmp_path_factory.mktemp("shard_reference")
    urls = ", ".join(f"'{p}'" for p in make_shards(tmp / "shards", n_shards=8, per_shard=6, size=(64, 64)))
    args = [
        *common(world, tmp),
        "data.train.format=shards",
        f"data.train.shards=[{{urls: [{urls}]}}]",
        "data.train.samples_per_epoch=48",
        "data.train.resampled=false",
        "data.num_workers=2",
    ]
    done = run(tmp, [*args, f"run.dir={tmp / 'ref'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    return args, state(tmp / "ref")


@pytest.mark.slow
# SIGNAL_AT_STEP=5: 5 batches in, worker 1's turn next
@pytest.mark.parametrize("stop,code", [(dict(KILL_AT_STEP=3), -9), (dict(SIGNAL_AT_STEP=5), 75)])
def test_a_stopped_shard_stream_run_resumes_bit_identical(shard_reference, tmp_path, stop, code):
    """Streamed shards: the resumed epoch passes over what was consumed (read, not decoded) and the workers
    take their turns from the right one, so the run continues exactly."""
    args, expected = shard_reference
    target = tmp_path / "stopped"
    assert run(tmp_path, [*args, f"run.dir={target}"], **stop).returncode == code
    resumed = run(tmp_path, [*args, f"resume={target}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = state(target)
    for key in ("global_step", "state_dict", "optimizer_states", "lr_schedulers"):
        assert same(got[key], expected[key]), key
