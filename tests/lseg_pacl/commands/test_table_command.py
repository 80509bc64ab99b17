"""``lseg-pacl table``: the options, the three files and compare.md written, the table printed, and the errors
a user can fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lseg_pacl.commands.table import make_table, table_command
from lseg_pacl.errors import ConfigError, MissingInputError

BENCHMARKS = (
    "voc21",
    "context60",
    "coco_object",
    "voc20",
    "context59",
    "coco_stuff171",
    "cityscapes",
    "ade20k",
)
PROTOCOL = {"short_side": 336, "mode": "slide", "crop": 224, "stride": 112, "templates": "imagenet80"}


def results(method: str, ious: dict[str, list[float | None]]) -> dict:
    """A results.json as ``eval`` writes it: per benchmark, classes c0, c1 ... with these IoUs."""
    out = {}
    for bench, values in ious.items():
        known = [v for v in values if v is not None]
        out[bench] = {
            "mIoU": sum(known) / len(known),
            "aAcc": 0.9,
            "per_class": {f"c{k}": v for k, v in enumerate(values)},
            "images": 10,
            "skipped": 0,
            "settings": {"model": "clip: ViT-B-16", "method": method, "preset": "unified"},
            "protocol": PROTOCOL,
            "protocol_hash": "5d41402a",
        }
    return out


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for method, ious in {
        "sclip": {b: [0.5, 0.0, 0.25 + k / 100] for k, b in enumerate(BENCHMARKS)},
        "demo_pacl": {b: [0.75, 0.125, 0.0] for b in BENCHMARKS},
    }.items():
        (root / method / "eval").mkdir(parents=True)
        (root / method / "eval" / "results.json").write_text(json.dumps(results(method, ious)))
    return root


def test_the_command_prints_the_table_and_writes_the_files_and_the_comparison(runs, tmp_path, capsys):
    out = tmp_path / "table"
    words = [
        f"runs={runs / 'sclip' / 'eval'},{runs / 'demo_pacl'}",
        f"out={out}",
        "compare=sclip,demo_pacl",
        "wandb=disabled",
    ]
    assert table_command(words) == 0
    printed = capsys.readouterr().out
    md, comparison = (out / "table.md").read_text(), (out / "compare.md").read_text()
    assert printed == md + "\n" + comparison
    with open(out / "table.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["sclip", "demo_pacl"]  # the order of runs=
    assert rows["demo_pacl"]["VOC21"] == "29.17" and rows["demo_pacl"]["Avg-8"] == "29.17"
    assert rows["sclip"]["ADE"] == f"{100 * (0.5 + 0.0 + 0.32) / 3:.2f}"
    assert (out / "table.tex").read_text().startswith("\\begin{tabular}")
    assert "\ndemo\\_pacl & 29.2 & " in (out / "table.tex").read_text()
    voc21 = comparison.split("## VOC21 (voc21)")[1].split("##")[0]
    assert voc21.index("| c0 | 50.00 | 75.00 | +25.00 |") < voc21.index("| c1 | 0.00 | 12.50 | +12.50 |")
    assert voc21.index("| c1 |") < voc21.index("| c2 | 25.00 | 0.00 | -25.00 |")
    assert (
        "Never right (IoU 0) for A, sclip: c1" in voc21
        and "Never right (IoU 0) for B, demo_pacl: c2" in voc21
    )
    assert not (out / "wandb").exists()


def test_format_chooses_what_is_printed(runs, tmp_path, capsys):
    make_table([runs], tmp_path / "t", fmt="csv", wandb_mode="disabled")
    assert capsys.readouterr().out == (tmp_path / "t" / "table.csv").read_text()
    make_table([runs], tmp_path / "t", fmt="latex", wandb_mode="disabled")
    assert capsys.readouterr().out == (tmp_path / "t" / "table.tex").read_text()
    with pytest.raises(ConfigError, match="format=html: expected one of md, csv, latex"):
        table_command([f"runs={runs}", "format=html"])


def test_out_defaults_to_table_in_the_current_directory(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert table_command([f"runs={runs}", "wandb=disabled"]) == 0
    assert sorted(p.name for p in (tmp_path / "table").iterdir()) == ["table.csv", "table.md", "table.tex"]


def test_no_results_is_an_error_naming_what_was_skipped(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no readable results.json"):
        make_table([tmp_path / "empty"], tmp_path / "out", wandb_mode="disabled")
    (tmp_path / "empty" / "results.json").write_text("not json")
    with pytest.raises(MissingInputError, match="skipped .*results.json: not valid JSON"):
        make_table([tmp_path / "empty"], tmp_path / "out", wandb_mode="disabled")
    with pytest.raises(MissingInputError, match="nowhere does not exist"):
        make_table([tmp_path / "nowhere"], tmp_path / "out", wandb_mode="disabled")
    assert not (tmp_path / "out").exists()


def test_option_errors_name_what_to_write(runs, tmp_path):
    with pytest.raises(ConfigError, match="table needs runs="):
        table_command([])
    with pytest.raises(ConfigError, match="expected two method labels"):
        table_command([f"runs={runs}", "compare=sclip"])
    with pytest.raises(
        ConfigError, match="compare: unknown method label\\(s\\) clip; the table has: demo_pacl, sclip"
    ):
        table_command([f"runs={runs}", "compare=sclip,clip", f"out={tmp_path / 'o'}", "wandb=disabled"])
    with pytest.raises(ConfigError, match="wandb=maybe"):
        table_command([f"runs={runs}", "wandb=maybe"])
    with pytest.raises(ConfigError, match="unexpected argument 'rows=2'"):
        table_command([f"runs={runs}", "rows=2"])


@pytest.mark.slow
def test_the_table_goes_to_an_offline_wandb_run_in_out(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert table_command([f"runs={runs}", f"out={tmp_path / 'out'}", "wandb=offline"]) == 0
    (run,) = (tmp_path / "out" / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb"))
    (logged,) = run.glob("files/media/table/*.table.json")
    with open(tmp_path / "out" / "table.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    table = json.loads(logged.read_text())
    assert table["columns"] == header and [r[0] for r in table["data"]] == [r[0] for r in rows]
    assert table["data"][1][header.index("ADE")] == pytest.approx(float(rows[1][header.index("ADE")]))
