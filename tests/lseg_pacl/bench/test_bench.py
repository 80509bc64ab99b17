import json

import pytest

from lseg_pacl.commands.cli import main


@pytest.mark.slow
def test_bench_writes_every_figure_with_its_unit_and_the_machine(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["bench", "suites=data", f"out={out}"]) == 0
    results = json.loads(out.read_text())
    assert results["machine"]["cpus"] >= 1 and results["full"] is False
    figures = results["figures"]
    for recipe in ("pacl_224_shards", "lseg_480_ade20k"):
        assert figures[f"data.{recipe}.images_per_s_per_worker"]["unit"] == "images/s"
        assert figures[f"data.{recipe}.images_per_s_per_worker"]["value"] > 0
        ratio = figures[f"data.{recipe}.scaling_2_vs_1_workers"]["value"]
        two, one = (figures[f"data.{recipe}.images_per_s_{k}"]["value"] for k in ("2_workers", "per_worker"))
        assert ratio == pytest.approx(two / one)
    assert "data.pacl_224_shards" in capsys.readouterr().out


def test_unknown_suites_are_named(capsys):
    assert main(["bench", "suites=gpu_magic"]) == 2
    err = capsys.readouterr().err
    assert "gpu_magic" in err and "known: " in err and "pacl_loss" in err and "data" in err
