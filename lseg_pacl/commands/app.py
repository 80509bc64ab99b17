"""``lseg-pacl app``: the web page (lseg_pacl/app) on http://HOST:PORT. Gradio is the optional ``app`` extra:
without it the command stops at once, saying how to install it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from lseg_pacl.commands.options import key_values
from lseg_pacl.errors import ConfigError, MissingInputError

OWN = {"ckpt": str, "runs": str, "port": int, "host": str, "synthetic": str, "max_megapixels": float}
USAGE = ("lseg-pacl app [ckpt=PATH|EXP] [runs=runs] [port=7860] [host=127.0.0.1] [synthetic=data/synthetic] "
         "[max_megapixels=16] [key=value ...]")


def cmd_app(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise MissingInputError('the app needs gradio, an optional extra: run `make app`, or '
                                '`pip install -e ".[app]"` and then `lseg-pacl app`')
    from lseg_pacl.commands.cli import _eval_shortcuts

    mine = [w for w in args.options if w.partition("=")[0] in OWN]
    opts = key_values(mine, OWN)
    rest = _eval_shortcuts([w for w in args.options if w not in mine])  # for every model, as for predict
    port, megapixels = opts.get("port", 7860), opts.get("max_megapixels", 16.0)
    if not 0 < port < 65536:
        raise ConfigError(f"port={port}: expected 1..65535")
    if megapixels <= 0:
        raise ConfigError(f"max_megapixels={megapixels:g}: expected > 0")

    from data_modules.synthetic import CLASS_NAMES
    from lseg_pacl.app.models import TRAINING_FREE, find_choices
    from lseg_pacl.app.page import serve
    from lseg_pacl.config.loading import load_config

    load_config(f"{TRAINING_FREE}clip", rest)  # a bad key=value stops here, not at the first request
    choices = find_choices(Path(opts.get("runs", "runs")).expanduser(), opts.get("ckpt"))
    world = Path(opts.get("synthetic", "data/synthetic")).expanduser()
    world = world if world.is_dir() else None
    serve(choices, rest, opts.get("host", "127.0.0.1"), port, int(megapixels * 1e6), world,
          ", ".join(CLASS_NAMES) if world else "")
    return 0
