"""The Lightning internals lightning_compat.py reads: a release that changes them fails here, not in a run."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lseg_pacl.training.lightning_compat import epoch_in_progress


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (self.w - batch.float().mean()) ** 2

    def validation_step(self, batch, batch_idx):
        self.log("val", batch.float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Record(L.Callback):
    def __init__(self, save_at_step: int | None = None, path=None) -> None:
        self.save_at_step, self.path = save_at_step, path
        self.at_batches: list[tuple[int, int]] = []  # (epoch in progress, batch index) at each batch start
        self.at_epoch_ends: list[tuple[int, int]] = []  # (epoch in progress, current_epoch) at each epoch end

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.at_batches.append((epoch_in_progress(trainer), batch_idx))

    def on_train_epoch_end(self, trainer, module) -> None:
        self.at_epoch_ends.append((epoch_in_progress(trainer), trainer.current_epoch))

    def on_validation_end(self, trainer, module) -> None:
        if trainer.global_step == self.save_at_step and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)


def fit(tmp_path, callback: Record, ckpt=None, **kwargs) -> None:
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path, callbacks=[callback], **kwargs)
    loader = DataLoader(torch.arange(8), batch_size=2)  # 4 batches per epoch
    trainer.fit(Tiny(), train_dataloaders=loader, val_dataloaders=DataLoader(torch.arange(2)), ckpt_path=ckpt)


@pytest.mark.slow
def test_the_epoch_in_progress_counts_epochs_from_their_first_batch(tmp_path):
    record = Record()
    fit(tmp_path, record)
    assert record.at_batches == [(0, b) for b in range(4)] + [(1, b) for b in range(4)]
    # at an epoch's end the epoch already counts as processed, while current_epoch still names it
    assert record.at_epoch_ends == [(1, 0), (2, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("save_at,interval,first", [(4, None, (1, 0)), (2, 2, (0, 2))],
                         ids=["validation-end-at-an-epoch-end", "validation-end-mid-epoch"])
def test_after_a_resume_from_a_validation_end_save_it_names_the_epoch_whose_batches_come_next(
        tmp_path, save_at, interval, first):
    path = tmp_path / "state.ckpt"
    fit(tmp_path, Record(save_at, path), val_check_interval=interval)
    resumed = Record()
    fit(tmp_path, resumed, ckpt=str(path), val_check_interval=interval)
    assert resumed.at_batches[0] == first
