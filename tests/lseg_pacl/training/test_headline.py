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
    summary = train("pacl_vitb16", [
        "model.clip.pretrained=null", *synthetic_data(world), f"run.root={tmp_path}", "logger.wandb.mode=disabled",
        "data.batch_size=2", "data.val_batch_size=2", "data.val.max_images=2", "data.num_workers=0",
        "trainer.max_steps=1", "trainer.max_epochs=null", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.precision=32-true", "trainer.enable_progress_bar=false",
    ])
    assert summary["global_step"] == 1
    assert 0.0 <= summary["final"]["val/mIoU"] <= 1.0
    assert summary["final"]["val/mIoU"] == summary["final"]["val/mIoU"]  # not NaN
