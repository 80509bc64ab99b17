"""``lseg-pacl eval``: zero-shot segmentation of a checkpoint (loaded from the checkpoint alone) or of a
training-free model on any set of benchmarks, with the configured protocol (eval.*, optionally a preset).
``models=[A,B,...]`` evaluates several experiments (or checkpoints) in one process: training-free rows of one
CLIP under one image protocol share CLIP's first blocks (evaluation/evaluator.py). Each model writes
<its eval dir>/results.{json,md,csv}, optional predictions, panels and diagnostics (evaluation/).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lseg_pacl.config.loading import load_config, parse_overrides, to_plain
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.episode_eval import episode_key, evaluate_episodes
from lseg_pacl.evaluation.evaluator import Member, evaluate_members, protocol_key
from lseg_pacl.evaluation.report import to_wandb, write_reports
from lseg_pacl.evaluation.settings import device_for
from lseg_pacl.objectives import build_objective, load_objective
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.training.inputs import check_benchmarks, ensure_synthetic, episode_roots
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


def shares_clip(cfg: DictConfig) -> tuple | None:
    """Training-free CLIP rows with equal weights and geometry can share one built CLIP (None: cannot)."""
    if cfg.eval.ckpt or cfg.model.objective != "clip":
        return None
    c = cfg.model.clip
    return c.name, c.pretrained, c.image_size, c.pos_embed


@dataclass
class _Model:
    name: str
    cfg: DictConfig
    member: Member
    roots: dict[str, Path]


def model_configs(experiment: str | None, overrides: list[str]) -> list[tuple[str, DictConfig]]:
    """(label, config) per model: eval.models' entries (experiments, or checkpoints evaluated under
    ``experiment``'s protocol), else the experiment alone."""
    listed = [o for o in overrides if o.startswith("eval.models=")]
    rest = [o for o in overrides if o not in listed]
    models = list(OmegaConf.select(parse_overrides(listed[-1:]), "eval.models") or []) if listed else []
    if not models:
        if experiment is None:
            raise ConfigError("eval needs an experiment (lseg-pacl eval EXP ...) or models=[EXP,...]")
        return [(experiment, load_config(experiment, overrides))]
    models = list(map(str, models))
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ConfigError(f"models: {', '.join(twice)} named twice")
    out = []
    for entry in models:
        if entry.endswith(".ckpt"):
            if experiment is None:
                raise ConfigError(f"models: {entry} is a checkpoint: name the experiment whose protocol "
                                  f"it is evaluated with (lseg-pacl eval EXP models=[...])")
            out.append((Path(entry).stem, load_config(experiment, [*rest, f"eval.ckpt={entry}"])))
        else:
            out.append((entry, load_config(entry, rest)))
    return out


def _build(models: list[tuple[str, DictConfig]], overrides: list[str], device: torch.device) -> list[_Model]:
    built: dict[tuple, ZeroShotObjective] = {}
    out = []
    for label, cfg in models:
        if cfg.stages:
            raise ConfigError(
                f"'{label}' is a pipeline; evaluate one of its stages ({', '.join(cfg.stages)}) "
                f"with ckpt=<that stage's checkpoint>"
            )
        ensure_synthetic(cfg)
        roots = check_benchmarks(cfg, list(cfg.eval.benchmarks) or None)
        key = shares_clip(cfg)
        if key is not None and key in built:
            module = built[key]
        else:
            module = model_to_evaluate(cfg, overrides).to(device).eval()
            if key is not None:
                built[key] = module
        method = cfg.model.clip.last_block if key is not None else None
        out.append(_Model(label, cfg, Member(cfg, module, eval_dir(cfg.eval.ckpt, cfg), method), roots))
    return out


def evaluate(experiment: str | None, overrides: list[str]) -> dict:
    configs = model_configs(experiment, overrides)
    device = device_for(configs[0][1])
    models = _build(configs, overrides, device)
    results: dict[str, dict] = defaultdict(dict)
    for name in dict.fromkeys(n for m in models for n in m.roots):
        groups: dict[tuple, list[_Model]] = defaultdict(list)
        for m in (m for m in models if name in m.roots):
            module = m.member.module
            together = m.member.method is not None
            key = (id(module), m.roots[name], protocol_key(m.cfg, name, module.patch_size, device)) \
                if together else (id(m),)
            groups[key].append(m)
        for group in groups.values():
            scored = evaluate_members([m.member for m in group], name, group[0].roots[name], device)
            for m, r in zip(group, scored, strict=True):
                results[m.name][name] = r
    for m in models:
        for name, root in episode_roots(m.cfg, list(m.cfg.eval.episodes or m.cfg.data.val.episodes)).items():
            if m.member.method not in (None, "plain"):
                raise ConfigError(f"{m.name}: episode benchmarks score checkpoints and plain models; the "
                                  f"training-free row '{m.member.method}' is not wired to them")
            results[m.name][episode_key(name, m.cfg.data.fold)] = evaluate_episodes(
                m.cfg, m.member.module, name, root, device)
    merged = {}
    for m in models:
        out = m.member.out
        merged[m.name] = write_reports(out, results[m.name], title=f"{m.name}: zero-shot segmentation")
        to_wandb(m.cfg.logger.wandb, out, results[m.name], m.member.wandb_images, name=f"eval/{m.name}")
        for name, r in results[m.name].items():
            miou = "n/a" if r["mIoU"] is None else f"{100 * r['mIoU']:.2f}"
            second = (f"FB-IoU {100 * r['FB-IoU']:.2f}  episodes" if "FB-IoU" in r
                      else f"aAcc {100 * (r['aAcc'] or 0):.2f}  images")
            print(f"{m.name:<18} {name:<14} mIoU {miou}  {second} {r['images']}  "
                  f"protocol {r['protocol_hash']}")
        print(f"written: {out / 'results.json'} (and results.md, results.csv)")
    if len(models) > 1:
        dirs = ",".join(str(m.member.out) for m in models)
        print(f"the table of these results: lseg-pacl table runs={dirs}")
    return merged if len(models) > 1 else merged[models[0].name]
