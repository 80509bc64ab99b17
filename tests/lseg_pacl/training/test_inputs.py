"""Dataset roots from config or DATA_ROOT, and the fast start-up check of every dataset a run needs."""

import pytest
from support.layouts import make_shards, make_voc

from lseg_pacl.config.loading import load_config
from lseg_pacl.errors import MissingInputError
from lseg_pacl.training.inputs import check_inputs, val_roots


def test_benchmarks_are_found_under_data_root(tmp_path, monkeypatch):
    make_voc(tmp_path, n=2)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    cfg = load_config("pacl_vitb16", ["data.val.datasets=[voc21]"])
    assert val_roots(cfg) == {"voc21": tmp_path / "VOCdevkit" / "VOC2012"}
    check_inputs(cfg, train=False)
    other = tmp_path / "elsewhere"
    make_voc(other, n=1)
    cfg = load_config("pacl_vitb16", ["data.val.datasets=[voc21]", f"data.root={other}"])  # config wins
    assert val_roots(cfg) == {"voc21": other / "VOCdevkit" / "VOC2012"}


def test_a_missing_benchmark_stops_with_its_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    cfg = load_config("pacl_vitb16", ["data.val.datasets=[coco_stuff171]"])
    with pytest.raises(MissingInputError, match="_labelTrainIds.png") as err:
        check_inputs(cfg, train=False)
    assert "data.val.roots.coco_stuff171" in str(err.value)


def test_shard_sources_are_checked_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    make_voc(tmp_path, n=1)
    shards = "data.train.shards=[{urls: ['" + str(tmp_path / "cc" / "{00000..00003}.tar") + "']}]"
    cfg = load_config("pacl_vitb16_shards", [shards, "data.val.datasets=[voc20]"])
    with pytest.raises(MissingInputError, match="none of the 4 shards"):
        check_inputs(cfg)
    make_shards(tmp_path / "cc", n_shards=2, per_shard=2)  # half of them: a warning, then counted skips
    check_inputs(cfg)


def test_url_schemes_without_a_file_system_stop_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    make_voc(tmp_path, n=1)
    shards = "data.train.shards=[{urls: ['nosuchproto://bucket/{0..3}.tar']}]"
    cfg = load_config("pacl_vitb16_shards", [shards, "data.val.datasets=[voc20]"])
    with pytest.raises(MissingInputError, match="nosuchproto://"):
        check_inputs(cfg)
