"""``lseg-pacl eval``: zero-shot segmentation of a checkpoint (or of an untrained, training-free model) on the
configured benchmark, written to <run dir>/eval/results.json."""

from __future__ import annotations

import json
from pathlib import Path

from lseg_pacl.builders import build_val_data, check_inputs
from lseg_pacl.config import load_config, to_plain
from lseg_pacl.errors import ConfigError
from lseg_pacl.objectives import build_objective, load_objective
from lseg_pacl.prompts import templates
from lseg_pacl.runner import experiment_root, make_trainer, new_run_id


def _eval_dir(ckpt: str | None, cfg) -> Path:
    if ckpt:
        path = Path(ckpt).expanduser().resolve()
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir / "eval"
    return experiment_root(cfg) / f"eval-{new_run_id()}"


def evaluate(experiment: str, overrides: list[str]) -> dict:
    cfg = load_config(experiment, overrides)
    if cfg.stages:
        raise ConfigError(f"'{experiment}' is a pipeline; evaluate one of its stages ({', '.join(cfg.stages)}) "
                          f"with ckpt=<that stage's checkpoint>")
    check_inputs(cfg, train=False)
    module = load_objective(cfg.eval.ckpt) if cfg.eval.ckpt else build_objective(to_plain(cfg))
    module.templates = templates(cfg.eval.templates)
    data = build_val_data(cfg, module.clip)
    # one device: validation under DDP would pad the set with duplicated images
    trainer = make_trainer(cfg.data.max_bad_fraction, accelerator=cfg.trainer.accelerator, devices=1,
                           precision=cfg.trainer.precision, logger=False, enable_checkpointing=False,
                           enable_progress_bar=cfg.trainer.enable_progress_bar)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    v = cfg.data.val
    results = {
        s.bench.name: {
            "mIoU": float(metrics[f"val/mIoU/{s.bench.name}"]) if f"val/mIoU/{s.bench.name}" in metrics else None,
            "images": len(s),
            "settings": {"split": s.split, "image_size": v.image_size, "templates": cfg.eval.templates,
                         "ckpt": cfg.eval.ckpt, "model": cfg.model.clip.name if not cfg.eval.ckpt else None},
        }
        for s in data.val_sets
    }
    out = _eval_dir(cfg.eval.ckpt, cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    print(f"written: {out / 'results.json'}")
    return results
