"""Command line: ``lseg-pacl train|eval|data ...`` (also ``python -m lseg_pacl``).

Overrides are ``key=value`` words (OmegaConf dotlist), exactly as W&B sweep agents pass
``${args_no_hyphens}``. A problem the user can fix prints one message and exits with its code (2 for
configuration errors).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from lseg_pacl.commands.data import DATA_ACTIONS
from lseg_pacl.commands.options import key_values
from lseg_pacl.errors import BadDataError, ConfigError, MissingInputError, Stalled, UserError


def cmd_train(args: argparse.Namespace) -> int:
    from lseg_pacl.training.runner import train

    train(args.experiment, args.overrides)
    return 0


def _eval_shortcuts(words: list[str]) -> list[str]:
    """``ckpt=``, ``benchmarks=``, ``mode=``, ``class_names.voc21=`` ... mean ``eval.<key>``."""
    from dataclasses import fields

    from lseg_pacl.config.schema import EvalConfig

    short = {f.name for f in fields(EvalConfig)}
    return [f"eval.{w}" if w.partition("=")[0].split(".")[0] in short else w for w in words]


def cmd_eval(args: argparse.Namespace) -> int:
    from lseg_pacl.commands.evaluate import evaluate

    words = [args.experiment, *args.overrides]
    experiment = None if "=" in words[0] else words.pop(0)  # eval models=[...] needs no experiment
    evaluate(experiment, _eval_shortcuts(words))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from lseg_pacl.commands.predict import predict

    own = {
        "ckpt": str,
        "image": str,
        "labels": str,
        "out": str,
        "embeddings": bool,
        "overwrite": bool,
        "limit": int,
        "backend": str,
        "export": str,
    }
    mine = [w for w in args.options if w.partition("=")[0] in own]
    opts = key_values(mine, own)
    onnx = opts.get("backend") == "onnx"
    needed = ("export", "image") if onnx else ("ckpt", "image", "labels")
    missing = [k for k in needed if k not in opts]
    if missing:
        raise ConfigError(
            f"predict needs {', '.join(f'{k}=...' for k in missing)} "
            + ("(e.g. backend=onnx export=exports/demo image=photo.jpg)" if onnx else
               '(e.g. ckpt=runs/.../last.ckpt image=photo.jpg labels="cat, grass, other")')
        )
    rest = _eval_shortcuts([w for w in args.options if w not in mine])
    predict(
        opts.get("ckpt"),
        opts["image"],
        opts.get("labels"),
        opts.get("out", "predictions"),
        opts.get("embeddings", False),
        opts.get("overwrite", False),
        rest,
        opts.get("limit"),
        opts.get("backend", "torch"),
        opts.get("export"),
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lseg_pacl.commands.export import export_command

    export_command(args.options, _eval_shortcuts)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lseg_pacl.commands.sweep import run_sweep

    dry = [w for w in args.overrides if w.startswith("dry_run=")]
    rest = [w for w in args.overrides if w not in dry]
    run_sweep(args.file, rest, dry_run=key_values(dry[-1:], {"dry_run": bool}).get("dry_run", False))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from lseg_pacl.evaluation.score import score_folder

    opts = key_values(args.options, {"dataset": str, "root": str, "pred_dir": str, "split": str})
    missing = [k for k in ("dataset", "root", "pred_dir") if k not in opts]
    if missing:
        raise ConfigError(f"score needs {', '.join(f'{k}=...' for k in missing)}")
    try:
        result = score_folder(opts["dataset"], opts["root"], opts["pred_dir"], opts.get("split"))
    except FileNotFoundError as exc:
        raise MissingInputError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps(result, indent=2))
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from lseg_pacl.commands.table import table_command

    return table_command(args.options)


def cmd_bench(args: argparse.Namespace) -> int:
    from lseg_pacl.bench import SUITES, run_bench

    words = [w.removeprefix("bench.") for w in args.options]  # bench.full=true reads like a config key
    opts = key_values(words, {"suites": str, "out": str, "full": bool})
    suites = opts.get("suites", ",".join(SUITES)).split(",")
    try:
        run_bench(suites, Path(opts.get("out", "bench/results.json")), opts.get("full", False))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    import time

    from lseg_pacl.stress.run import SCENARIOS, print_counts, run_stress

    own = {"pacl": int, "ddp": int, "load": int, "stall_after": float, "steps": int, "clip": str, "out": str}
    opts = key_values(args.options, own)
    counts = {name: opts.get(name, 10) for name in SCENARIOS}
    if any(n < 0 for n in counts.values()) or opts.get("load", 2) < 0 or opts.get("steps", 12) < 2:
        raise ConfigError("stress: counts and load must be >= 0, steps >= 2")
    out = Path(opts.get("out", f"stress/{time.strftime('%Y%m%d-%H%M%S')}"))
    summary = run_stress(counts, out, opts.get("load", 2), opts.get("stall_after", 120.0),
                         opts.get("steps", 12), opts.get("clip"))
    print_counts(summary, out)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    result = DATA_ACTIONS[args.action](args.options)
    print(json.dumps(result, indent=2 if args.action in ("check", "prepare") else None))
    if args.action == "prepare" and result.get("conflicts"):  # files left alone the user must look at
        print(f"error: {result['conflicts']} existing output(s) differ from what prepare would write and "
              f"were left as they are (listed under conflict_files); move them away and run it again",
              file=sys.stderr)
        return BadDataError.exit_code
    return 0


def _command(sub, name: str, func, help: str, *positional: str, choices: dict | None = None) -> None:
    """One subcommand: its positional arguments in order, the last taking every remaining word."""
    cmd = sub.add_parser(name, help=help)
    for k, arg in enumerate(positional):
        last = k == len(positional) - 1
        cmd.add_argument(arg, nargs="*" if last else None, choices=(choices or {}).get(arg))
    cmd.set_defaults(func=func)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lseg-pacl", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    _command(
        sub,
        "train",
        cmd_train,
        "train an experiment: lseg-pacl train EXP [key=value ...]",
        "experiment",
        "overrides",
    )
    _command(
        sub,
        "eval",
        cmd_eval,
        "zero-shot evaluation: lseg-pacl eval EXP [ckpt=PATH] [benchmarks=[ade20k,...]] "
        "[preset=paper|unified] "
        "[mode=slide save_predictions=true analysis=[patch_accuracy,coherence] ...] | "
        "lseg-pacl eval models=[EXP,...] [benchmarks=[...]] [preset=...]",
        "experiment",
        "overrides",
    )
    _command(
        sub,
        "data",
        cmd_data,
        "datasets: lseg-pacl data synth out=DIR [seed= n_train= n_val= size=] | "
        "classes dataset=NAME [root=DIR] | check dataset=NAME root=DIR [split= workers=] | "
        "check dataset=pascal5i|coco20i|fss1000 root=DIR [split=test|train fold=F coco_lists=DIR] | "
        "prepare coco_object root=DIR [split=val2017] | "
        "prepare ade847 src=ADE20K_2021_17_01 [root=DIR] [split=validation] | "
        "prepare pc459 src=VOCdevkit/VOC2010 [root=DIR] | "
        "prepare pascal5i voc=DIR [sbd=DIR] [out=DIR] | prepare coco20i coco=DIR [splits=DIR] [out=DIR]",
        "action",
        "options",
        choices={"action": list(DATA_ACTIONS)},
    )
    _command(
        sub,
        "predict",
        cmd_predict,
        "segment your images: lseg-pacl predict ckpt=PATH|EXP image=FILE_OR_DIR "
        'labels="cat, grass, other" [out=DIR] [embeddings=true] [overwrite=true] [limit=N] | '
        "lseg-pacl predict backend=onnx export=DIR image=FILE_OR_DIR [out=DIR] ...",
        "options",
    )
    _command(
        sub,
        "export",
        cmd_export,
        "export a model's dense image model to ONNX: lseg-pacl export ckpt=PATH|EXP format=onnx out=DIR "
        '[labels="cat, grass, other"] [opset=17] [overwrite=true] [key=value ...]',
        "options",
    )
    _command(
        sub,
        "sweep",
        cmd_sweep,
        "run a W&B sweep file's grid in turn without a W&B server: lseg-pacl sweep "
        "FILE [dry_run=true] [key=value ...]",
        "file",
        "overrides",
    )
    _command(
        sub,
        "score",
        cmd_score,
        "score predicted label PNGs: lseg-pacl score dataset=NAME root=DIR pred_dir=DIR [split=]",
        "options",
    )
    _command(
        sub,
        "table",
        cmd_table,
        "method x benchmark table of eval results: lseg-pacl table runs=PATH[,PATH...] [out=DIR] "
        "[compare=A,B] [format=md|csv|latex] [wandb=offline|online|disabled]",
        "options",
    )
    _command(
        sub,
        "bench",
        cmd_bench,
        "speed and memory figures to bench/results.json: lseg-pacl bench "
        "[suites=pacl_loss,feature_cache,text,data,eval,rows,gpu,lseg_zs,export] [out=FILE] [full=true]",
        "options",
    )
    _command(
        sub,
        "stress",
        cmd_stress,
        "repeat the demo's PACL stage and a 2-process DDP step under CPU load, counting stalls: lseg-pacl "
        "stress [pacl=10] [ddp=10] [load=2] [stall_after=120] [steps=12] [clip=CKPT] [out=DIR]",
        "options",
    )
    from lseg_pacl.commands.app import USAGE, cmd_app  # light: gradio is imported when the command runs

    _command(sub, "app", cmd_app, f"a web page that segments your images: {USAGE}", "options")
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (callers may have replaced it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    handler = _StderrHandler()
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
        if isinstance(exc, Stalled):  # a stuck worker or rank may hold up the interpreter's exit: none of it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
