"""Writing evaluation results: results.json (merged with earlier benchmarks of the same run), results.md,
results.csv, and the same table (plus the panels) to W&B."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


REQUIRED = ("mIoU", "aAcc", "per_class", "images", "skipped", "settings")


def merge_results(path: Path, new: dict) -> dict:
    """Earlier results of other benchmarks stay; the benchmarks evaluated now replace their old entries.
    Entries this version cannot read (older formats) are kept aside in results.old-<n>.json, never lost."""
    old: dict = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if not isinstance(old, dict) or not all(isinstance(v, dict) and all(k in v for k in REQUIRED)
                                                for v in old.values()):
            n = 1
            while (backup := path.with_name(f"results.old-{n}.json")).exists():
                n += 1
            path.rename(backup)
            log.warning("%s is in an older or unreadable format; kept it as %s", path, backup)
            old = {}
    return {**old, **new}


def markdown(results: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| benchmark | mIoU | aAcc | images | skipped | model | templates | protocol |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s = r["settings"]
        protocol = f"{s['mode']} {s['short_side']}" + (
            f" crop {s['crop']}/{s['stride']}" if s["mode"] == "slide" else ""
        )
        protocol += f", scales {s['scales']}" if s["scales"] != [1.0] else ""
        protocol += ", flip" if s["flip"] else ""
        lines.append(
            f"| {name} | {_pct(r['mIoU'])} | {_pct(r['aAcc'])} | {r['images']} | {r['skipped']} | "
            f"{s['model']} | {s['templates']} | {protocol} |"
        )
    episodes = [(name, r) for name, r in results.items() if "FB-IoU" in r]
    if episodes:  # LSeg's zero-shot protocol: mIoU is the mean foreground IoU over the fold's classes
        lines += ["", "| episode benchmark | mIoU (foreground) | FB-IoU | episodes |", "|---|---|---|---|"]
        lines += [f"| {name} | {_pct(r['mIoU'])} | {_pct(r['FB-IoU'])} | {r['images']} |"
                  for name, r in episodes]
    for name, r in results.items():
        for who, figures in r.get("analysis", {}).items():
            if figures:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if v is not None)
                lines.append(f"\n{name}, diagnostics ({who}): {shown}")
    for name, r in results.items():
        lines += ["", f"## {name}: IoU per class", "", "| class | IoU |", "|---|---|"]
        lines += [f"| {cls} | {_pct(v)} |" for cls, v in r["per_class"].items()]
    return "\n".join(lines) + "\n"


def write_csv(results: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["benchmark", "class", "iou", "miou", "aacc", "images"])
        for name, r in results.items():
            writer.writerow([name, "", "", r["mIoU"], r["aAcc"], r["images"]])
            for cls, v in r["per_class"].items():
                writer.writerow([name, cls, v, "", "", ""])


def write_reports(out: Path, results: dict, title: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    merged = merge_results(out / "results.json", results)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    tmp.replace(out / "results.json")
    (out / "results.md").write_text(markdown(merged, title), encoding="utf-8")
    write_csv(merged, out / "results.csv")
    return merged


def to_wandb(wandb_cfg, out: Path, results: dict, images: list, name: str) -> None:
    """Log the table and the panels ((rgb, masks, caption) as W&B segmentation masks) to a W&B run of job type
    "eval" in ``out``."""
    if wandb_cfg.mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=wandb_cfg.project,
        entity=wandb_cfg.entity,
        dir=str(out),
        mode=wandb_cfg.mode,
        job_type="eval",
        name=name,
        tags=list(wandb_cfg.tags),
        reinit="create_new",
    )
    try:
        table = wandb.Table(columns=["benchmark", "mIoU", "aAcc", "images"])
        for bench, r in results.items():
            table.add_data(bench, r["mIoU"], r["aAcc"], r["images"])
        run.log({"eval/results": table, **{f"eval/{b}/mIoU": r["mIoU"] for b, r in results.items()}})
        if images:
            run.log(
                {
                    "eval/panels": [
                        wandb.Image(rgb, masks=masks, caption=caption) for rgb, masks, caption in images
                    ]
                }
            )
    finally:
        run.finish()
