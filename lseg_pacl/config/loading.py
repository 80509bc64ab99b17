"""The one place configuration is read: experiment files and command-line overrides, merged once.

An experiment is built in layers: schema defaults <- its bases (``base: a`` or ``base: [a, b]``, each with its
own bases first, every file once) <- experiments/<EXP>.yaml <- command-line ``key=value`` overrides
(OmegaConf's dotlist form, as W&B sweep agents write them). The result is a read-only struct config: an
unknown key or a value of the wrong type is a ``ConfigError`` naming the key and the closest valid keys (exit
code 2).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lseg_pacl.config.schema import ExperimentConfig
from lseg_pacl.config.validation import validate
from lseg_pacl.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def experiments_dir() -> Path:
    """Where experiment YAMLs live: $LSEG_PACL_EXPERIMENTS, else the repository's experiments/."""
    return Path(os.environ.get("LSEG_PACL_EXPERIMENTS", REPO_ROOT / "experiments"))


def schema() -> DictConfig:
    cfg = OmegaConf.structured(ExperimentConfig)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.data.val.roots, False)  # keyed by benchmark name (checked in validate)
    OmegaConf.set_struct(cfg.eval.class_names, False)
    OmegaConf.set_struct(cfg.eval.per_benchmark, False)  # keyed by benchmark name (checked in validate)
    OmegaConf.set_struct(cfg.eval.method_options, False)  # the method's own keys (checked in validate)
    return cfg


# ----------------------------------------------------------------------------------------------- key errors


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


# ----------------------------------------------------------------------------------------------- files


def available_experiments() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml"))


def experiment_file(name: str) -> Path:
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


def _bases(node: DictConfig, path: Path) -> list[str]:
    base = node.get("base")
    if base is None:
        return []
    names = [base] if isinstance(base, str) else list(base) if OmegaConf.is_list(base) else None
    if names is None or not all(isinstance(b, str) and b for b in names):
        raise ConfigError(f"{path}: base must be an experiment name or a list of them, got {base!r}")
    return names


def layers(
    name: str, seen: tuple[str, ...] = (), done: set[str] | None = None
) -> list[tuple[Path, DictConfig]]:
    """The experiment's files in merge order: each base's layers (depth first, left to right), then the file
    itself; a file reached twice (two bases sharing one) is merged once, where it is first reached."""
    if name in seen:
        raise ConfigError(f"experiment base cycle: {' -> '.join((*seen, name))}")
    done = set() if done is None else done
    path = experiment_file(name)
    node = _read_yaml(path)
    out: list[tuple[Path, DictConfig]] = []
    for base in _bases(node, path):
        if base not in done:
            out += layers(base, (*seen, name), done)
    done.add(name)
    return [*out, (path, node)]


def parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        hint = (
            " (quote values holding braces or colons, e.g. urls: ['/d/{00000..00009}.tar'])"
            if isinstance(exc, yaml.YAMLError)
            else ""
        )
        raise ConfigError(f"cannot parse overrides {overrides}: {str(exc).splitlines()[0]}{hint}") from None


def _finish(cfg: DictConfig) -> DictConfig:
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


# ----------------------------------------------------------------------------------------------- configs


def presets_dir() -> Path:
    return experiments_dir() / "presets"


def method_of(cfg: DictConfig) -> str:
    """The method a preset is chosen for: a training-free row's last block (plain CLIP: clip), else the
    objective."""
    m = cfg.model
    if m.objective == "clip":
        return "clip" if m.clip.last_block == "plain" else m.clip.last_block
    return str(m.objective)


def preset_file(preset: str, method: str) -> Path:
    """experiments/presets/<preset>/<method>.yaml (a method's own), else experiments/presets/<preset>.yaml
    (one for every method)."""
    for path in (presets_dir() / preset / f"{method}.yaml", presets_dir() / f"{preset}.yaml"):
        if path.is_file():
            return path
    known = sorted({p.stem for p in presets_dir().glob("*.yaml")}
                   | {p.name for p in presets_dir().glob("*/")})
    own = sorted(p.stem for p in (presets_dir() / preset).glob("*.yaml"))
    raise ConfigError(
        f"no '{preset}' preset for {method} in {presets_dir()}"
        + (f" (that preset covers: {', '.join(own)})" if own else f"; presets: {', '.join(known)}")
    )


def preset_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, DictConfig]]:
    """A preset file after the presets it names as ``base`` (in its own folder), e.g. a method whose paper row
    is another method's harness; ``base`` itself is not carried over."""
    if path in seen:
        raise ConfigError(f"preset base cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    node = _read_yaml(path)
    out: list[tuple[Path, DictConfig]] = []
    for base in _bases(node, path):
        out += preset_layers(path.parent / f"{base}.yaml", (*seen, path))
    node.pop("base", None)
    return [*out, (path, node)]


def load_config(experiment: str, overrides: list[str] | None = None) -> DictConfig:
    """Schema <- base experiments <- the experiment <- eval.preset's file <- overrides, merged once; validated
    and read-only. The preset (named in the experiment or on the command line) is chosen for the method the
    merged config describes."""
    cfg = schema()
    for path, node in layers(experiment):
        cfg = _merge(cfg, node, str(path))
    command = parse_overrides(overrides or [])
    preset = _merge(cfg, command, "command line")
    if preset.eval.preset:
        for path, node in preset_layers(preset_file(preset.eval.preset, method_of(preset))):
            cfg = _merge(cfg, node, str(path))
    cfg = _merge(cfg, command, "command line")
    cfg.run.experiment = experiment
    return _finish(cfg)


def migrate(node: DictConfig) -> DictConfig:
    """Older saved configs in the current schema: data.val.{dataset,root} became data.val.{datasets,roots}."""
    val = OmegaConf.select(node, "data.val")
    if isinstance(val, DictConfig) and "dataset" in val:
        name, root = val.pop("dataset"), val.pop("root", None)
        val.datasets = [name]
        if root:
            val.roots = {name: root}
    return node


def load_saved(path: Path) -> DictConfig:
    """A run's config.yaml, checked against the current schema (not validated: it is what the run used)."""
    return _merge(schema(), migrate(_read_yaml(path)), str(path))


def saved_with_overrides(saved: DictConfig, overrides: list[str], where: str = "command line") -> DictConfig:
    """A saved config (a run's, a checkpoint's) with this launch's overrides, merged once; validated,
    read-only."""
    cfg = _merge(schema(), OmegaConf.to_container(saved), "saved config")
    return _finish(_merge(cfg, parse_overrides(overrides), where))


def with_fields(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of a loaded config with a few dotted keys set by the program (the run plan's directory and id):
    typed assignments into the struct, no parsing and no second validation."""
    out = cfg.copy()
    OmegaConf.set_readonly(out, False)
    for key, value in values.items():
        OmegaConf.update(out, key, value, merge=False)
    OmegaConf.set_readonly(out, True)
    return out


def eval_for(ev: DictConfig, benchmark: str) -> DictConfig:
    """The eval.* section as it applies to one benchmark: eval.per_benchmark.<benchmark> over the rest."""
    own = ev.per_benchmark.get(benchmark) if ev.per_benchmark else None
    if not own:
        return ev
    return _merge(ev, own, f"eval.per_benchmark.{benchmark}")


def to_plain(cfg: DictConfig) -> dict:
    """Plain containers only: Lightning 2.6 loads checkpoints with weights_only=True."""
    return OmegaConf.to_container(cfg, resolve=True)


def from_plain(data: dict) -> DictConfig:
    return _merge(schema(), migrate(OmegaConf.create(data)), "checkpoint hyperparameters")
