"""``lseg-pacl eval``: zero-shot segmentation of a checkpoint (loaded from the checkpoint alone) or of a
training-free model on any set of benchmarks, with the configured protocol (eval.*). Writes
<run dir>/eval/results.{json,md,csv}, optional predictions, panels and diagnostics (evaluation/).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.evaluator import evaluate_benchmark
from lseg_pacl.evaluation.report import to_wandb, write_reports
from lseg_pacl.evaluation.settings import device_for
from lseg_pacl.objectives import build_objective, load_objective
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.training.inputs import check_benchmarks, ensure_synthetic
from lseg_pacl.training.plan import experiment_root, new_run_id


def eval_dir(ckpt: str | None, cfg: DictConfig) -> Path:
    """<run dir>/eval for a checkpoint of a run; <run.root>/<experiment>/eval-<id> for a training-free
    model."""
    if ckpt:
        path = Path(ckpt).expanduser().resolve()
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir / "eval"
    return experiment_root(cfg) / f"eval-{new_run_id()}"


def model_to_evaluate(cfg: DictConfig, overrides: list[str]) -> ZeroShotObjective:
    """The checkpoint eval.ckpt names (with a training-free last block when model.clip.last_block is given on
    the command line), else the experiment's own model."""
    if not cfg.eval.ckpt:
        return build_objective(to_plain(cfg))
    variant = any(o.startswith("model.clip.last_block=") for o in overrides)
    return load_objective(cfg.eval.ckpt, last_block=cfg.model.clip.last_block if variant else None)


def evaluate(experiment: str, overrides: list[str]) -> dict:
    cfg = load_config(experiment, overrides)
    if cfg.stages:
        raise ConfigError(
            f"'{experiment}' is a pipeline; evaluate one of its stages ({', '.join(cfg.stages)}) "
            f"with ckpt=<that stage's checkpoint>"
        )
    ensure_synthetic(cfg)
    roots = check_benchmarks(cfg, list(cfg.eval.benchmarks) or None)
    device = device_for(cfg)
    module = model_to_evaluate(cfg, overrides).to(device).eval()
    out = eval_dir(cfg.eval.ckpt, cfg)
    images: list = []
    results = {
        name: evaluate_benchmark(cfg, module, name, root, out, device, images) for name, root in roots.items()
    }
    merged = write_reports(out, results, title=f"{experiment}: zero-shot segmentation")
    to_wandb(cfg.logger.wandb, out, results, images, name=f"eval/{experiment}")
    for name, r in results.items():
        miou = "n/a" if r["mIoU"] is None else f"{100 * r['mIoU']:.2f}"
        print(f"{name:<14} mIoU {miou}  aAcc {100 * (r['aAcc'] or 0):.2f}  images {r['images']}")
    print(f"written: {out / 'results.json'} (and results.md, results.csv)")
    return merged
