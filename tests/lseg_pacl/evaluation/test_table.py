"""The method x benchmark table: the numbers of the results files exactly, the papers' column order, protocols
never mixed silently, LaTeX escaping, the per-class comparison and files that cannot be read."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import random
from pathlib import Path

import pytest

from lseg_pacl.evaluation.table import (
    MAIN8,
    NO_BACKGROUND5,
    UNKNOWN,
    build_table,
    compare,
    compare_markdown,
    csv_text,
    find_results,
    latex,
    latex_escape,
    load_results,
    markdown,
)

# Two protocols as ``eval`` records them; the benchmark is part of a protocol: each column has its own hashes.
SLIDE = {
    "split": "val",
    "short_side": 336,
    "mode": "slide 224/112",
    "templates": "imagenet80",
    "names": "sclip",
    "background": "argmax",
    "pamr": "off",
    "precision": "fp32",
}
WHOLE = {**SLIDE, "short_side": 448, "mode": "whole", "names": "default"}
HEADERS = {
    "voc21": "VOC21",
    "context60": "PC60",
    "coco_object": "Object",
    "voc20": "VOC20",
    "context59": "PC59",
    "coco_stuff171": "Stuff",
    "cityscapes": "City",
    "ade20k": "ADE",
    "ade847": "A-847",
    "pc459": "PC-459",
}
SIZES = {"voc21": 21, "context60": 60, "coco_object": 81, "voc20": 20, "context59": 59, "coco_stuff171": 171}
SIZES |= {"cityscapes": 19, "ade20k": 150, "ade847": 847, "pc459": 459, "synthetic": 10, "mini": 4}


def protocol(bench: str, base: dict) -> dict:
    return {"benchmark": bench, **base}


def digest(bench: str, base: dict) -> str:
    """The hash as ``eval`` computes it: 8 hex digits of the sorted protocol."""
    return hashlib.sha256(json.dumps(protocol(bench, base), sort_keys=True).encode()).hexdigest()[:8]


def per_class(rng: random.Random, n: int, zeros: int = 0, nulls: int = 0) -> dict:
    """n classes of realistic IoUs: ``zeros`` of them never right (0.0), ``nulls`` never present (null)."""
    values = [0.0] * zeros + [None] * nulls
    values += [round(rng.uniform(0.05, 0.95), 6) for _ in range(n - zeros - nulls)]
    return {f"class_{k:02d}": v for k, v in enumerate(values)}


def entry(bench: str, classes: dict, method: str | None, base: dict | None, preset: str = "unified") -> dict:
    """An entry as ``eval`` writes it (mIoU the mean over classes with an IoU); ``method`` and ``base`` None
    give the older format, without method or protocol, labelled by its model."""
    known = [v for v in classes.values() if v is not None]
    settings = {"model": "pacl: ViT-B-16", "mode": "slide", "templates": "imagenet80"}
    e = {"mIoU": sum(known) / len(known), "aAcc": 0.8, "per_class": classes, "images": 500, "skipped": 0,
         "settings": settings}  # fmt: skip
    if method is not None:
        settings.update(method=method, preset=preset)
    if base is not None:
        e.update(protocol=protocol(bench, base), protocol_hash=digest(bench, base))
    return e


def results(rng, method, benchmarks, base, preset="unified", **kw) -> dict:
    return {b: entry(b, per_class(rng, SIZES[b], **kw), method, base, preset) for b in benchmarks}


def write(path: Path, entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path) -> dict:
    """Results under runs/, as ``eval`` leaves them:

    - sclip: the 8 main benchmarks and ade847, SLIDE;
    - demo_pacl: 7 of the 8 (no cityscapes: no averages), pc459 and two other benchmarks, SLIDE;
    - clearclip: the 8, SLIDE but voc21 WHOLE (the VOC21 column mixes protocols);
    - maskclip: voc20 and ade20k under SLIDE (unified preset), the same two under WHOLE (paper preset) in
      another run, and context59 under WHOLE (paper) in a third: two rows;
    - an older file without method or protocol (label from settings.model, protocol unknown) on context59.
    """
    rng = random.Random(0)
    root = tmp_path / "runs"
    data = {
        "sclip": results(rng, "sclip", [*MAIN8, "ade847"], SLIDE, zeros=2, nulls=1),
        "demo_pacl": results(
            rng, "demo_pacl", [*MAIN8[:6], "ade20k", "pc459", "synthetic", "mini"], SLIDE, zeros=1
        ),
        "clearclip": {
            **results(rng, "clearclip", MAIN8, SLIDE),
            **results(rng, "clearclip", ["voc21"], WHOLE),
        },
        "maskclip_a": results(rng, "maskclip", ["voc20", "ade20k"], SLIDE),
        "maskclip_b": results(rng, "maskclip", ["voc20", "ade20k"], WHOLE, preset="paper"),
        "maskclip_c": results(rng, "maskclip", ["context59"], WHOLE, preset="paper"),
        "old": {"context59": entry("context59", per_class(rng, 59), None, None)},
    }
    files = {
        "sclip": root / "baseline_sclip" / "eval-01" / "results.json",
        "demo_pacl": root / "demo_pacl" / "2024-05-01" / "eval" / "results.json",
        "clearclip": root / "baseline_clearclip" / "eval-01" / "results.json",
        "maskclip_a": root / "baseline_maskclip" / "eval-01" / "results.json",
        "maskclip_b": root / "baseline_maskclip" / "eval-02" / "results.json",
        "maskclip_c": root / "baseline_maskclip" / "eval-03" / "results.json",
        "old": root / "old_pacl" / "eval" / "results.json",
    }
    for key, path in files.items():
        write(path, data[key])
    return {"root": root, "data": data, "files": files}


MASKCLIP_SLIDE = f"maskclip [{digest('voc20', SLIDE)}]"
MASKCLIP_WHOLE = f"maskclip [{digest('voc20', WHOLE)}]"


def table_of(*paths):
    files = find_results(paths)
    results, skipped = load_results(files)
    return build_table(results, files, skipped)


def read_csv(table) -> dict[str, dict[str, str]]:
    return {r["method"]: r for r in csv.DictReader(io.StringIO(csv_text(table)))}


def test_the_csv_holds_exactly_the_files_numbers_and_the_averages(runs):
    rows = read_csv(table_of(runs["root"]))
    data = runs["data"]
    expected = {
        "sclip": data["sclip"],
        "demo_pacl": data["demo_pacl"],
        "clearclip": data["clearclip"],
        MASKCLIP_SLIDE: data["maskclip_a"],
        MASKCLIP_WHOLE: {**data["maskclip_b"], **data["maskclip_c"]},
        "pacl: ViT-B-16": data["old"],
    }
    assert set(rows) == set(expected)
    for label, entries in expected.items():
        for bench, e in entries.items():
            assert abs(float(rows[label][HEADERS.get(bench, bench)]) - 100 * e["mIoU"]) <= 0.005 + 1e-9
            assert rows[label][f"{HEADERS.get(bench, bench)} protocol"] == e.get("protocol_hash", UNKNOWN)
        for bench in set(HEADERS) - set(entries):
            assert rows[label][HEADERS[bench]] == ""
    for label in ("sclip", "clearclip"):
        avg8 = sum(100 * data[label][b]["mIoU"] for b in MAIN8) / 8
        avg5 = sum(100 * data[label][b]["mIoU"] for b in NO_BACKGROUND5) / 5
        assert abs(float(rows[label]["Avg-8"]) - avg8) <= 0.005 + 1e-9
        assert abs(float(rows[label]["Avg-5"]) - avg5) <= 0.005 + 1e-9
    assert rows["demo_pacl"]["Avg-8"] == rows["demo_pacl"]["Avg-5"] == ""  # cityscapes missing
    assert rows["clearclip"]["VOC21 protocol"] == digest("voc21", WHOLE)


def test_markdown_cells_are_percent_with_one_decimal(runs):
    md = markdown(table_of(runs["root"]))
    sclip = next(line for line in md.splitlines() if line.startswith("| sclip |"))
    assert f"| {100 * runs['data']['sclip']['coco_object']['mIoU']:.1f} |" in sclip


def test_columns_follow_the_papers_order_then_the_large_and_the_others_alphabetically(runs):
    table = table_of(runs["root"])
    assert table.columns == [*MAIN8, "Avg-8", "Avg-5", "ade847", "pc459", "mini", "synthetic"]
    header = csv_text(table).splitlines()[0].split(",")
    main = ["VOC21", "PC60", "Object", "VOC20", "PC59", "Stuff", "City", "ADE"]
    assert header[:15] == ["method", *main, "Avg-8", "Avg-5", "A-847", "PC-459", "mini", "synthetic"]
    assert markdown(table).splitlines()[0].startswith("| method | VOC21 | PC60 | Object | VOC20 | PC59 |")


def cells_of(md: str) -> dict[str, list[str]]:
    return {line.split(" | ")[0][2:]: line.split(" | ") for line in md.splitlines() if line.startswith("| ")}


def test_a_column_mixing_protocols_marks_every_cell_and_the_legend_names_each(runs):
    table = table_of(runs["root"])
    assert table.mixed == {"voc21", "voc20", "context59", "ade20k"}
    md = markdown(table)
    lines, legend = cells_of(md), md.split("| pacl: ViT-B-16 |")[1]
    voc21, pc60 = table.columns.index("voc21") + 1, table.columns.index("context60") + 1
    assert table.markers["voc21"] == {digest("voc21", WHOLE): "a", digest("voc21", SLIDE): "b"}  # row order
    assert lines["clearclip"][voc21].endswith("^a")
    assert lines["sclip"][voc21].endswith("^b") and lines["demo_pacl"][voc21].endswith("^b")
    assert "^" not in lines["sclip"][pc60] and "^" not in lines["clearclip"][pc60]  # PC60 holds one protocol
    assert (
        f"- VOC21 ^a: `{digest('voc21', WHOLE)}`: benchmark=voc21, split=val, short_side=448, mode=whole"
        in legend
    )
    assert (
        f"- VOC21 ^b: `{digest('voc21', SLIDE)}`: benchmark=voc21, split=val, short_side=336, mode=slide"
        in legend
    )
    assert "- PC59 ^c: `unknown`: not recorded" in legend  # maskclip WHOLE, the others' SLIDE, the old file
    single = "One protocol in each other column (settings in the results files): "
    single += f"PC60 {digest('context60', SLIDE)}, Object {digest('coco_object', SLIDE)}, "
    assert single in legend
    assert "PC60 ^" not in legend and "A-847 ^" not in legend


def test_one_method_under_two_protocols_on_a_benchmark_gets_a_row_per_protocol(runs):
    table = table_of(runs["root"])
    labels = [r.label for r in table.rows]
    assert labels == ["clearclip", MASKCLIP_SLIDE, MASKCLIP_WHOLE, "sclip", "demo_pacl", "pacl: ViT-B-16"]
    slide, whole = table.row(MASKCLIP_SLIDE), table.row(MASKCLIP_WHOLE)
    assert set(slide.cells) == {"voc20", "ade20k"}
    assert set(whole.cells) == {"voc20", "ade20k", "context59"}  # the paper run of context59 joins its preset
    for bench in ("voc20", "ade20k"):
        assert slide.cells[bench].miou == runs["data"]["maskclip_a"][bench]["mIoU"]
        assert whole.cells[bench].miou == runs["data"]["maskclip_b"][bench]["mIoU"]


def test_an_older_entry_is_labelled_by_its_model_with_an_unknown_protocol(runs):
    table = table_of(runs["files"]["old"])
    (row,) = table.rows
    assert row.label == "pacl: ViT-B-16" and row.cells["context59"].protocol_hash == UNKNOWN
    assert table.mixed == set()
    assert "One protocol in each column (settings in the results files): PC59 unknown." in markdown(table)


def test_the_same_method_benchmark_and_protocol_twice_keeps_the_later_file(runs, tmp_path, caplog):
    again = {"ade20k": entry("ade20k", {"wall": 0.5, "sky": 0.7}, "sclip", SLIDE)}
    later = write(tmp_path / "zz" / "results.json", again)
    with caplog.at_level(logging.INFO, logger="lseg_pacl"):
        table = table_of(runs["files"]["sclip"], later)
    (row,) = table.rows
    assert row.cells["ade20k"].miou == pytest.approx(0.6) and row.cells["ade20k"].source == later
    assert row.cells["voc21"].source == runs["files"]["sclip"]
    assert any("using the later file" in r.message and "ade20k" in r.message for r in caplog.records)
    table = table_of(later, runs["files"]["sclip"])  # the order of the paths decides
    assert table.rows[0].cells["ade20k"].source == runs["files"]["sclip"]


def test_a_method_with_other_options_is_another_row_never_the_same_cell(runs, tmp_path):
    """settings.method_options are a method's variant: the same label, benchmark and protocol with other
    options gives one row per variant (``method {digest}``), not a later-file-wins cell."""
    other = {"ade20k": entry("ade20k", {"wall": 0.5, "sky": 0.7}, "sclip", SLIDE)}
    other["ade20k"]["settings"]["method_options"] = {"tau": 2.0}
    later = write(tmp_path / "zz" / "results.json", other)
    table = table_of(runs["files"]["sclip"], later)
    labels = sorted(r.label for r in table.rows)
    assert len(labels) == 2 and labels[0].startswith("sclip {") and "{no options}" in labels[1]
    variant = next(r for r in table.rows if r.label != "sclip {no options}")
    assert set(variant.cells) == {"ade20k"} and variant.cells["ade20k"].miou == pytest.approx(0.6)
    same = dict(other)  # the same options twice: one variant, so the plain label
    assert [r.label for r in table_of(later, write(tmp_path / "zy" / "results.json", same)).rows] == ["sclip"]


def test_latex_is_a_booktabs_tabular_with_escaped_labels(runs):
    table = table_of(runs["root"])
    tex = latex(table)
    assert tex.startswith("\\begin{tabular}{l" + "r" * len(table.columns) + "}\n\\toprule\n")
    assert "\\midrule" in tex and "\\bottomrule\n\\end{tabular}" in tex
    assert "\ndemo\\_pacl & " in tex and "\ndemo_pacl" not in tex
    assert "\\textsuperscript{a}" in tex and "short\\_side=448" in tex
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    assert len(body) == len(table.rows) and all(line.count(" & ") == len(table.columns) for line in body)
    assert latex_escape("a_b & 50% {x} #1 $y$ ~^\\") == (
        "a\\_b \\& 50\\% \\{x\\} \\#1 \\$y\\$ \\textasciitilde{}\\textasciicircum{}\\textbackslash{}"
    )


def test_compare_lists_per_class_differences_and_the_classes_never_right(runs):
    table = table_of(runs["root"])
    comparisons = compare(table, "sclip", "demo_pacl")
    assert [c.benchmark for c in comparisons] == [b for b in MAIN8 if b != "cityscapes"]  # ade847, pc459: one
    for c in comparisons:
        pa = runs["data"]["sclip"][c.benchmark]["per_class"]
        pb = runs["data"]["demo_pacl"][c.benchmark]["per_class"]
        expected = {n: pb[n] - pa[n] for n in pa if pa[n] is not None and pb[n] is not None}
        assert {n: d for n, _, _, d in c.differences} == pytest.approx(expected)
        diffs = [d for *_, d in c.differences]
        assert diffs == sorted(diffs, reverse=True)
        assert c.zero_a == ["class_00", "class_01"] and c.zero_b == ["class_00"]
        assert c.not_compared == ["class_02"]  # null for sclip: never present, which is not "never right"
    text = compare_markdown("sclip", "demo_pacl", comparisons)
    top = comparisons[0].differences[0]
    assert f"| {top[0]} | {100 * top[1]:.2f} | {100 * top[2]:.2f} | {100 * top[3]:+.2f} |" in text
    assert "Never right (IoU 0) for A, sclip: class_00, class_01" in text


def test_compare_with_an_unknown_label_lists_the_labels(runs):
    labels = f"clearclip, {MASKCLIP_SLIDE}, {MASKCLIP_WHOLE}, sclip, demo_pacl, pacl: ViT-B-16"  # path order
    with pytest.raises(KeyError) as exc:
        compare(table_of(runs["root"]), "sclip", "maskclip")
    assert exc.value.args[0] == f"unknown method label(s) maskclip; the table has: {labels}"


def test_malformed_files_are_skipped_with_a_warning_and_counted(runs, caplog):
    root = runs["root"]
    (root / "broken" / "eval").mkdir(parents=True)
    (root / "broken" / "eval" / "results.json").write_text('{"voc21": {"mIoU": 0.5,')
    write(root / "sweeps" / "tiny-01" / "results.json", [{"params": ["optim.lr=0.1"], "val/mIoU": 0.2}])
    write(root / "wrong" / "results.json", {"voc21": {"mIoU": "high", "per_class": {}, "settings": {}}})
    with caplog.at_level(logging.WARNING, logger="lseg_pacl"):
        table = table_of(root)
    assert len(table.files) == 10 and [p.parent.name for p, _ in table.skipped] == [
        "eval",
        "tiny-01",
        "wrong",
    ]
    warned = " ".join(r.message for r in caplog.records)
    assert all(str(p) in warned for p, _ in table.skipped) and "not valid JSON" in warned
    assert "Read 7 results file(s); skipped 3: " in markdown(table)
    assert len(table.rows) == 6


def test_results_are_found_from_a_file_an_eval_folder_or_any_folder_in_path_order(runs):
    files = runs["files"]
    assert find_results([files["sclip"]]) == [files["sclip"]]
    assert find_results([files["demo_pacl"].parent]) == [files["demo_pacl"]]
    found = find_results([runs["root"] / "baseline_maskclip", runs["root"]])
    maskclip = [files["maskclip_a"], files["maskclip_b"], files["maskclip_c"]]
    assert found[:3] == maskclip  # sorted, and each file once
    assert found[3:] == sorted(set(files.values()) - set(maskclip))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_results([runs["root"] / "nowhere"])


def test_a_benchmark_scored_on_no_image_shows_n_a_and_blanks_the_averages(tmp_path):
    entries = {b: entry(b, {"a": 0.5}, "m", SLIDE) for b in MAIN8}
    entries["ade20k"]["mIoU"] = None
    table = table_of(write(tmp_path / "results.json", entries))
    assert table.columns == list(MAIN8)  # no row has every benchmark: no average columns
    assert "| n/a |" in markdown(table) and read_csv(table)["m"]["ADE"] == ""
    assert math.isclose(table.rows[0].value("voc21"), 0.5)
