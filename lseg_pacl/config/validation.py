"""What a config may hold (checked once, when it is loaded) and what each command needs from it.

The allowed values of a key that names a registered thing (an objective, a template set, a background rule...)
are read from that registry itself, so a new entry is allowed the moment it is registered.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lseg_pacl.errors import ConfigError


def choices() -> dict[str, tuple[str, ...]]:
    """Each key that names a registered thing -> the registered names (imported here, late: the registries
    live with the code they name, which itself reads configs)."""
    from data_modules.name_sets import NAME_SETS
    from lseg_pacl.evaluation.inference import MODES, REMAINDERS, RESIZE_BACKENDS, RESIZE_SIDES
    from lseg_pacl.evaluation.labels import BACKGROUND_RULES
    from lseg_pacl.evaluation.settings import PRECISIONS
    from lseg_pacl.methods import METHODS
    from lseg_pacl.models.prompts import TEMPLATE_SETS
    from lseg_pacl.models.spatial_reg import ACTIVATIONS, KINDS
    from lseg_pacl.objectives import OBJECTIVES
    from lseg_pacl.objectives.optim import OPTIMIZERS, SCHEDULES
    from lseg_pacl.training.data import TRAIN_FORMATS
    from lseg_pacl.training.loggers import WANDB_MODES

    return {
        "model.objective": tuple(OBJECTIVES),
        "model.clip.last_block": tuple(METHODS),
        "model.lseg.spatial_reg": tuple(KINDS),
        "model.lseg.activation": tuple(ACTIVATIONS),
        "model.lseg.templates": tuple(TEMPLATE_SETS),
        "optim.name": tuple(OPTIMIZERS),
        "optim.schedule": tuple(SCHEDULES),
        "data.train.format": tuple(TRAIN_FORMATS),
        "eval.templates": tuple(TEMPLATE_SETS),
        "eval.mode": tuple(MODES),
        "eval.resize": tuple(RESIZE_SIDES),
        "eval.background": tuple(BACKGROUND_RULES),
        "eval.names": tuple(NAME_SETS),
        "eval.remainder": REMAINDERS,
        "eval.resize_backend": RESIZE_BACKENDS,
        "eval.precision": PRECISIONS,
        "logger.wandb.mode": tuple(WANDB_MODES),
    }


# Keys every command needs set (not None), unless the experiment is a pipeline of others.
REQUIRED = ("model.objective", "model.clip.name")
# Unset keys allowed: None means "not given" for these.
OPTIONAL_CHOICES = ("data.train.format", "eval.precision")
# The eval.* keys a benchmark may set for itself (eval.per_benchmark.<name>): those of the protocol.
PER_BENCHMARK_KEYS = (
    "templates", "names", "mode", "short_side", "resize", "crop", "stride", "scales", "flip", "logit_scale",
    "background", "bg_threshold", "bg_entropy", "bg_area", "remainder", "resize_backend", "pamr_iterations",
    "pamr_dilations", "precision", "method_options",
)


def validate(cfg: DictConfig) -> None:
    """Every check that needs only the config: allowed values, ranges, benchmark names, consistency."""
    if cfg.stages:
        _validate_pipeline(cfg)
        return
    missing = [k for k in REQUIRED if OmegaConf.select(cfg, k) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set (in the experiment or as key=value)")
    for key, allowed in choices().items():
        value = OmegaConf.select(cfg, key)
        if value is None and key in OPTIONAL_CHOICES:
            continue
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; allowed: {', '.join(allowed)}")
    if cfg.model.objective == "lseg" and not cfg.model.lseg.backbone:
        raise ConfigError("model.objective=lseg needs model.lseg.backbone (e.g. vit_large_patch16_384)")
    if not 0 <= cfg.model.noun_prompt_templates <= 7:
        raise ConfigError(
            f"model.noun_prompt_templates={cfg.model.noun_prompt_templates}: must be 0 (off) to 7"
        )
    if cfg.model.pacl.temperature <= 0:
        raise ConfigError(f"model.pacl.temperature={cfg.model.pacl.temperature}: must be > 0")
    _validate_eval(cfg.eval)
    _validate_method(cfg)
    _validate_data(cfg.data)
    fmt = cfg.data.train.format
    if fmt is not None and (cfg.model.objective == "lseg") != (fmt in ("segmentation", "episodes")):
        raise ConfigError(
            f"model.objective={cfg.model.objective} with data.train.format={fmt}: lseg trains on "
            f"masks (format segmentation, or episodes); clip and pacl on captions (coco, shards)"
        )
    _resolvable(cfg)


def _validate_pipeline(cfg: DictConfig) -> None:
    from lseg_pacl.config.loading import experiment_file

    for stage in cfg.stages:
        experiment_file(stage)
    if cfg.resume not in (None, "last", "auto") and not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume={cfg.resume} is not a run directory")
    _resolvable(cfg)


def _resolvable(cfg: DictConfig) -> None:
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"cannot resolve config key '{getattr(exc, 'full_key', '?')}': {str(exc).splitlines()[0]}"
        ) from None


def _validate_eval(ev: DictConfig) -> None:
    from lseg_pacl.config.loading import eval_for
    from lseg_pacl.evaluation.diagnostics import ANALYSES

    unknown = sorted(set(ev.analysis) - set(ANALYSES))
    if unknown:
        raise ConfigError(f"eval.analysis: unknown {unknown}; known: {', '.join(ANALYSES)}")
    _known_benchmarks(*ev.benchmarks, *ev.class_names, *ev.per_benchmark)
    _protocol_values(ev, "eval")
    for name, values in ev.per_benchmark.items():
        extra = sorted(set(values or {}) - set(PER_BENCHMARK_KEYS))
        if extra:
            raise ConfigError(f"eval.per_benchmark.{name}: {extra} cannot differ per benchmark; these can: "
                              f"{', '.join(PER_BENCHMARK_KEYS)}")
        _protocol_values(eval_for(ev, name), f"eval.per_benchmark.{name}")


def _validate_method(cfg: DictConfig) -> None:
    """Training-free methods beyond a last block need the text at every window: only the clip objective has
    them; their options are checked against the method's own (on every benchmark a preset sets them)."""
    from lseg_pacl.config.loading import eval_for
    from lseg_pacl.methods import build_method
    from lseg_pacl.models.last_block import VARIANTS

    name = cfg.model.clip.last_block
    if cfg.model.objective != "clip" and name not in VARIANTS:
        raise ConfigError(f"model.clip.last_block={name} is a training-free method of the clip objective; "
                          f"{cfg.model.objective} takes a last block: {', '.join(VARIANTS)}")
    for where, e in [("eval", cfg.eval), *((f"eval.per_benchmark.{b}", eval_for(cfg.eval, b))
                                           for b in cfg.eval.per_benchmark)]:
        try:
            build_method(name, OmegaConf.to_container(e.method_options))
        except ValueError as exc:
            raise ConfigError(f"{where}.method_options: {exc}") from None


def _protocol_values(ev: DictConfig, where: str) -> None:
    if not ev.scales or any(x <= 0 for x in ev.scales) or not 0 < ev.stride <= ev.crop:
        raise ConfigError(f"{where}: scales must be positive and stride within 1..crop")
    for key, ok in (
        ("short_side", ev.short_side is None or ev.short_side > 0),
        ("max_images", ev.max_images is None or ev.max_images > 0),
        ("coherence_pairs", ev.coherence_pairs >= 2),
        ("bg_threshold", 0 <= ev.bg_threshold <= 1),
        ("bg_entropy", ev.bg_entropy > 0),
        ("bg_area", ev.bg_area is None or 0 <= ev.bg_area < 1),
        ("logit_scale", ev.logit_scale > 0),
        ("pictures", ev.pictures >= 0),
        ("pamr_iterations", ev.pamr_iterations >= 0),
        ("pamr_dilations", len(ev.pamr_dilations) > 0 and all(d > 0 for d in ev.pamr_dilations)),
    ):
        if not ok:
            raise ConfigError(f"{where}.{key}={ev[key]} is out of range")
    for key, allowed in choices().items():
        if key.startswith("eval.") and key.count(".") == 1:
            value = ev[key[5:]]
            if not (value is None and key in OPTIONAL_CHOICES) and value not in allowed:
                raise ConfigError(f"{where}.{key[5:]} is {value!r}; allowed: {', '.join(allowed)}")


def _known_benchmarks(*names: str) -> None:
    from data_modules.benchmarks import BENCHMARKS

    for name in names:
        if name not in BENCHMARKS:
            near = difflib.get_close_matches(str(name), list(BENCHMARKS), n=2)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(
                f"unknown benchmark '{name}'{hint} (data.val / eval); known: {', '.join(BENCHMARKS)}"
            )


def _validate_episodes(data: DictConfig) -> None:
    """Episode benchmarks are known, and data.fold is one of each one's folds."""
    from data_modules.episodes.folds import EPISODE_BENCHMARKS, fold_count

    if data.val.episodes and data.train.format not in (None, "episodes"):
        raise ConfigError(f"data.val.episodes is validated by episode training only (data.train.format="
                          f"episodes, not {data.train.format}); evaluate other models with eval.episodes")
    named = list(data.val.episodes) + ([data.train.dataset] if data.train.format == "episodes" else [])
    unknown = [n for n in named if n not in EPISODE_BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown episode benchmark(s) {', '.join(map(str, unknown))}; known: "
                          f"{', '.join(EPISODE_BENCHMARKS)}")
    if data.fold is not None:
        for name in named:
            if not 0 <= data.fold < fold_count(name):
                raise ConfigError(f"data.fold={data.fold}: {name} has folds 0..{fold_count(name) - 1}")
    count = data.episodes.test_episodes
    if data.episodes.size <= 0 or (count is not None and count <= 0):
        raise ConfigError("data.episodes.size and data.episodes.test_episodes must be > 0")


def _validate_data(data: DictConfig) -> None:
    if data.val.max_images is not None and data.val.max_images <= 0:
        raise ConfigError(f"data.val.max_images={data.val.max_images} must be > 0 (or null for all)")
    _known_benchmarks(*data.val.datasets, *data.val.roots)
    if not data.val.datasets and not data.val.episodes:
        raise ConfigError("data.val.datasets is empty: name at least one benchmark")
    _validate_episodes(data)
    if not 0 <= data.max_bad_fraction <= 1:
        raise ConfigError(f"data.max_bad_fraction={data.max_bad_fraction}: must be within 0..1")
    t = data.train
    if t.format == "segmentation" and t.dataset is not None:
        _known_benchmarks(t.dataset)
    if t.format == "shards":
        if not t.shards or not all(s.urls for s in t.shards):
            raise ConfigError(
                "data.train.format=shards needs data.train.shards: a list of {urls: [...], weight: w}"
            )
        if any(s.weight <= 0 for s in t.shards):
            raise ConfigError("data.train.shards: every weight must be > 0")
        if not t.samples_per_epoch or t.samples_per_epoch <= 0:
            raise ConfigError(
                "data.train.format=shards needs data.train.samples_per_epoch (the epoch length over "
                "all ranks: streams have no natural end, and every rank must run as many steps)"
            )
        if any(str(u).startswith("pipe:") for s in t.shards for u in s.urls):
            raise ConfigError("data.train.shards: pipe: URLs are not supported (they run a shell command)")


def training_needs(cfg: DictConfig) -> list[str]:
    """The keys training needs that this config leaves unset (a pipeline's stages are checked one by one)."""
    t = cfg.data.train
    keys = [
        "data.train.format",
        "data.train.image_size",
        "data.batch_size",
        "data.val.image_size",
        "optim.lr",
    ]
    if t.format in ("coco", "segmentation"):
        keys.append("data.train.split")
    if t.format == "segmentation":
        keys += ["data.train.dataset", "data.train.base_size"]
    return [k for k in keys if OmegaConf.select(cfg, k) is None]


def check_trainable(cfg: DictConfig) -> None:
    """A ConfigError naming every unset key training needs (an evaluation-only experiment states none)."""
    missing = training_needs(cfg)
    if missing:
        raise ConfigError(
            f"'{cfg.run.experiment}' cannot be trained: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set (an experiment states its recipe, e.g. "
            f"experiments/pacl_vitb16.yaml)"
        )
