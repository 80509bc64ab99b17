from pathlib import Path

import pytest

from lseg_pacl.commands.cli import main
from lseg_pacl.config.loading import closest_keys, load_config
from lseg_pacl.errors import ConfigError


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_unknown_key_exits_2_and_names_the_closest_keys(capsys):
    code, err = run_cli(capsys, "train", "demo_clip", "trainer.max_stepz=3")
    assert code == 2
    assert "trainer.max_stepz" in err and "trainer.max_steps" in err


def test_unknown_key_in_a_section_suggests_its_neighbours():
    assert "optim.lr" in closest_keys("optim.lrr")
    assert "model.pacl.temperature" in closest_keys("model.pacl.temprature")


def test_wrong_type_exits_2_and_names_the_key(capsys):
    code, err = run_cli(capsys, "train", "demo_clip", "trainer.max_steps=many")
    assert code == 2
    assert "trainer.max_steps" in err


def test_bad_experiment_name_exits_2_with_suggestion(capsys):
    code, err = run_cli(capsys, "train", "demo_clp")
    assert code == 2
    assert "demo_clp" in err and "demo_clip" in err


def test_value_outside_the_choices_is_an_error(capsys):
    code, err = run_cli(capsys, "train", "demo_clip", "model.objective=lseg2")
    assert code == 2 and "model.objective" in err


def test_override_without_equals_is_an_error(capsys):
    code, err = run_cli(capsys, "train", "demo_clip", "trainer.max_steps")
    assert code == 2 and "key=value" in err


def test_experiment_extends_its_base_and_overrides_win():
    base = load_config("demo_clip")
    child = load_config("demo_pacl", ["optim.lr=0.25", "seed=7"])
    assert child.model.objective == "pacl" and base.model.objective == "clip"
    assert child.data.train == base.data.train  # inherited, though the child sets another key of data
    assert child.data.batch_size != base.data.batch_size  # the child's own value
    assert child.optim.lr == 0.25 and child.seed == 7
    assert child.run.experiment == "demo_pacl"


def test_interpolations_follow_overrides():
    cfg = load_config("demo_clip", ["data.synthetic.out=/elsewhere"])
    assert cfg.data.train.root == "/elsewhere/coco"


def test_base_cycle_is_reported(tmp_path: Path, monkeypatch):
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    monkeypatch.setenv("LSEG_PACL_EXPERIMENTS", str(tmp_path))
    with pytest.raises(ConfigError, match="cycle"):
        load_config("a")


def test_unknown_key_inside_an_experiment_file_names_the_file(tmp_path: Path, monkeypatch):
    (tmp_path / "bad.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    monkeypatch.setenv("LSEG_PACL_EXPERIMENTS", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config("bad")
    assert "optim.learning_rate" in str(info.value) and "bad.yaml" in str(info.value)


def test_every_shipped_experiment_loads():
    from lseg_pacl.config.loading import available_experiments

    names = available_experiments()
    assert {"demo", "demo_clip", "demo_pacl", "pacl_vitb16"} <= set(names)
    for name in names:
        load_config(name)


def test_unresolvable_interpolation_is_a_config_error(capsys):
    code, err = run_cli(capsys, "train", "demo_clip", "data.train.root=${nope}/coco")
    assert code == 2 and "data.train.root" in err


@pytest.mark.parametrize("override", ["model.noun_prompt_templates=9", "model.pacl.temperature=0"])
def test_out_of_range_values_are_config_errors(capsys, override):
    code, err = run_cli(capsys, "train", "demo_pacl", override)
    assert code == 2 and override.split("=")[0] in err


def test_benchmark_names_are_checked_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean context59"):
        load_config("pacl_vitb16", ["data.val.datasets=[context95]"])
    cfg = load_config("pacl_vitb16", ["data.val.datasets=[ade20k,voc20,coco_stuff171]"])
    assert list(cfg.data.val.datasets) == ["ade20k", "voc20", "coco_stuff171"]


def test_shard_training_needs_sources_and_an_epoch_length():
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        load_config("pacl_vitb16_shards", ["data.train.samples_per_epoch=null"])
    with pytest.raises(ConfigError, match="data.train.shards"):
        load_config("pacl_vitb16", ["data.train.format=shards", "data.train.samples_per_epoch=1000"])
    with pytest.raises(ConfigError, match="pipe"):
        load_config("pacl_vitb16_shards", ["data.train.shards=[{urls: ['pipe:curl x']}]"])
    cfg = load_config("pacl_vitb16_shards", ["data.train.shards=[{urls: ['/d/{000..009}.tar'], weight: 2}]"])
    assert cfg.data.train.shards[0].urls == ["/d/{000..009}.tar"] and cfg.data.train.shards[0].weight == 2


def test_saved_configs_of_the_single_benchmark_schema_still_load(tmp_path):
    from lseg_pacl.config.loading import load_saved

    old = tmp_path / "config.yaml"
    old.write_text("data:\n  val:\n    dataset: synthetic\n    root: /w/ADEChallengeData2016\n")
    cfg = load_saved(old)
    assert list(cfg.data.val.datasets) == ["synthetic"] and cfg.data.val.roots == {
        "synthetic": "/w/ADEChallengeData2016"
    }


def test_several_bases_merge_in_order_each_file_once(tmp_path: Path, monkeypatch):
    (tmp_path / "common.yaml").write_text("optim:\n  lr: 1.0\n  weight_decay: 0.5\nseed: 1\n")
    (tmp_path / "dataset.yaml").write_text("base: common\ndata:\n  batch_size: 7\nseed: 2\n")
    (tmp_path / "schedule.yaml").write_text("base: common\noptim:\n  lr: 3.0\n")  # common again: merged once
    (tmp_path / "exp.yaml").write_text(
        "base: [dataset, schedule]\nmodel:\n  objective: clip\n  clip:\n"
        "    name: lseg-tiny-vit\ndata:\n  val:\n    datasets: [synthetic]\n"
    )
    monkeypatch.setenv("LSEG_PACL_EXPERIMENTS", str(tmp_path))
    cfg = load_config("exp")
    # common, dataset, schedule, exp: a second merge of common would have put lr back to 1.0
    assert (
        cfg.optim.lr == 3.0 and cfg.optim.weight_decay == 0.5 and cfg.data.batch_size == 7 and cfg.seed == 2
    )
    (tmp_path / "bad.yaml").write_text("base: [common, 3]\n")
    with pytest.raises(ConfigError, match="base must be an experiment name or a list"):
        load_config("bad")
