"""``lseg-pacl bench`` (``make bench``): speed and memory figures, the ones compared measured side by side in
one run, printed as a table and written to bench/results.json with their units and the machine.

Quick by default (minutes on 2 CPU cores); ``full=true`` adds the large sizes. Each suite is a module here.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from lseg_pacl.bench.data import data_suite
from lseg_pacl.bench.evaluation import eval_suite
from lseg_pacl.bench.export import export_suite
from lseg_pacl.bench.feature_cache import feature_cache_suite
from lseg_pacl.bench.gpu import gpu_suite
from lseg_pacl.bench.lseg_zs import lseg_zs_suite
from lseg_pacl.bench.pacl_loss import pacl_loss_suite
from lseg_pacl.bench.rows import rows_suite
from lseg_pacl.bench.text import text_suite

SUITES: dict[str, Callable[..., dict[str, dict]]] = {  # suite(full, device) -> figures
    "pacl_loss": pacl_loss_suite,
    "feature_cache": feature_cache_suite,
    "text": text_suite,
    "data": data_suite,
    "eval": eval_suite,
    "rows": rows_suite,
    "gpu": gpu_suite,
    "lseg_zs": lseg_zs_suite,
    "export": export_suite,
}


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_bench(suites: list[str], out: Path, full: bool = False) -> dict:
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown bench suite(s) {unknown}; known: {', '.join(SUITES)}")
    figures: dict[str, dict] = {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for suite in suites:
        figures.update(SUITES[suite](full, device))
    results = {"machine": machine(), "full": full, "suites": suites, "figures": figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")
    tmp.replace(out)
    width = max((len(k) for k in figures), default=0)
    for key, fig in figures.items():
        print(f"{key:<{width}}  {fig['value']:12.4g} {fig['unit']}")
    print(f"written: {out}")
    return results
