"""The method x benchmark table of the field, built from the results.json files ``lseg-pacl eval`` writes.

Rows are methods, columns benchmarks in the order papers print them, with the Avg-8 and Avg-5 means. A table
never silently mixes protocols: where a column holds cells of more than one protocol (``protocol_hash``, which
covers the benchmark itself, so each column has its own hashes) each cell carries a marker, and the legend
lists each marker's protocol with its settings; a method evaluated on the same benchmark under two protocols
becomes several rows. Rendering to Markdown, CSV and LaTeX, and the per-class comparison of two rows, live
here too; reading options and writing files is commands/table.py's job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the protocol hash of entries written before protocols were recorded

# The eight benchmarks of the training-free papers' main table (SCLIP, ClearCLIP, ProxyCLIP ...), in their
# order: the three with a background class first, then the five without.
MAIN8 = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")
NO_BACKGROUND5 = ("voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")
LARGE = ("ade847", "pc459")  # printed after the averages, as the papers that report them do
AVERAGES = {"Avg-8": MAIN8, "Avg-5": NO_BACKGROUND5}
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


@dataclass(frozen=True)
class Result:
    """One benchmark's entry of one results.json, reduced to what the table needs."""

    method: str
    benchmark: str
    miou: float | None
    per_class: dict[str, float | None]
    protocol_hash: str
    protocol: dict
    preset: str | None  # settings.preset: "paper", "unified" or None; keeps a split method's rows apart
    source: Path
    options: str = ""  # a digest of settings.method_options ("" for none): a method's variant, not a protocol


@dataclass
class Row:
    label: str
    cells: dict[str, Result]  # benchmark -> result

    def value(self, column: str) -> float | None:
        """mIoU as a fraction: a benchmark's, or an average's when the row has every one of its benchmarks."""
        if column in AVERAGES:
            values = [self.cells[b].miou if b in self.cells else None for b in AVERAGES[column]]
            return None if any(v is None for v in values) else math.fsum(values) / len(values)
        cell = self.cells.get(column)
        return None if cell is None else cell.miou


@dataclass
class Table:
    rows: list[Row]
    columns: list[str]  # benchmark names and the average names, in print order
    markers: dict[str, dict[str, str]]  # column mixing protocols -> {protocol hash: letter}, in row order
    protocols: dict[str, dict]  # protocol hash -> its settings, for every cell
    files: list[Path] = field(default_factory=list)  # the results files read
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why) of those that could not be

    @property
    def benchmarks(self) -> list[str]:
        return [c for c in self.columns if c not in AVERAGES]

    @property
    def mixed(self) -> set[str]:
        """The benchmark columns whose cells come from more than one protocol."""
        return set(self.markers)

    def row(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)

    def marker(self, row: Row, column: str) -> str:
        """The cell's protocol letter where its column mixes protocols, else ''."""
        cell = row.cells.get(column)
        return self.markers[column][cell.protocol_hash] if cell is not None and column in self.markers else ""


def header(column: str) -> str:
    return HEADERS.get(column, column)


# ---------------------------------------------------------------------------------------------- reading


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every results.json the paths name: a file itself, or all of them under a folder (searched
    recursively, sorted by path), in the order the paths are given, each file once."""
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = sorted(path.rglob("results.json"))
            if not candidates:
                log.warning("no results.json under %s", path)
        else:
            raise FileNotFoundError(f"{path} does not exist")
        for file in candidates:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append(file)
    return found


def _fraction(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def parse_results(path: Path) -> list[Result]:
    """The entries of one results.json; ValueError saying what is wrong when it is not one ``eval`` wrote.
    Entries without a method or protocol record (older files) fall back to ``settings.model`` as the label
    and to the protocol "unknown"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError("not an eval results file (a JSON object of benchmark -> result)")
    results = []
    for bench, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"entry '{bench}' is not an object")
        settings, per_class = entry.get("settings"), entry.get("per_class")
        if "mIoU" not in entry or not _fraction(entry["mIoU"]):
            raise ValueError(f"entry '{bench}': mIoU missing or not a number")
        if not isinstance(per_class, dict) or not all(_fraction(v) for v in per_class.values()):
            raise ValueError(f"entry '{bench}': per_class missing or not class -> IoU")
        if not isinstance(settings, dict):
            raise ValueError(f"entry '{bench}': settings missing")
        method = settings.get("method") or settings.get("model")
        if not isinstance(method, str) or not method:
            raise ValueError(f"entry '{bench}': neither settings.method nor settings.model names the method")
        protocol, digest = entry.get("protocol"), entry.get("protocol_hash")
        known = isinstance(protocol, dict) and isinstance(digest, str) and digest != ""
        results.append(
            Result(
                method=method,
                benchmark=bench,
                miou=entry["mIoU"],
                per_class=per_class,
                protocol_hash=digest if known else UNKNOWN,
                protocol=protocol if known else {},
                preset=settings.get("preset") if isinstance(settings.get("preset"), str) else None,
                source=path,
                options=_options_digest(settings.get("method_options")),
            )
        )
    return results


def _options_digest(options: object) -> str:
    if not isinstance(options, dict) or not options:
        return ""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _variants_apart(results: list[Result]) -> list[Result]:
    """A method label found with different options (settings.method_options) becomes one label per variant,
    ``method {digest}``: two variants are never one cell, whatever their protocols."""
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r.method, set()).add(r.options)
    return [replace(r, method=f"{r.method} {{{r.options or 'no options'}}}") if len(seen[r.method]) > 1 else r
            for r in results]


def load_results(files: Iterable[Path]) -> tuple[list[Result], list[tuple[Path, str]]]:
    """(entries of every readable file, in file order; (file, why) of each file skipped, with a warning)."""
    results: list[Result] = []
    skipped: list[tuple[Path, str]] = []
    for path in files:
        try:
            results += parse_results(path)
        except ValueError as exc:
            log.warning("skipping %s: %s", path, exc)
            skipped.append((path, str(exc)))
    return results, skipped


# --------------------------------------------------------------------------------------------- building


def _latest(results: list[Result]) -> list[Result]:
    """One entry per (method, benchmark, protocol): the later file wins, in the position of the first."""
    kept: dict[tuple[str, str, str], Result] = {}
    for r in results:
        key = (r.method, r.benchmark, r.protocol_hash)
        if key in kept:
            log.info(
                "%s on %s (protocol %s) is in %s and %s; using the later file",
                r.method,
                r.benchmark,
                r.protocol_hash,
                kept[key].source,
                r.source,
            )
        kept[key] = r
    return list(kept.values())


def _layers(entries: list[Result]) -> list[dict[str, Result]]:
    """A method's entries as rows with one cell per benchmark: each entry, in file order, joins the first row
    of its preset that lacks its benchmark, else starts a new row (so a paper-preset run and a unified run
    of the same benchmarks become two full rows)."""
    layers: list[tuple[str | None, dict[str, Result]]] = []
    for r in entries:
        free = (cells for preset, cells in layers if preset == r.preset and r.benchmark not in cells)
        cells = next(free, None)
        if cells is None:
            layers.append((r.preset, cells := {}))
        cells[r.benchmark] = r
    return [cells for _, cells in layers]


def _rows(results: list[Result]) -> list[Row]:
    """One row per method, in order of first appearance. A method found on one benchmark under several
    protocols gets several rows (``_layers``), each labelled ``method [hash]`` by its cell's protocol hash on
    the first such benchmark it has (on its first benchmark if it has none of them)."""
    by_method: dict[str, list[Result]] = {}
    for r in results:
        by_method.setdefault(r.method, []).append(r)
    rows = []
    for method, entries in by_method.items():
        hashes: dict[str, set[str]] = {}
        for r in entries:
            hashes.setdefault(r.benchmark, set()).add(r.protocol_hash)
        split = [b for b in _order(hashes) if len(hashes[b]) > 1]
        if not split:
            rows.append(Row(method, {r.benchmark: r for r in entries}))
            continue
        labels: set[str] = set()
        for cells in _layers(entries):
            key = next((b for b in split if b in cells), _order(cells)[0])
            label = f"{method} [{cells[key].protocol_hash}]"
            while label in labels:  # only protocols not recorded ("unknown") can repeat
                label += "'"
            labels.add(label)
            rows.append(Row(label, cells))
    return rows


def _order(benchmarks: Iterable[str]) -> list[str]:
    """The papers' order: the main eight, the two large vocabularies, then any other alphabetically."""
    known = [*MAIN8, *LARGE]
    return sorted(benchmarks, key=lambda b: (known.index(b), "") if b in known else (len(known), b))


def _columns(rows: list[Row]) -> list[str]:
    benchmarks = _order({b for r in rows for b in r.cells})
    averages = [a for a in AVERAGES if any(r.value(a) is not None for r in rows)]
    main = [b for b in benchmarks if b in MAIN8]
    return [*main, *averages, *benchmarks[len(main) :]]


def _letter(n: int) -> str:
    letters = string.ascii_lowercase
    return letters[n] if n < len(letters) else _letter(n // len(letters) - 1) + letters[n % len(letters)]


def build_table(
    results: list[Result], files: list[Path] | None = None, skipped: list[tuple[Path, str]] | None = None
) -> Table:
    """The table of these entries (in file order: a later duplicate replaces an earlier one)."""
    rows = _rows(_latest(_variants_apart(results)))
    columns = _columns(rows)
    markers: dict[str, dict[str, str]] = {}
    protocols: dict[str, dict] = {}
    for b in [c for c in columns if c not in AVERAGES]:
        digests = list(dict.fromkeys(r.cells[b].protocol_hash for r in rows if b in r.cells))
        if len(digests) > 1:
            markers[b] = {d: _letter(n) for n, d in enumerate(digests)}
        for r in rows:
            if b in r.cells:
                protocols.setdefault(r.cells[b].protocol_hash, r.cells[b].protocol)
    return Table(rows, columns, markers, protocols, list(files or []), list(skipped or []))


# -------------------------------------------------------------------------------------------- rendering


def _percent(value: float | None, decimals: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{decimals}f}"


def _text_cell(table: Table, row: Row, column: str, sup: str) -> str:
    """A Markdown or LaTeX cell: 1 decimal, 'n/a' for a benchmark scored on no image, '' where absent, and
    the protocol marker (``sup`` formats it) where the column mixes protocols."""
    if column not in AVERAGES and column in row.cells and row.cells[column].miou is None:
        text = "n/a"
    else:
        text = _percent(row.value(column))
    marker = table.marker(row, column)
    return text + (sup.format(marker) if marker else "")


def _settings_text(protocol: dict, digest: str) -> str:
    if digest == UNKNOWN:
        return "not recorded (results written before eval recorded its protocol)"
    if not protocol:
        return "no settings recorded"
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in protocol.items())


def legend(table: Table) -> list[tuple[str, str, str, str]]:
    """(column header, marker, protocol hash, its settings) for each marker of the columns mixing
    protocols."""
    return [
        (header(b), letter, digest, _settings_text(table.protocols[digest], digest))
        for b in table.benchmarks
        for digest, letter in table.markers.get(b, {}).items()
    ]


def single_protocols(table: Table) -> list[tuple[str, str]]:
    """(column header, protocol hash) of the columns that hold one protocol: said under the table too, so
    that no cell's protocol goes unnamed."""
    return [
        (header(b), next(r.cells[b].protocol_hash for r in table.rows if b in r.cells))
        for b in table.benchmarks
        if b not in table.markers
    ]


def _single_text(table: Table) -> str:
    pairs = single_protocols(table)
    lead = "One protocol in each other column" if table.markers else "One protocol in each column"
    return f"{lead} (settings in the results files): " + ", ".join(f"{h} {d}" for h, d in pairs) + "."


def _sources_text(table: Table) -> str:
    text = f"Read {len(table.files) - len(table.skipped)} results file(s); skipped {len(table.skipped)}"
    return text + ("." if not table.skipped else ": " + "; ".join(f"{p} ({why})" for p, why in table.skipped))


def markdown(table: Table) -> str:
    """The table as Markdown (mIoU in percent, 1 decimal), the protocol legend and the sources count."""
    lines = [
        "| method | " + " | ".join(header(c) for c in table.columns) + " |",
        "|:---|" + "---:|" * len(table.columns),
    ]
    for r in table.rows:
        cells = [r.label.replace("|", "\\|"), *(_text_cell(table, r, c, "^{}") for c in table.columns)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.markers:
        lines += ["", "Columns that mix protocols mark each cell with its protocol:", ""]
        lines += [f"- {col} ^{m}: `{d}`: {text}" for col, m, d, text in legend(table)]
    if single_protocols(table):
        lines += ["", _single_text(table)]
    lines += ["", _sources_text(table)]
    return "\n".join(lines) + "\n"


def csv_header(table: Table) -> list[str]:
    return [
        "method",
        *(header(c) for c in table.columns),
        *(f"{header(b)} protocol" for b in table.benchmarks),
    ]


def csv_rows(table: Table) -> list[list]:
    """Per row: the label, mIoU in percent rounded to 2 decimals (None where blank), then each benchmark's
    protocol hash (None where absent), so a machine reading the CSV alone can still tell protocols apart."""
    rows = []
    for r in table.rows:
        values = [None if (v := r.value(c)) is None else round(100 * v, 2) for c in table.columns]
        hashes = [r.cells[b].protocol_hash if b in r.cells else None for b in table.benchmarks]
        rows.append([r.label, *values, *hashes])
    return rows


def csv_text(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_header(table))
    for row in csv_rows(table):
        writer.writerow(["" if v is None else (f"{v:.2f}" if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def latex(table: Table) -> str:
    """A booktabs tabular (needs ``\\usepackage{booktabs}``), then the protocol legend as footnote-size
    lines."""
    lines = [
        "\\begin{tabular}{l" + "r" * len(table.columns) + "}",
        "\\toprule",
        "Method & " + " & ".join(latex_escape(header(c)) for c in table.columns) + " \\\\",
        "\\midrule",
    ]
    for r in table.rows:
        cells = [_text_cell(table, r, c, "\\textsuperscript{{{}}}") for c in table.columns]
        lines.append(latex_escape(r.label) + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "", "{\\footnotesize"]
    for col, m, d, text in legend(table):
        mark = f"{latex_escape(col)}\\textsuperscript{{{m}}}~\\texttt{{{latex_escape(d)}}}"
        lines.append(f"{mark}: {latex_escape(text)}\\par")
    if single_protocols(table):
        lines.append(latex_escape(_single_text(table)) + "\\par")
    return "\n".join([*lines, "}"]) + "\n"


# -------------------------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Comparison:
    """Two rows on one benchmark: per-class IoU differences B - A (largest gain of B first), and the classes
    each gets wrong on every pixel (IoU exactly 0; a class never seen, IoU null, is not one of them)."""

    benchmark: str
    miou_a: float | None
    miou_b: float | None
    differences: list[tuple[str, float, float, float]]  # (class, IoU A, IoU B, B - A), fractions
    zero_a: list[str]
    zero_b: list[str]
    not_compared: list[str]  # classes null for either, or named by one only


def compare(table: Table, a: str, b: str) -> list[Comparison]:
    """Per benchmark both rows have, in column order; KeyError listing the table's labels for an unknown
    label."""
    labels = [r.label for r in table.rows]
    unknown = [x for x in (a, b) if x not in labels]
    if unknown:
        raise KeyError(f"unknown method label(s) {', '.join(unknown)}; the table has: {', '.join(labels)}")
    ra, rb = table.row(a), table.row(b)
    out = []
    for bench in table.benchmarks:
        if bench not in ra.cells or bench not in rb.cells:
            continue
        pa, pb = ra.cells[bench].per_class, rb.cells[bench].per_class
        diffs = [
            (name, pa[name], pb[name], pb[name] - pa[name])
            for name in pa
            if pa[name] is not None and pb.get(name) is not None
        ]
        diffs.sort(key=lambda d: -d[3])
        compared = {d[0] for d in diffs}
        out.append(
            Comparison(
                benchmark=bench,
                miou_a=ra.cells[bench].miou,
                miou_b=rb.cells[bench].miou,
                differences=diffs,
                zero_a=[n for n, v in pa.items() if v == 0],
                zero_b=[n for n, v in pb.items() if v == 0],
                not_compared=[n for n in dict.fromkeys([*pa, *pb]) if n not in compared],
            )
        )
    return out


def compare_markdown(a: str, b: str, comparisons: list[Comparison]) -> str:
    def points(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    lines = [f"# {a} (A) vs {b} (B): per-class IoU, B - A in points, largest gain of B first"]
    if not comparisons:
        lines += ["", "The two have no benchmark in common."]
    for c in comparisons:
        gap = "" if c.miou_a is None or c.miou_b is None else f" ({100 * (c.miou_b - c.miou_a):+.2f})"
        lines += [
            "",
            f"## {header(c.benchmark)} ({c.benchmark}): mIoU A {points(c.miou_a)}, B {points(c.miou_b)}{gap}",
            "",
            "| class | A | B | B - A |",
            "|:---|---:|---:|---:|",
        ]
        lines += [f"| {n} | {points(va)} | {points(vb)} | {100 * d:+.2f} |" for n, va, vb, d in c.differences]
        lines += [
            "",
            f"Never right (IoU 0) for A, {a}: {', '.join(c.zero_a) or 'none'}",
            f"Never right (IoU 0) for B, {b}: {', '.join(c.zero_b) or 'none'}",
        ]
        if c.not_compared:
            lines.append(f"Not compared (no IoU for one of them): {', '.join(c.not_compared)}")
    return "\n".join(lines) + "\n"
