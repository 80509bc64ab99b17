"""Shared fixtures: a small synthetic world (real COCO-captions and ADE20K layouts) and tiny-run overrides."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from data_modules.synthetic import generate

WORLD = {"seed": 0, "n_train": 48, "n_val": 8, "size": 64}


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("world") / "synthetic", **WORLD)


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory) -> Path:
    """The demo's tiny CLIP with random weights (seed 0) saved as a file: weights with an identity, as the
    frozen-feature cache needs."""
    import torch

    from lseg_pacl.models.clip import create_clip

    path = tmp_path_factory.mktemp("weights") / "tiny_clip.pt"
    torch.manual_seed(0)
    torch.save(create_clip("lseg-tiny-vit").state_dict(), path)
    return path


@pytest.fixture
def tiny(world, tmp_path) -> list[str]:
    """Overrides that make any demo experiment a few-second CPU run inside tmp_path."""
    return [
        "logger.wandb.mode=disabled",
        f"run.root={tmp_path / 'runs'}",
        f"data.synthetic.out={world}",
        f"data.synthetic.n_train={WORLD['n_train']}",
        f"data.synthetic.n_val={WORLD['n_val']}",
        "data.batch_size=8",
        "data.val_batch_size=8",
        "data.num_workers=0",
        "trainer.max_steps=4",
        "trainer.enable_progress_bar=false",
    ]


@pytest.fixture
def offline(monkeypatch):
    """No network and no waiting: a connection attempt, or a sleep on the test's own thread (a retry's
    back-off), fails the test at once. Code that must stop within seconds offline is checked this way,
    without timing it."""
    real_sleep, main = time.sleep, threading.main_thread()

    def refuse_connection(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    def refuse_sleep(seconds):
        if threading.current_thread() is main:
            raise AssertionError(f"offline code waited {seconds} s instead of stopping")
        real_sleep(seconds)

    monkeypatch.setattr(socket, "create_connection", refuse_connection)
    monkeypatch.setattr(time, "sleep", refuse_sleep)
