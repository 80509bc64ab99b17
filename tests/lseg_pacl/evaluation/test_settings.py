"""The protocol fingerprint: every setting that can change a number changes the hash, nothing else does."""

import pytest

from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.evaluation.settings import fingerprint, label_set_for, names_for, protocol_for

VOC21 = ("background", *[f"c{i}" for i in range(20)])
VOC20 = VOC21[1:]


def hash_of(overrides, bench="voc21", classes=VOC21, pos_embed="lineage", precision="fp32"):
    cfg = load_config("baseline_sclip", ["eval.preset=unified", *overrides])
    e = eval_for(cfg.eval, bench)
    labels = label_set_for(e, bench, classes)
    _, source = names_for(e, bench, classes)
    return fingerprint(e, bench, labels, protocol_for(e, 16), precision, "val", pos_embed, source)


BASE = hash_of([])["protocol_hash"]


@pytest.mark.parametrize("override", [
    "eval.short_side=448", "eval.crop=448", "eval.stride=224", "eval.mode=whole", "eval.templates=raw",
    "eval.names=clearclip", "eval.names=default", "eval.background=threshold", "eval.bg_threshold=0.2",
    "eval.bg_area=0.1", "eval.logit_scale=50", "eval.pamr_iterations=10", "eval.remainder=pad",
    "eval.resize_backend=torch", "eval.scales=[1.0,1.5]", "eval.flip=true",
])
def test_each_setting_that_changes_a_number_changes_the_hash(override):
    assert hash_of([override])["protocol_hash"] != BASE


def test_the_hash_ignores_what_cannot_change_a_number():
    unused = ("eval.pictures=0", "eval.save_predictions=true", "eval.method=mine", "eval.bg_entropy=2.0")
    for override in unused:
        assert hash_of([override])["protocol_hash"] == BASE, override
    # without a background class, the thresholds and the logit scale do nothing: they do not split a column
    voc20 = hash_of([], "voc20", VOC20)["protocol_hash"]
    for override in ("eval.bg_threshold=0.3", "eval.logit_scale=65", "eval.bg_area=0.2"):
        assert hash_of([override], "voc20", VOC20)["protocol_hash"] == voc20, override
    assert hash_of([], pos_embed="resize")["protocol_hash"] != BASE
    assert hash_of([], precision="fp16")["protocol_hash"] != BASE


def test_the_fingerprint_names_its_class_names_by_digest(tmp_path):
    names = tmp_path / "voc21.txt"
    names.write_text("\n".join(VOC21))
    own = hash_of([f"eval.class_names.voc21={names}"])
    assert own["protocol"]["names"] == str(names)
    assert own["protocol"]["names_sha256"] == hash_of(["eval.names=default"])["protocol"]["names_sha256"]
    names.write_text("\n".join(["bg", *VOC21[1:]]))
    assert hash_of([f"eval.class_names.voc21={names}"])["protocol"]["names_sha256"] \
        != own["protocol"]["names_sha256"]
