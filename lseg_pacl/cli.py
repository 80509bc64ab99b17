"""Command line: ``lseg-pacl train|eval|data ...`` (also ``python -m lseg_pacl``).

Overrides are ``key=value`` words (OmegaConf dotlist), exactly as W&B sweep agents pass ``${args_no_hyphens}``.
A problem the user can fix prints one message and exits with its code (2 for configuration errors).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from lseg_pacl.errors import ConfigError, UserError


def _kv(words: list[str], allowed: dict[str, type]) -> dict:
    """Plain ``key=value`` arguments for commands that are not experiment configs."""
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in allowed:
            raise ConfigError(f"unexpected argument '{word}'; expected key=value with key in: {', '.join(allowed)}")
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise ConfigError(f"{key}={value}: expected {allowed[key].__name__}") from None
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from lseg_pacl.runner import train

    train(args.experiment, args.overrides)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lseg_pacl.evaluate import evaluate

    overrides = [f"eval.{o}" if o.startswith("ckpt=") else o for o in args.overrides]
    evaluate(args.experiment, overrides)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "synth":
        from data_modules.synthetic import generate

        opts = _kv(args.options, {"out": str, "seed": int, "n_train": int, "n_val": int, "size": int})
        if "out" not in opts:
            raise ConfigError("data synth needs out=DIR")
        try:
            out = generate(opts.pop("out"), **opts)
        except (FileExistsError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        print(json.dumps({"out": str(out), "manifest": json.loads((Path(out) / "manifest.json").read_text())}))
        return 0
    raise ConfigError(f"unknown data action '{args.action}'")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lseg-pacl", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an experiment: lseg-pacl train EXP [key=value ...]")
    t.add_argument("experiment")
    t.add_argument("overrides", nargs="*")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="zero-shot evaluation: lseg-pacl eval EXP [ckpt=PATH] [key=value ...]")
    e.add_argument("experiment")
    e.add_argument("overrides", nargs="*")
    e.set_defaults(func=cmd_eval)
    d = sub.add_parser("data", help="datasets: lseg-pacl data synth out=DIR [seed= n_train= n_val= size=]")
    d.add_argument("action", choices=["synth"])
    d.add_argument("options", nargs="*")
    d.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("lseg_pacl", "data_modules"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
