"""``lseg-pacl table runs=PATH[,PATH...]``: the method x benchmark table of a set of ``eval`` results,
printed and written to <out>/table.{md,csv,tex} (and a W&B run), with an optional per-class comparison of
two methods in <out>/compare.md. What the table holds and how it is drawn: evaluation/table.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lseg_pacl.commands.options import key_values
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.evaluation.table import (
    Table,
    build_table,
    compare,
    compare_markdown,
    csv_header,
    csv_rows,
    csv_text,
    find_results,
    latex,
    load_results,
    markdown,
)

log = logging.getLogger(__name__)

OPTIONS = {"runs": str, "out": str, "compare": str, "format": str, "wandb": str}
FORMATS = {"md": markdown, "csv": csv_text, "latex": latex}
WANDB_MODES = ("offline", "online", "disabled")


def collect(runs: list[str | Path]) -> Table:
    """The table of every results.json the paths name; MissingInputError when a path does not exist or not
    one readable file is found (the message names the files skipped and why)."""
    try:
        files = find_results(runs)
    except FileNotFoundError as exc:
        raise MissingInputError(f"runs: {exc}") from None
    results, skipped = load_results(files)
    if not results:
        why = "".join(f"\n  skipped {p}: {reason}" for p, reason in skipped)
        raise MissingInputError(
            f"no readable results.json (as `lseg-pacl eval` writes) under {', '.join(map(str, runs))}{why}"
        )
    return build_table(results, files, skipped)


def to_wandb(table: Table, out: Path, mode: str) -> None:
    """A W&B run of job type "table" in ``out`` logging the table as a wandb.Table with the CSV's columns
    (the API key, when online, only from the environment)."""
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project="lseg_pacl", dir=str(out), mode=mode, job_type="table", name="table", reinit="create_new"
    )
    try:
        run.log({"table": wandb.Table(columns=csv_header(table), data=csv_rows(table))})
    finally:
        run.finish()


def make_table(
    runs: list[str | Path],
    out: str | Path = "table",
    compare_labels: tuple[str, str] | None = None,
    fmt: str = "md",
    wandb_mode: str = "offline",
) -> Table:
    """Collect, print the table in ``fmt`` (md | csv | latex), write table.md, table.csv and table.tex to
    ``out`` (and compare.md for two row labels), then log to W&B unless ``wandb_mode`` is "disabled"."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: expected one of {', '.join(FORMATS)}")
    if wandb_mode not in WANDB_MODES:
        raise ConfigError(f"wandb={wandb_mode}: expected one of {', '.join(WANDB_MODES)}")
    table = collect(runs)
    comparison = None
    if compare_labels is not None:
        try:
            comparison = compare_markdown(*compare_labels, compare(table, *compare_labels))
        except KeyError as exc:
            raise ConfigError(f"compare: {exc.args[0]}") from None
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(table), encoding="utf-8")
    (out / "table.csv").write_text(csv_text(table), encoding="utf-8")
    (out / "table.tex").write_text(latex(table), encoding="utf-8")
    print(FORMATS[fmt](table), end="")
    if comparison is not None:
        (out / "compare.md").write_text(comparison, encoding="utf-8")
        print("\n" + comparison, end="")
    if table.skipped:
        log.warning("skipped %d of %d results files (named above)", len(table.skipped), len(table.files))
    to_wandb(table, out, wandb_mode)
    log.info(
        "written: %s (and table.csv, table.tex%s)", out / "table.md", ", compare.md" if comparison else ""
    )
    return table


def table_command(words: list[str]) -> int:
    """``lseg-pacl table`` from its key=value words: runs= (required, comma-separated paths), out=,
    compare=A,B, format=, wandb=. Returns the exit code."""
    opts = key_values(words, OPTIONS)
    if not opts.get("runs"):
        raise ConfigError("table needs runs=PATH[,PATH...] (results.json files or folders holding them)")
    labels = None
    if "compare" in opts:
        labels = tuple(x.strip() for x in opts["compare"].split(","))
        if len(labels) != 2 or not all(labels):
            raise ConfigError(f"compare={opts['compare']}: expected two method labels, compare=A,B")
    make_table(
        [p for p in opts["runs"].split(",") if p],
        opts.get("out", "table"),
        labels,
        opts.get("format", "md"),
        opts.get("wandb", "offline"),
    )
    return 0
