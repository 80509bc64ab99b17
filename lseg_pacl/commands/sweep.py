"""``lseg-pacl sweep FILE``: run a W&B sweep file's grid one trial after another, without a W&B server.

The file is the one ``wandb sweep`` takes (``make sweep``): ``method: grid``, ``parameters`` with ``values``
or ``value``, and a ``command`` that runs ``lseg_pacl train EXP ... ${args_no_hyphens}``. Every combination
becomes ``key=value`` overrides, exactly as a W&B agent would pass them; a failing trial is reported and the
next runs. The trials' final metrics are written after every trial to
<run.root>/sweeps/<name>-<id>/results.json.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from omegaconf import OmegaConf

from lseg_pacl.errors import ConfigError


def read_sweep(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        sweep = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict):
        raise ConfigError(f"{path}: a sweep file needs a 'parameters' mapping")
    if sweep.get("method", "grid") != "grid":
        raise ConfigError(
            f"{path}: lseg-pacl sweep runs grids only (method: grid); random and bayes need a W&B "
            f"server (make sweep / make agent)"
        )
    return sweep


def sweep_command(sweep: dict) -> tuple[str, list[str]]:
    """(experiment, fixed overrides) from the command list: the word after 'train', then key=value words."""
    command = [str(w) for w in sweep.get("command", [])]
    if "train" not in command or command.index("train") + 1 >= len(command):
        raise ConfigError("the sweep's command must run `lseg_pacl train EXP ... ${args_no_hyphens}`")
    i = command.index("train")
    fixed = [w for w in command[i + 2 :] if "=" in w and not w.startswith("${")]
    return command[i + 1], fixed


def combinations(parameters: dict) -> list[list[str]]:
    """Every grid point as key=value words (``value`` fixed, ``values`` swept), in file order."""
    keys, choices = [], []
    for key, spec in parameters.items():
        if not isinstance(spec, dict) or not ("values" in spec or "value" in spec):
            raise ConfigError(f"sweep parameter '{key}' needs 'values: [...]' or 'value: ...'")
        keys.append(key)
        choices.append(list(spec["values"]) if "values" in spec else [spec["value"]])
    return [
        [f"{k}={_word(v)}" for k, v in zip(keys, combo, strict=True)] for combo in itertools.product(*choices)
    ]


def _word(value: object) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def run_sweep(path: str, extra: list[str], dry_run: bool = False) -> list[dict]:
    from lseg_pacl.training.runner import train

    sweep = read_sweep(path)
    experiment, fixed = sweep_command(sweep)
    fixed = [w for w in fixed if not w.startswith("logger.wandb.mode=online")]  # no server here
    trials = combinations(sweep["parameters"])
    metric = (sweep.get("metric") or {}).get("name", "val/mIoU")
    results: list[dict] = []
    out = _results_dir(sweep, path, [*fixed, *extra]) if not dry_run else None
    for n, params in enumerate(trials, 1):
        print(f"trial {n}/{len(trials)}: {experiment} {' '.join(params)}")
        if dry_run:
            results.append({"params": params})
            continue
        try:
            summary = train(experiment, [*fixed, *params, *extra])
            stages = summary.get("stages")
            final = list(stages.values())[-1].get("final", {}) if stages else summary.get("final", {})
            results.append({"params": params, "run_dir": summary["run_dir"], metric: final.get(metric)})
        except Exception as exc:  # noqa: BLE001 - one failing trial must not end the sweep
            print(f"trial {n} failed: {type(exc).__name__}: {exc}")
            results.append({"params": params, "error": f"{type(exc).__name__}: {exc}"})
        (out / "results.json").write_text(
            json.dumps(results, indent=2), encoding="utf-8"
        )  # after every trial
    if out is not None:
        for r in results:
            shown = r.get(metric)
            print(
                f"{' '.join(r['params']):<60} {metric}={shown if shown is None else round(shown, 4)}"
                + (f"  (failed: {r['error']})" if "error" in r else "")
            )
        print(f"written: {out / 'results.json'}")
    return results


def _results_dir(sweep: dict, path: str, overrides: list[str]) -> Path:
    """<run.root>/sweeps/<name>-<id> (run.root from the overrides, else runs/)."""
    from lseg_pacl.training.plan import new_run_id

    root = next((w.split("=", 1)[1] for w in reversed(overrides) if w.startswith("run.root=")), "runs")
    out = Path(root) / "sweeps" / f"{sweep.get('name', Path(path).stem)}-{new_run_id()}"
    out.mkdir(parents=True, exist_ok=True)
    return out
