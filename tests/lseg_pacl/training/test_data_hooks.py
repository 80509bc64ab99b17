"""The Trainer-side data hooks: shard streams follow the epoch, bad samples stop a run past the limit."""

import csv
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from support.layouts import make_shards, truncate

from data_modules.captions import CaptionDataModule
from data_modules.shards import ShardSource, ShardStream
from data_modules.transforms import caption_train_transform
from lseg_pacl.commands.cli import main
from lseg_pacl.training.lightning_compat import epoch_in_progress
from lseg_pacl.training.runner import make_trainer, train


class KeyRecorder(L.LightningModule):
    """A one-parameter model that records which samples each epoch saw."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[str]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["key"])
        return (self.w * batch["image"].mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_shard_order_changes_with_the_epoch_and_covers_the_data(tmp_path):
    urls = tuple(str(p) for p in make_shards(tmp_path, n_shards=4, per_shard=4))
    transform = caption_train_transform(16, (0.5,) * 3, (0.5,) * 3)

    def make(rank, world):
        return ShardStream([ShardSource(urls)], transform, batch_size=4, samples_per_epoch=16, num_workers=2,
                           resampled=False, shuffle_buffer=4, rank=rank, world_size=world)

    data = CaptionDataModule(make, batch_size=4, num_workers=2, epoch_of=epoch_in_progress)
    model = KeyRecorder()
    trainer = make_trainer(0.0, max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    everything = sorted(f"{i:09d}" for i in range(16))
    assert all(sorted(keys) == everything for keys in model.seen.values()) and len(model.seen) == 3
    assert len({tuple(keys) for keys in model.seen.values()}) == 3  # a different order in every epoch


@pytest.mark.slow
def test_too_many_bad_images_stop_the_run_with_the_files_named(tiny, world, tmp_path, capsys):
    coco = tmp_path / "coco"
    shutil.copytree(world / "coco", coco)
    broken = sorted((coco / "train2017").glob("*.jpg"))[:6]
    for path in broken:
        truncate(path, 0.3)
    args = ["train", "demo_clip", *tiny, f"data.train.root={coco}", "data.max_bad_fraction=0.05",
            "trainer.max_steps=12"]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "bad_image" in err and any(str(p) in err for p in broken) and "Traceback" not in err
    # within the limit the run goes on and reports how many it skipped
    summary = train("demo_clip", [*tiny, f"data.train.root={coco}", "data.max_bad_fraction=0.5",
                                  "trainer.max_steps=12"])
    with open(Path(summary["run_dir"]) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    skipped = [float(r["data/train_skipped"]) for r in rows if r.get("data/train_skipped")]
    by_kind = [
        float(r["data/train_skipped/bad_image"]) for r in rows if r.get("data/train_skipped/bad_image")
    ]
    assert skipped and skipped[-1] >= 6 and by_kind == skipped  # per epoch, in total and by kind


def test_a_stream_that_ran_dry_stops_the_run_with_its_reason():
    from data_modules.bad_samples import EVENTS, EXHAUSTED
    from lseg_pacl.errors import BadDataError
    from lseg_pacl.training.data_hooks import SkipMonitor

    monitor = SkipMonitor(max_bad_fraction=1.0)
    monitor.on_train_batch_start(
        None, None, {EVENTS: [("bad_image", "a.jpg")], "image": torch.zeros(3, 1)}, 0
    )
    with pytest.raises(BadDataError, match="ran dry.*bad_image=1"):
        monitor.on_train_batch_start(None, None, {EVENTS: [], EXHAUSTED: "caption shards ran dry"}, 1)
