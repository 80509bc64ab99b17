"""The headline experiment (pacl_vitb16) apart from its downloads, and how it stops when they are missing."""

import pytest

from lseg_pacl.commands.cli import main
from lseg_pacl.training.runner import train


def synthetic_data(world) -> list[str]:
    return [f"data.train.root={world}/coco", "data.val.datasets=[synthetic]",
            f"data.val.roots.synthetic={world}/ADEChallengeData2016"]


def test_missing_data_stops_with_what_to_provide(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    code = main(["train", "pacl_vitb16", f"run.root={tmp_path}", "logger.wandb.mode=disabled"])
    err = capsys.readouterr().err
    assert code == 2 and "DATA_ROOT" in err and "data.train.root" in err


def test_missing_weights_stop_with_which_file_to_pass(monkeypatch, capsys, tmp_path, world):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("lseg_pacl.models.hub.cached_hub_file", lambda cfg: None)
    code = main(["train", "pacl_vitb16", f"run.root={tmp_path}", "logger.wandb.mode=disabled",
                 *synthetic_data(world)])
    err = capsys.readouterr().err
    assert code == 3 and "model.clip.pretrained=" in err


@pytest.mark.slow
def test_pacl_vitb16_trains_one_real_step_without_its_weights(tmp_path, world):
    summary = train(
        "pacl_vitb16",
        [
            "model.clip.pretrained=null",
            *synthetic_data(world),
            f"run.root={tmp_path}",
            "logger.wandb.mode=disabled",
            "data.batch_size=2",
            "data.val_batch_size=2",
            "data.val.max_images=2",
            "data.num_workers=0",
            "trainer.max_steps=1",
            "trainer.max_epochs=null",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.precision=32-true",
            "trainer.enable_progress_bar=false",
        ],
    )
    assert summary["global_step"] == 1
    assert summary["final"]["val/mIoU"] == pytest.approx(
        miou_by_hand(summary["last_checkpoint"], world), abs=1e-6
    )


def miou_by_hand(ckpt: str, world) -> float:
    """The final weights' mIoU on the 2 validation images, recomputed here: the same 224 px centre crops, then
    a confusion matrix in numpy and the mean IoU over classes with a non-empty union."""
    import numpy as np
    import torch

    from data_modules.segmentation import SegmentationSet
    from data_modules.transforms import segmentation_eval_transform
    from lseg_pacl.objectives import load_objective

    module = load_objective(ckpt).eval()
    data = SegmentationSet(
        "synthetic",
        world / "ADEChallengeData2016",
        None,
        segmentation_eval_transform(224, module.input_mean, module.input_std),
        max_images=2,
    )
    n = len(data.class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    with torch.no_grad():
        for i in range(len(data)):
            sample = data[i]
            pred = module.segment(sample["image"][None], data.class_names)[0].argmax(0).numpy()
            mask = sample["mask"].numpy()
            keep = mask != 255
            np.add.at(confusion, (mask[keep], pred[keep]), 1)
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))
