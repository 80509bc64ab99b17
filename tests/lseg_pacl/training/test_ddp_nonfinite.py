"""Under Lightning DDP (2 CPU processes, gloo): a NaN loss on one rank skips the update on both, training goes
on."""

import pytest
import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.objectives.clip_contrastive import ClipContrastive


class NanOnRank1AtStep1(ClipContrastive):
    def training_step(self, batch, batch_idx):
        if self.global_step == 1 and self.global_rank == 1:
            batch = {**batch, "image": batch["image"] * float("nan")}
        return super().training_step(batch, batch_idx)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.history.append(
            sum(float(p.detach().double().sum()) for p in self.parameters() if p.requires_grad)
        )

    def on_train_end(self):
        torch.save(
            {"history": self.history, "skipped": self.nonfinite.total}, f"{self.out}.{self.global_rank}"
        )


@pytest.mark.slow
def test_a_nan_on_one_rank_skips_the_update_on_both(world, tmp_path, tiny):
    import lightning as L

    from lseg_pacl.training.data import build_train_data
    from lseg_pacl.training.spec import run_spec

    cfg = load_config("demo_clip", [*tiny, "model.noun_prompt_templates=0"])
    spec = run_spec(cfg)
    module = NanOnRank1AtStep1(to_plain(cfg), benchmarks=spec.benchmark_classes)
    module.history, module.out = [], str(tmp_path / "r")
    data = build_train_data(cfg, spec)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=data)
    runs = [torch.load(f"{module.out}.{r}") for r in (0, 1)]
    assert runs[0]["skipped"] == runs[1]["skipped"] == 1
    h0, h1 = runs[0]["history"], runs[1]["history"]
    assert h0 == pytest.approx(h1) and len(h0) == 3
    assert h0[1] == pytest.approx(h0[0]) and h0[2] != pytest.approx(h0[1])  # step 1 skipped, step 2 updated
