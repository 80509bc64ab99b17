"""The experiment schema and the one place configuration is read.

An experiment is built in layers: schema defaults <- experiments/<base>.yaml (recursively) <- experiments/<EXP>.yaml
<- command-line ``key=value`` overrides (OmegaConf's dotlist form, as W&B sweep agents write them). The result is
a struct config: an unknown key or a value of the wrong type is a ``ConfigError`` naming the key and the closest
valid keys, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lseg_pacl.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def experiments_dir() -> Path:
    """Where experiment YAMLs live: $LSEG_PACL_EXPERIMENTS, else the repository's experiments/."""
    return Path(os.environ.get("LSEG_PACL_EXPERIMENTS", REPO_ROOT / "experiments"))


# ----------------------------------------------------------------------------------------------- schema


@dataclass
class ClipConfig:
    """Which open_clip model and weights; ``pretrained`` is a tag (e.g. openai), a local file, or null (random)."""

    name: str = "lseg-tiny-vit"
    pretrained: str | None = None
    image_size: int | None = None  # None: the model config's own size
    # The last vision block for dense (per-patch) features: plain (CLIP) or a training-free variant
    # (maskclip | sclip | clearclip | naclip; models/last_block.py). Pooled embeddings always use plain.
    last_block: str = "plain"


@dataclass
class PaclConfig:
    hidden_dim: int = 512
    # Patch-softmax temperature: a = softmax(s / temperature). Raw cosines (temperature 1) give almost uniform
    # weights, so the default sharpens them tenfold (method notes, section 2).
    temperature: float = 0.1
    learn_temperature: bool = False
    # Start the skip branch of the embedder as CLIP's own projection (and the main branch at zero), so PACL starts
    # from CLIP's own dense features. Off by default: on the demo it converged worse than a fresh embedder.
    init_skip_from_proj: bool = False
    freeze_vision: bool = True
    freeze_text: bool = True


@dataclass
class LsegConfig:
    """LSeg (method notes, section 1): a DPT image encoder on a timm ViT against the frozen CLIP text encoder."""

    backbone: str = "vit_large_patch16_384"  # vit_base_patch32_384 | vit_base_patch16_384 | vit_tiny_lseg
    backbone_pretrained: str | None = "imagenet"  # timm's ImageNet weights, a local file, or null (random)
    features: int = 256  # DPT fusion width
    spatial_reg: str = "none"  # none | depthwise | bottleneck
    block_depth: int = 2
    activation: str = "lrelu"  # relu | lrelu | tanh
    logit_scale: float = 14.285714  # 1 / 0.07, the official constant
    learn_logit_scale: bool = False
    templates: str = "raw"  # the training labels' prompts: raw | pacl7 | imagenet80
    head_lr_mult: float = 10.0  # decoder and head learning rate over the backbone's
    input_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    input_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])


@dataclass
class ModelConfig:
    objective: str = "pacl"  # clip | pacl | lseg
    # PACL's augmentation: each caption noun in this many of the 7 templates as extra texts; 0 turns it off
    # (objectives/texts.py). 7 is PACL's recipe.
    noun_prompt_templates: int = 7
    clip: ClipConfig = field(default_factory=ClipConfig)
    pacl: PaclConfig = field(default_factory=PaclConfig)
    lseg: LsegConfig = field(default_factory=LsegConfig)
    logit_scale_init: float = 14.285714  # 1 / 0.07, CLIP's initial value
    learn_logit_scale: bool = True
    logit_scale_max: float = 100.0


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    schedule: str = "cosine"  # cosine | constant | poly
    poly_power: float = 0.9
    momentum: float = 0.9  # sgd
    # A non-finite loss on any rank: every rank skips that step (counted as train/nonfinite_steps); this many in
    # a row stop the run with a message.
    max_nonfinite_steps: int = 10
    warmup_steps: int = 0


@dataclass
class SyntheticConfig:
    """The embedded world (data_modules/synthetic.py): generated into ``out`` when a run needs it."""

    enabled: bool = False  # generate the world (if absent) before the run starts
    out: str = "data/synthetic"
    seed: int = 0
    n_train: int = 4000
    n_val: int = 200
    size: int = 64


@dataclass
class ShardSourceConfig:
    """One caption source in img2dataset's webdataset layout: brace patterns or lists, local paths or URLs."""

    urls: list[str] = field(default_factory=list)  # quote brace patterns in YAML: ['/data/cc3m/{00000..00331}.tar']
    weight: float = 1.0  # mixing weight among sources, per sample


@dataclass
class TrainDataConfig:
    # coco: annotations/captions_<split>.json beside <split>/*.jpg | shards | segmentation (masks of `dataset`)
    format: str = "coco"
    root: str | None = None  # coco: the folder holding annotations/; segmentation: the dataset's folder
    split: str = "train2017"
    dataset: str = "ade20k"  # format=segmentation: the benchmark whose training split (and labels) to learn
    base_size: int = 520  # format=segmentation: LSeg's recipe, long side drawn from scale_range x base_size
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    shards: list[ShardSourceConfig] = field(default_factory=list)  # format=shards
    samples_per_epoch: int | None = None  # format=shards (required): the epoch length, over all ranks
    resampled: bool = True  # shards drawn with replacement (else each pass reads every shard once)
    shuffle_buffer: int = 1000  # samples (raw bytes) shuffled within each DataLoader worker and source
    image_size: int = 224  # the training crop (segmentation: LSeg's 480)
    crop_scale_min: float = 0.5  # RandomResizedCrop lower scale bound (caption formats; 1.0: no crop)
    hflip: bool = True
    # PACL with frozen encoders: keep the frozen patch tokens and text embeddings (float16) on disk and read them
    # in later epochs (feature_caching.py). The image side needs a deterministic transform (crop_scale_min 1.0,
    # hflip false) and coco-format data; otherwise only texts are cached, and the log says why.
    feature_cache: bool = False
    feature_cache_dir: str | None = None  # None: <run.root>/feature_cache (keyed, shared by runs safely)


@dataclass
class SegDataConfig:
    # Zero-shot validation benchmarks, one DataLoader each: ade20k voc20 voc21 context59 context60 coco_stuff171
    # synthetic. val/mIoU is their mean; val/mIoU/<name> each one.
    datasets: list[str] = field(default_factory=lambda: ["ade20k"])
    roots: dict[str, str] = field(default_factory=dict)  # per-dataset folder (None: <data.root>/<standard name>)
    split: str | None = None  # None: each dataset's validation split; a value applies to every dataset
    image_size: int = 224  # resize the short side, centre-crop a square (the full protocol comes with `eval`)
    max_images: int | None = None


@dataclass
class DataConfig:
    root: str | None = None  # the folder holding every dataset under its standard name (None: $DATA_ROOT)
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    val: SegDataConfig = field(default_factory=SegDataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    batch_size: int = 64
    val_batch_size: int = 32
    num_workers: int = 4
    # Bad samples are counted, logged and skipped; the run stops once more than this share of the samples seen
    # (checked from 100 samples on, and at every epoch end) was bad.
    max_bad_fraction: float = 0.01


@dataclass
class EvalConfig:
    """``lseg-pacl eval``: which weights, which benchmarks, and the inference protocol (evaluation/*)."""

    ckpt: str | None = None  # a checkpoint of this project; None: the experiment's own (training-free) model
    benchmarks: list[str] = field(default_factory=list)  # empty: data.val.datasets
    templates: str = "pacl7"  # raw | pacl7 | imagenet80 (each prompt normalised, averaged, re-normalised)
    class_names: dict[str, str] = field(default_factory=dict)  # benchmark -> synonym file (evaluation/labels.py)
    mode: str = "whole"  # whole | slide
    short_side: int | None = None  # resize the short side to this (None: data.val.image_size)
    resize: str = "short"  # short | long: which side short_side sets (LSeg's protocol: long side 520 x scale)
    crop: int = 224  # slide window
    stride: int = 112
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    logit_scale: float = 40.0  # cosine x this, softmax: the probabilities the background rules look at
    background: str = "threshold"  # text | threshold | entropy: for benchmarks with a background class
    bg_threshold: float = 0.1
    bg_entropy: float = 1.5
    max_images: int | None = None  # per benchmark (None: all)
    save_predictions: bool = False  # eval/predictions/<benchmark>/<stem>.png, the format `score` reads
    pictures: int = 4  # image | ground truth | prediction panels per benchmark (eval/pictures/)
    analysis: list[str] = field(default_factory=list)  # patch_accuracy | coherence (PACL's diagnostics)
    coherence_pairs: int = 20000  # patch pairs sampled per benchmark for the coherence ROC-AUC


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer as keyword arguments (null values are left to Lightning's defaults)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_steps: int = -1
    max_epochs: int | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 1  # metrics.csv holds every step
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    num_sanity_val_steps: int | None = 0
    deterministic: Any = None
    benchmark: bool | None = None
    enable_progress_bar: bool = True


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled; the API key only ever comes from the environment
    project: str = "lseg_pacl"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class RunConfig:
    root: str = "runs"  # runs/<experiment>/<run id>/
    dir: str | None = None  # an explicit run directory instead
    id: str | None = None  # set by the runner (also the W&B run id)
    experiment: str | None = None  # set by the loader
    keep_last: int = 2  # training states kept: last.ckpt and the newest keep_last - 1 before it (checkpointing.py)


@dataclass
class ExperimentConfig:
    base: str | None = None
    description: str = ""
    # A pipeline: run these experiments in order in one run directory; a stage may take the CLIP weights of the
    # stage before it with model.clip.pretrained=previous_stage.
    stages: list[str] = field(default_factory=list)
    seed: int = 0
    # A run directory; "last" (the newest run of this experiment); "auto" (continue run.dir / run.id / the SLURM
    # job's run when it has a checkpoint, else start it: what a requeued job passes).
    resume: str | None = None
    run: RunConfig = field(default_factory=RunConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES = {
    "model.objective": ("clip", "pacl", "lseg"),
    "model.lseg.spatial_reg": ("none", "depthwise", "bottleneck"),
    "model.lseg.activation": ("relu", "lrelu", "tanh"),
    "model.lseg.templates": ("raw", "pacl7", "imagenet80"),
    "optim.name": ("adamw", "sgd"),
    "optim.schedule": ("cosine", "constant", "poly"),
    "data.train.format": ("coco", "shards", "segmentation"),
    "eval.templates": ("raw", "pacl7", "imagenet80"),
    "eval.mode": ("whole", "slide"),
    "eval.resize": ("short", "long"),
    "eval.background": ("text", "threshold", "entropy"),
    "model.clip.last_block": ("plain", "maskclip", "sclip", "clearclip", "naclip"),
    "logger.wandb.mode": ("offline", "online", "disabled"),
}

# ----------------------------------------------------------------------------------------------- loading


def schema() -> DictConfig:
    cfg = OmegaConf.structured(ExperimentConfig)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.data.val.roots, False)  # keyed by benchmark name (checked in validate)
    OmegaConf.set_struct(cfg.eval.class_names, False)
    return cfg


def valid_keys(node: Any = None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (leaves and sections), for suggestions."""
    node = schema() if node is None else node
    keys = []
    for k, v in node.items_ex(resolve=False) if isinstance(node, DictConfig) else []:
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys.extend(valid_keys(v, full + "."))
    return keys


def closest_keys(key: str, n: int = 3) -> list[str]:
    keys = valid_keys()
    hits = difflib.get_close_matches(key, keys, n=n, cutoff=0.5)
    if not hits:  # compare the last component too: "trainer.max_stepz" vs "max_steps"
        leaf = key.rsplit(".", 1)[-1]
        hits = [k for k in keys if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], cutoff=0.7)][:n]
    return hits


def _explain(exc: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or "?"
    first = str(exc).splitlines()[0]
    if "not in" in first or "Missing key" in first or "Key '" in first:
        near = closest_keys(key)
        hint = f"; closest valid keys: {', '.join(near)}" if near else ""
        return ConfigError(f"unknown config key '{key}' ({where}){hint}")
    return ConfigError(f"bad value for config key '{key}' ({where}): {first}")


def _merge(cfg: DictConfig, other: Any, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)
    except OmegaConfBaseException as exc:
        raise _explain(exc, where) from None


def available_experiments() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml"))


def _experiment_file(name: str) -> Path:
    path = experiments_dir() / f"{name}.yaml"
    if not path.is_file():
        near = difflib.get_close_matches(name, available_experiments(), n=3)
        hint = f"; did you mean: {', '.join(near)}" if near else ""
        raise ConfigError(
            f"no experiment named '{name}' in {experiments_dir()}{hint}. "
            f"Available: {', '.join(available_experiments())}"
        )
    return path


def _read_yaml(path: Path) -> DictConfig:
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml syntax errors carry the line
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return node


def _layers(name: str, seen: tuple[str, ...] = ()) -> list[tuple[Path, DictConfig]]:
    """The experiment's files from the most basic base to itself."""
    if name in seen:
        raise ConfigError(f"experiment base cycle: {' -> '.join((*seen, name))}")
    path = _experiment_file(name)
    node = _read_yaml(path)
    base = node.get("base")
    below = _layers(str(base), (*seen, name)) if base else []
    return [*below, (path, node)]


def parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        hint = " (quote values holding braces or colons, e.g. urls: ['/d/{00000..00009}.tar'])" \
            if isinstance(exc, yaml.YAMLError) else ""
        raise ConfigError(f"cannot parse overrides {overrides}: {str(exc).splitlines()[0]}{hint}") from None


def validate(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; allowed: {', '.join(allowed)}")
    if not 0 <= cfg.model.noun_prompt_templates <= 7:
        raise ConfigError(f"model.noun_prompt_templates={cfg.model.noun_prompt_templates}: must be 0 (off) to 7")
    _validate_data(cfg.data, cfg.eval)
    if (cfg.model.objective == "lseg") != (cfg.data.train.format == "segmentation"):
        raise ConfigError(f"model.objective={cfg.model.objective} with data.train.format={cfg.data.train.format}: "
                          f"lseg trains on masks (format segmentation); clip and pacl on captions (coco, shards)")
    if cfg.model.pacl.temperature <= 0:
        raise ConfigError(f"model.pacl.temperature={cfg.model.pacl.temperature}: must be > 0")
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config key '{getattr(exc, 'full_key', '?')}': "
                          f"{str(exc).splitlines()[0]}") from None
    for stage in cfg.stages:
        _experiment_file(stage)
    if cfg.stages and cfg.resume not in (None, "last", "auto") and not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume={cfg.resume} is not a run directory")


def _validate_data(data: DictConfig, ev: DictConfig) -> None:
    from data_modules.benchmarks import BENCHMARKS

    unknown = sorted(set(ev.analysis) - {"patch_accuracy", "coherence"})
    if unknown:
        raise ConfigError(f"eval.analysis: unknown {unknown}; known: patch_accuracy, coherence")
    if not ev.scales or any(x <= 0 for x in ev.scales) or not 0 < ev.stride <= ev.crop:
        raise ConfigError("eval.scales must be positive and eval.stride within 1..eval.crop")
    for key, ok in (("short_side", ev.short_side is None or ev.short_side > 0),
                    ("max_images", ev.max_images is None or ev.max_images > 0),
                    ("coherence_pairs", ev.coherence_pairs >= 2), ("bg_threshold", 0 <= ev.bg_threshold <= 1),
                    ("bg_entropy", ev.bg_entropy > 0), ("logit_scale", ev.logit_scale > 0),
                    ("pictures", ev.pictures >= 0)):
        if not ok:
            raise ConfigError(f"eval.{key}={ev[key]} is out of range")
    if data.val.max_images is not None and data.val.max_images <= 0:
        raise ConfigError(f"data.val.max_images={data.val.max_images} must be > 0 (or null for all)")
    for name in (*data.val.datasets, *data.val.roots, *ev.benchmarks, *ev.class_names):
        if name not in BENCHMARKS:
            near = difflib.get_close_matches(str(name), list(BENCHMARKS), n=2)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"unknown benchmark '{name}'{hint} (data.val / eval); known: {', '.join(BENCHMARKS)}")
    if not data.val.datasets:
        raise ConfigError("data.val.datasets is empty: name at least one benchmark")
    if not 0 <= data.max_bad_fraction <= 1:
        raise ConfigError(f"data.max_bad_fraction={data.max_bad_fraction}: must be within 0..1")
    t = data.train
    if t.format == "segmentation" and t.dataset not in BENCHMARKS:
        raise ConfigError(f"data.train.dataset={t.dataset}: unknown benchmark; known: {', '.join(BENCHMARKS)}")
    if t.format == "shards":
        if not t.shards or not all(s.urls for s in t.shards):
            raise ConfigError("data.train.format=shards needs data.train.shards: a list of {urls: [...], weight: w}")
        if any(s.weight <= 0 for s in t.shards):
            raise ConfigError("data.train.shards: every weight must be > 0")
        if not t.samples_per_epoch or t.samples_per_epoch <= 0:
            raise ConfigError("data.train.format=shards needs data.train.samples_per_epoch (the epoch length over "
                              "all ranks: streams have no natural end, and every rank must run as many steps)")
        if any(str(u).startswith("pipe:") for s in t.shards for u in s.urls):
            raise ConfigError("data.train.shards: pipe: URLs are not supported (they run a shell command)")


def load_config(experiment: str, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- base experiments <- the experiment <- overrides; validated and read-only."""
    cfg = schema()
    for path, node in _layers(experiment):
        cfg = _merge(cfg, node, str(path))
    cfg = _merge(cfg, parse_overrides(overrides or []), "command line")
    cfg.run.experiment = experiment
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def merge_overrides(cfg: DictConfig, overrides: list[str], where: str = "command line") -> DictConfig:
    """A copy of a loaded config with more overrides applied (e.g. a pipeline stage's links)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    base = schema()
    out = _merge(base, out, "saved config")
    out = _merge(out, parse_overrides(overrides), where)
    validate(out)
    OmegaConf.set_readonly(out, True)
    return out


def migrate(node: DictConfig) -> DictConfig:
    """Older saved configs in the current schema: data.val.{dataset,root} became data.val.{datasets,roots}."""
    val = OmegaConf.select(node, "data.val")
    if isinstance(val, DictConfig) and "dataset" in val:
        name, root = val.pop("dataset"), val.pop("root", None)
        val.datasets = [name]
        if root:
            val.roots = {name: root}
    return node


# What a resumed run may change: how long it trains, how it validates and logs, where it writes. Anything else
# (model, data, seed, optimizer, devices, workers, precision, accumulation) is refused: it would change what the
# checkpoint was trained on, fail to restore (optimizer state, a stream's per-worker position), or be overwritten
# by the restored state without effect (learning rates).
RESUME_MAY_CHANGE = ("trainer.max_steps", "trainer.max_epochs", "trainer.val_check_interval",
                     "trainer.check_val_every_n_epoch", "trainer.limit_val_batches", "trainer.num_sanity_val_steps",
                     "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                     "logger.", "eval.", "run.", "resume", "description", "base", "data.val_batch_size",
                     "data.val.", "data.max_bad_fraction", "optim.max_nonfinite_steps")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()} or {
            prefix[:-1]: {}}
    return {prefix[:-1]: node}


def resume_changes(saved: DictConfig, now: DictConfig) -> tuple[list[str], list[str]]:
    """(refused, allowed): the keys whose values differ between a run's saved config and its resumed one."""
    a = _flat(OmegaConf.to_container(saved, resolve=False))
    b = _flat(OmegaConf.to_container(now, resolve=False))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    allowed = [k for k in changed if k.startswith(RESUME_MAY_CHANGE)]
    return [k for k in changed if k not in allowed], allowed


def load_saved(path: Path) -> DictConfig:
    """A run's config.yaml, checked against the current schema."""
    return _merge(schema(), migrate(_read_yaml(path)), str(path))


def to_plain(cfg: DictConfig) -> dict:
    """Plain containers only: Lightning 2.6 loads checkpoints with weights_only=True."""
    return OmegaConf.to_container(cfg, resolve=True)


def from_plain(data: dict) -> DictConfig:
    return _merge(schema(), migrate(OmegaConf.create(data)), "checkpoint hyperparameters")


def data_root(explicit: str | None, common: str | None, sub: str, key: str) -> Path:
    """An explicit root, else <data.root>/<sub>, else $DATA_ROOT/<sub>; an error saying what to set otherwise."""
    if explicit:
        return Path(explicit).expanduser()
    base = common or os.environ.get("DATA_ROOT")
    if base:
        return Path(base).expanduser() / sub
    raise ConfigError(f"no dataset root given for {sub}: pass {key}=DIR, or data.root=DIR, or set the DATA_ROOT "
                      f"environment variable (then <root>/{sub} is used)")
