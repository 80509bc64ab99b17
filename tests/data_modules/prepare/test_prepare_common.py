"""The writing rules every ``data prepare`` converter shares (prepare/common.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.prepare.common import Summary, encode, put, same_content, standard_out, write_atomic


def test_same_content_compares_pixels_not_encoders(tmp_path):
    ids = np.arange(64, dtype=np.uint8).reshape(8, 8)
    data = encode(Image.fromarray(ids), "PNG")
    other_bytes = tmp_path / "a.png"
    Image.fromarray(ids).save(other_bytes, "PNG", compress_level=0)
    assert other_bytes.read_bytes() != data and same_content(other_bytes, data)
    assert not same_content(other_bytes, data, decoded=False)  # raw copies (images) compare bytes only
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "b.png")  # same values, other mode
    assert not same_content(tmp_path / "b.png", data)
    (tmp_path / "c.png").write_bytes(b"junk")
    assert not same_content(tmp_path / "c.png", data) and not same_content(tmp_path / "none.png", data)


def test_put_counts_and_write_atomic_leaves_only_the_file(tmp_path):
    summary = Summary("x", "src", "out", "val")
    target = tmp_path / "deep" / "f.bin"
    put(summary, target, b"one", decoded=False)
    put(summary, target, b"one", decoded=False)
    put(summary, target, b"two", decoded=False)
    assert (summary.written, summary.skipped_same, summary.conflicts) == (1, 1, 1)
    assert target.read_bytes() == b"one" and summary.as_dict()["conflict_files"] == [str(target)]
    write_atomic(tmp_path / "g.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "g.bin"]


def test_output_and_source_folders(tmp_path):
    assert standard_out(tmp_path, "VOCdevkit/VOC2010") == tmp_path / "VOCdevkit" / "VOC2010"
    assert standard_out(tmp_path / "VOCdevkit" / "VOC2010", "VOCdevkit/VOC2010") == Path(
        tmp_path / "VOCdevkit" / "VOC2010")
    assert standard_out(tmp_path / "ADE20K_2021_17_01", "ADE20K_2021_17_01") == tmp_path / "ADE20K_2021_17_01"
