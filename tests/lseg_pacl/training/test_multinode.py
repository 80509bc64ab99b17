"""Two torchrun "nodes" on localhost (node ranks 0 and 1, gloo on CPU) train a few demo steps into one run."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_two_node_launch_writes_one_run(world, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    port = free_port()
    args = ["-m", "lseg_pacl", "train", "demo_clip", "trainer.num_nodes=2", "trainer.devices=1",
            "trainer.accelerator=cpu", "trainer.strategy=ddp", "trainer.max_steps=3", "run.id=two-nodes",
            f"run.root={tmp_path / 'runs'}", "logger.wandb.mode=disabled", f"data.synthetic.out={world}",
            "data.synthetic.n_train=48", "data.synthetic.n_val=8", "data.num_workers=0", "data.batch_size=8",
            "trainer.enable_progress_bar=false"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    procs = [
        subprocess.Popen(
            [
                str(torchrun),
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(rank),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(port),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[1][-3000:] + outputs[0][-3000:]
    runs = list((tmp_path / "runs" / "demo_clip").iterdir())
    assert [r.name for r in runs] == ["two-nodes"]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["global_step"] == 3 and (runs[0] / "config.yaml").is_file()
    assert sum("Final metrics" in out for out in outputs) == 1  # one report, from rank 0
