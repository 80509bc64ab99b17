"""The W&B API key (read from the environment only) is in no file a run writes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SENTINEL = "sentinel0123456789abcdef0123456789abcdef"  # 40 characters, like a real key


@pytest.mark.slow
def test_the_api_key_is_in_no_file_of_a_run(tiny, tmp_path):
    """A fresh process, as a user starts it: the key in its environment, W&B offline (it writes its files)."""
    env = {k: v for k, v in os.environ.items() if "WANDB" not in k}  # no service inherited from this process
    env["WANDB_API_KEY"] = SENTINEL
    target = tmp_path / "run"
    args = [a for a in tiny if not a.startswith("logger.wandb.mode")]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lseg_pacl",
            "train",
            "demo_clip",
            *args,
            "logger.wandb.mode=offline",
            f"run.dir={target}",
            "trainer.val_check_interval=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = [p for p in Path(target).rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".ckpt" for p in files)
    leaked = [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    assert leaked == [] and SENTINEL not in done.stdout + done.stderr
