"""What a run's data and model both need, derived from the config before either is built: the images the model
takes (patch, normalisation), each validation benchmark's folder and class list (and each episode benchmark's
fold), and the training set's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from data_modules.benchmarks import benchmark
from data_modules.episodes.folds import class_names as episode_class_names
from data_modules.episodes.folds import fold_classes
from lseg_pacl.errors import MissingInputError
from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.objectives import input_spec
from lseg_pacl.training.inputs import episode_roots, train_root, val_roots


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    folder: Path
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class EpisodeSpec:
    """An episode benchmark validated on one fold: every class name (episodes index them) and the fold's."""

    name: str
    folder: Path
    class_names: tuple[str, ...]
    fold: int
    fold_classes: tuple[int, ...]


@dataclass(frozen=True)
class RunSpec:
    inputs: InputSpec
    benchmarks: tuple[BenchmarkSpec, ...]  # the validation benchmarks, in DataLoader order
    train_root: Path | None  # the training data's folder (None: streamed shards)
    # mask-supervised training: the training set's class names, in id order (episodes: every class's)
    train_classes: tuple[str, ...]
    episodes: tuple[EpisodeSpec, ...] = ()  # episode benchmarks, validated after the dense ones

    @property
    def benchmark_classes(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(b.name, b.class_names) for b in self.benchmarks]

    @property
    def episode_classes(self) -> list[tuple[str, tuple[str, ...], tuple[int, ...]]]:
        return [(e.name, e.class_names, e.fold_classes) for e in self.episodes]


def _class_names(name: str, folder: Path) -> tuple[str, ...]:
    try:
        return tuple(benchmark(name).class_names(folder))
    except ValueError as exc:
        raise MissingInputError(str(exc)) from None


def run_spec(cfg: DictConfig) -> RunSpec:
    """The spec of a training run whose inputs were checked (training/inputs.py); sizes must fit the patch."""
    inputs = input_spec(cfg)
    inputs.check_size(cfg.data.val.image_size, "data.val.image_size")
    benchmarks = tuple(BenchmarkSpec(name, folder, _class_names(name, folder))
                       for name, folder in val_roots(cfg).items())
    episodes = tuple(episode_spec(name, folder, cfg.data.fold) for name, folder in episode_roots(cfg).items())
    t = cfg.data.train
    inputs.check_size(t.image_size, "data.train.image_size")
    root = train_root(cfg) if t.format != "shards" else None
    if t.format == "segmentation":
        classes = _class_names(t.dataset, root)
    elif t.format == "episodes":
        classes = tuple(episode_class_names(t.dataset))
    else:
        classes = ()
    return RunSpec(inputs, benchmarks, root, classes, episodes)


def episode_spec(name: str, folder: Path, fold: int) -> EpisodeSpec:
    names = tuple(episode_class_names(name))
    return EpisodeSpec(name, folder, names, fold, tuple(fold_classes(name, fold, "test")))
