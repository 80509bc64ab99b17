"""Evaluation under 2 processes (gloo): each image once, the metric synced: exactly the single-process
mIoU."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from data_modules.samplers import EvalShardBatches, EvalShardSampler
from data_modules.segmentation import SegmentationSet, val_loader
from data_modules.transforms import segmentation_eval_transform
from lseg_pacl.evaluation.metrics import SegmentationScore


def test_shards_cover_every_index_once():
    parts = [list(EvalShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(7)) and [len(p) for p in parts] == [3, 2, 2]


def test_every_rank_runs_the_same_number_of_batches():
    batches = [list(EvalShardBatches(5, 2, r, 2)) for r in range(2)]
    assert batches == [[[0, 2], [4]], [[1, 3], []]]  # rank 1 ends with an empty batch
    assert [list(EvalShardBatches(1, 4, r, 3)) for r in range(3)] == [[[0]], [[]], [[]]]


def predictions(batch) -> torch.Tensor:
    """A fixed, image-dependent "model": class from the brightness of each pixel."""
    return (batch["image"].mean(1) * 3).long().clamp(0, 9)


def miou(root, world, rank=0) -> tuple[float, int]:
    """(mIoU synced over ranks, images this rank saw)."""
    ds = SegmentationSet(
        "synthetic", root, "validation", segmentation_eval_transform(64, (0.5,) * 3, (0.5,) * 3), max_images=5
    )  # 5 images: not divisible by 2
    metric = SegmentationScore(len(ds.class_names))
    seen = 0
    for batch in val_loader(ds, batch_size=2, num_workers=0, rank=rank, world_size=world):
        if "image" not in batch:  # the empty batch that evens the step count
            continue
        metric.update(predictions(batch), batch["mask"])
        seen += batch["image"].shape[0]
    return float(metric.compute()["mIoU"]), seen


def _rank(rank, world, init, root, out):
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        value, seen = miou(root, world, rank)
        if rank == 0:
            torch.save({"miou": value, "seen": seen}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_evaluation_equals_one(world, tmp_path):
    single, _ = miou(world, 1)
    out = tmp_path / "r0.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), world, str(out)), nprocs=2, join=True)
    result = torch.load(out)
    assert result["seen"] == 3 and result["miou"] == single  # rank 0 saw images 0, 2, 4; synced exactly
