"""``lseg-pacl data synth|classes|check|prepare``: write the synthetic world, list a dataset's classes,
check a dataset's files, write a benchmark's files from its original release (data_modules/)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from lseg_pacl.commands.options import key_values
from lseg_pacl.errors import BadDataError, ConfigError, MissingInputError


def _data_synth(options: list[str]) -> dict:
    from data_modules.synthetic import generate

    opts = key_values(options, {"out": str, "seed": int, "n_train": int, "n_val": int, "size": int})
    if "out" not in opts:
        raise ConfigError("data synth needs out=DIR")
    try:
        out = generate(opts.pop("out"), **opts)
    except (FileExistsError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return {"out": str(out), "manifest": json.loads((Path(out) / "manifest.json").read_text())}


def _dataset_name(opts: dict, action: str) -> str:
    from data_modules.benchmarks import DATASET_NAMES

    name = opts.get("dataset")
    if name not in DATASET_NAMES:
        raise ConfigError(
            f"data {action} needs dataset=NAME with NAME one of: {', '.join(DATASET_NAMES)}"
            + (f" (got '{name}')" if name else "")
        )
    return name


def _data_classes(options: list[str]) -> list[str]:
    from data_modules.benchmarks import BENCHMARKS, dataset_dir

    opts = key_values(options, {"dataset": str, "root": str})
    name = _dataset_name(opts, "classes")
    if name not in BENCHMARKS:
        raise ConfigError(f"{name} is caption data: it has no class list")
    bench = BENCHMARKS[name]
    root = opts.get("root") or ("data/synthetic" if bench.classes is None else None)
    if root and bench.classes is None and not Path(root).is_dir():
        raise MissingInputError(
            f"{root} does not exist: pass root=DIR, the folder holding {name}'s "
            f"classnames.json and {bench.folder}/"
        )
    try:
        return list(bench.class_names(dataset_dir(bench, root) if root else None))
    except ValueError as exc:
        raise MissingInputError(str(exc)) from None


def _data_check(options: list[str]) -> dict:
    from data_modules.check import check_dataset, check_episodes
    from data_modules.episodes.folds import EPISODE_BENCHMARKS

    opts = key_values(options, {"dataset": str, "root": str, "split": str, "workers": int, "fold": int,
                                "coco_lists": str})
    name = opts.get("dataset")
    episodes = name in EPISODE_BENCHMARKS and name != "synthetic"  # the world's masks: the dense check
    if not episodes:
        name = _dataset_name(opts, "check")
    if "root" not in opts:
        raise ConfigError("data check needs root=DIR (the dataset's folder, or the folder holding it)")
    if not episodes and ("fold" in opts or "coco_lists" in opts):
        raise ConfigError(f"fold= and coco_lists= are options of the episode benchmarks "
                          f"({', '.join(EPISODE_BENCHMARKS)}), not of {name}")
    try:
        if episodes:
            return check_episodes(name, opts["root"], opts.get("split"), opts.get("fold"),
                                  opts.get("workers", 0), opts.get("coco_lists"))
        return check_dataset(name, opts["root"], opts.get("split"), opts.get("workers", 0))
    except (FileNotFoundError, ValueError) as exc:
        raise MissingInputError(str(exc)) from None
    except pickle.UnpicklingError as exc:
        raise BadDataError(str(exc)) from None


def _data_prepare(options: list[str]) -> dict:
    """``prepare NAME key=value ...`` (or ``dataset=NAME``): the converter's JSON summary."""
    from data_modules.prepare import PREPARERS, InputError

    words = list(options)
    name = words.pop(0) if words and "=" not in words[0] else None
    usage = " | ".join(f"lseg-pacl data prepare {p.usage}" for p in PREPARERS.values())
    if name is None and any(w.startswith("dataset=") for w in words):
        name = next(w for w in words if w.startswith("dataset=")).removeprefix("dataset=")
        words = [w for w in words if not w.startswith("dataset=")]
    if name not in PREPARERS:
        raise ConfigError(
            f"data prepare needs a dataset name, one of: {', '.join(PREPARERS)}"
            + (f" (got '{name}')" if name else "") + f"; usage: {usage}"
        )
    prep = PREPARERS[name]
    opts = key_values(words, prep.options)
    absent = [k for k in prep.required if k not in opts]
    if absent:
        raise ConfigError(f"data prepare {name} needs {', '.join(f'{k}=DIR' for k in absent)}: "
                          f"lseg-pacl data prepare {prep.usage}")
    try:
        return prep.run(**opts)
    except FileNotFoundError as exc:
        raise MissingInputError(str(exc)) from None
    except InputError as exc:
        raise BadDataError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


DATA_ACTIONS = {
    "synth": _data_synth,
    "classes": _data_classes,
    "check": _data_check,
    "prepare": _data_prepare,
}
