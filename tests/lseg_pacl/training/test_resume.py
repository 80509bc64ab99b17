"""What a resume may change: the keys it names exist, harmless ones pass, model and data changes are
refused."""

from omegaconf import OmegaConf

from lseg_pacl.config.loading import load_config, valid_keys
from lseg_pacl.training.resume import RESUME_MAY_CHANGE, resume_changes


def test_every_key_a_resume_may_change_is_in_the_schema():
    keys = set(valid_keys())
    for allowed in RESUME_MAY_CHANGE:
        assert allowed.rstrip(".") in keys, allowed


def test_changes_are_sorted_into_refused_and_allowed():
    saved = load_config("demo_clip")
    now = load_config("demo_clip", ["trainer.max_steps=9", "optim.lr=0.1", "eval.mode=slide"])
    refused, allowed = resume_changes(saved, now)
    assert refused == ["optim.lr"] and allowed == ["eval.mode", "trainer.max_steps"]
    assert resume_changes(saved, OmegaConf.create(OmegaConf.to_container(saved))) == ([], [])
