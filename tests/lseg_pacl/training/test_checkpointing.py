"""Checkpoints are written atomically with a manifest, verified before use, rotated, and loaded as tensors
only."""

import logging
import os

import pytest
import torch

from lseg_pacl.errors import CheckpointError, MissingInputError
from lseg_pacl.models.clip import create_clip
from lseg_pacl.models.weights import read_state
from lseg_pacl.objectives import load_objective
from lseg_pacl.training.checkpointing import (
    LAST,
    SafeCheckpointIO,
    checkpoints_by_step,
    manifest_path,
    resume_checkpoint,
    verify,
    write_atomic,
)
from lseg_pacl.training.runner import train


def save(folder, name, step, value=1.0):
    SafeCheckpointIO().save_checkpoint({"global_step": step, "w": torch.full((1000,), value)}, folder / name)
    return folder / name


def test_a_saved_checkpoint_verifies_and_loads(tmp_path):
    path = save(tmp_path, LAST, 7)
    assert verify(path) is None and manifest_path(path).is_file()
    assert SafeCheckpointIO().load_checkpoint(path)["global_step"] == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["truncate", "empty", "bitflip", "no_manifest"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, caplog):
    caplog.set_level(logging.WARNING)
    previous = save(tmp_path, "last-step4.ckpt", 4)
    newest = save(tmp_path, LAST, 6, value=2.0)
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "bitflip":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        newest.write_bytes(bytes(flipped))
    else:
        manifest_path(newest).unlink()
    assert resume_checkpoint(tmp_path) == previous
    if damage != "no_manifest":
        assert "not resuming from" in caplog.text
        with pytest.raises(CheckpointError, match="refusing to load"):
            SafeCheckpointIO().load_checkpoint(newest)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"old")

    def disk_full(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, disk_full)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


def test_a_failed_save_is_an_error_that_keeps_the_checkpoints(tmp_path):
    good = save(tmp_path, LAST, 3)
    blocker = tmp_path / "sub"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        save(blocker, LAST, 4)
    assert verify(good) is None


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": Payload(marker)}}, crafted)
    with pytest.raises(CheckpointError, match="tensors-only"):
        SafeCheckpointIO().load_checkpoint(crafted)
    with pytest.raises(Exception, match="not a readable checkpoint"):
        load_objective(crafted)
    with pytest.raises(MissingInputError, match="tensors-only"):  # as CLIP weights (model.clip.pretrained)
        create_clip("lseg-tiny-vit", str(crafted))
    with pytest.raises(
        MissingInputError, match="tensors-only"
    ):  # as ViT weights (model.lseg.backbone_pretrained)
        read_state(crafted)
    assert not marker.exists()


@pytest.mark.slow
def test_a_run_keeps_its_newest_states(tiny, tmp_path):
    train(
        "demo_clip",
        [
            *tiny,
            "trainer.val_check_interval=2",
            "trainer.max_steps=8",
            "run.keep_last=3",
            f"run.dir={tmp_path / 'r'}",
        ],
    )
    folder = tmp_path / "r" / "checkpoints"
    lasts = sorted(p.name for p in folder.glob("last*.ckpt"))
    assert lasts == ["last-step4.ckpt", "last-step6.ckpt", "last.ckpt"]
    assert all(verify(p) is None for _, p in checkpoints_by_step(folder))
    assert checkpoints_by_step(folder)[0] == (8, folder / LAST)
