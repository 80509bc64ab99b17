"""The stress scenarios and their loop: the demo's PACL stage (short, validating twice, so that training and
validation DataLoader workers start several times) and the 2-process DDP step of the report that hung, run in
turn under extra CPU load with the demo's own logger (W&B offline: its threads are part of what runs);
``summary.json`` holds every outcome and the counts."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from lseg_pacl.stress.harness import CpuLoad, Outcome, run_watched


def pacl_stage(run_dir: Path, index: int, steps: int, clip: str | None) -> list[str]:
    """The demo's second stage on a given stage-1 CLIP (or random CLIP weights), ``steps`` steps."""
    return [
        sys.executable, "-m", "lseg_pacl", "train", "demo_pacl",
        f"model.clip.pretrained={clip or 'null'}", f"seed={index % 3}", f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={max(1, steps // 2)}", f"run.dir={run_dir}",
    ]


def ddp_step(run_dir: Path, index: int, steps: int, clip: str | None) -> list[str]:
    """The reported hang: one step of the PACL stage on 2 CPU processes, checkpoint, final validation."""
    return [
        sys.executable, "-m", "lseg_pacl", "train", "demo_pacl", "model.clip.pretrained=null",
        "trainer.max_steps=1", "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=64",
        f"run.dir={run_dir}",
    ]


SCENARIOS = {"pacl": pacl_stage, "ddp": ddp_step}


def _counts(outcomes: list[Outcome]) -> dict:
    by = {}
    for name in SCENARIOS:
        mine = [o for o in outcomes if o.scenario == name]
        c = Counter(o.status for o in mine)
        by[name] = {"runs": len(mine), "ok": c["ok"], "failed": c["failed"], "stalled": c["stalled"],
                    "seconds_median": sorted(o.seconds for o in mine)[len(mine) // 2] if mine else None}
    return by


def run_stress(
    counts: dict[str, int], out: Path, load: int, stall_after: float, steps: int, clip: str | None
) -> dict:
    """Interleave the scenarios (pacl, ddp, pacl, ...) until each has run its count; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    order = []
    for k in range(max(counts.values(), default=0)):
        order += [name for name in SCENARIOS if k < counts.get(name, 0)]
    outcomes: list[Outcome] = []
    started = time.time()
    summary: dict = {}
    with CpuLoad(load, sys.executable):
        for n, name in enumerate(order):
            index = sum(o.scenario == name for o in outcomes)
            run_dir = out / f"{name}-{index:03d}"
            command = SCENARIOS[name](run_dir, index, steps, clip)
            outcome = run_watched(name, index, command, run_dir, stall_after, dict(os.environ))
            outcomes.append(outcome)
            print(f"[{n + 1}/{len(order)}] {name} #{index}: {outcome.status} "
                  f"(exit {outcome.returncode}, {outcome.seconds:.0f} s)"
                  + (f" -> {outcome.dump}" if outcome.dump else ""), flush=True)
            summary = {
                "load_processes": load, "stall_after_s": stall_after, "pacl_steps": steps, "clip": clip,
                "wall_s": round(time.time() - started), "counts": _counts(outcomes),
                "outcomes": [o.to_json() for o in outcomes],
            }
            (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def print_counts(summary: dict, out: Path) -> None:
    print(f"\n{'scenario':<10}{'runs':>6}{'ok':>6}{'failed':>8}{'stalled':>9}{'median s':>10}")
    for name, c in summary.get("counts", {}).items():
        med = c["seconds_median"]
        print(f"{name:<10}{c['runs']:>6}{c['ok']:>6}{c['failed']:>8}{c['stalled']:>9}"
              f"{'' if med is None else f'{med:.0f}':>10}")
    print(f"summary: {out / 'summary.json'}")
