"""Allowed values come from the registries themselves; required keys are named when a command needs them."""

import pytest

from lseg_pacl.config.loading import load_config
from lseg_pacl.config.validation import check_trainable, choices
from lseg_pacl.errors import ConfigError


def test_a_newly_registered_name_is_allowed_at_once(monkeypatch):
    import lseg_pacl.models.prompts as prompts

    with pytest.raises(ConfigError, match="eval.templates"):
        load_config("demo_clip", ["eval.templates=mine"])
    monkeypatch.setitem(prompts.TEMPLATE_SETS, "mine", ("a {} of mine",))
    assert load_config("demo_clip", ["eval.templates=mine"]).eval.templates == "mine"


def test_every_key_with_choices_is_a_key_of_the_schema():
    from lseg_pacl.config.loading import valid_keys

    assert set(choices()) <= set(valid_keys())


def test_keys_every_command_needs_are_named():
    with pytest.raises(ConfigError, match="model.objective, model.clip.name must be set"):
        load_config("demo_clip", ["model.objective=null", "model.clip.name=null"])


def test_a_config_without_a_recipe_cannot_train_and_says_what_is_missing():
    check_trainable(load_config("demo_clip"))  # the demo states its whole recipe
    with pytest.raises(ConfigError, match="optim.lr is not set"):
        check_trainable(load_config("demo_clip", ["optim.lr=null"]))
    with pytest.raises(ConfigError, match="data.train.dataset, data.train.base_size are not set"):
        check_trainable(
            load_config("lseg_demo_seg", ["data.train.dataset=null", "data.train.base_size=null"])
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.val.episodes=[pascal6i]"], "unknown episode benchmark"),
        (["data.train.dataset=voc21"], "unknown episode benchmark"),
        (["data.fold=5"], "synthetic has folds 0..4"),
        (["data.train.dataset=pascal5i", "data.val.episodes=[pascal5i]", "data.fold=4"], "folds 0..3"),
        (["data.episodes.size=0"], "must be > 0"),
        (["data.train.format=segmentation", "data.train.dataset=synthetic"], "validated by episode training"),
    ],
)
def test_episode_settings_are_checked_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("lseg_zs_demo_episodes", overrides)


def test_the_zero_shot_experiments_load_with_a_fold_as_key():
    named = (("lseg_zs_pascal", "pascal5i"), ("lseg_zs_coco", "coco20i"), ("lseg_zs_fss", "fss1000"))
    for name, dataset in named:
        cfg = load_config(name, ["data.fold=0"] if name == "lseg_zs_fss" else ["data.fold=3"])
        assert cfg.data.train.format == "episodes" and cfg.data.train.dataset == dataset
        assert list(cfg.data.val.episodes) == [dataset] and cfg.data.episodes.size == 480
        check_trainable(cfg)
    assert load_config("lseg_zs_pascal").model.lseg.backbone == "resnet101"
    assert load_config("lseg_zs_fss").model.lseg.backbone == "vit_large_patch16_384"
