"""Label sets: synonyms (max over a class's names), background rules, prompt sets."""

import json
import math

import pytest
import torch
from support.official import postprocess

from lseg_pacl.evaluation.labels import LabelSet, read_synonyms
from lseg_pacl.models.prompts import templates


def test_a_class_takes_the_max_over_its_names():
    labels = LabelSet.of([["cat", "kitten"], "dog"])
    assert labels.texts == ("cat", "kitten", "dog")
    text_logits = torch.tensor([0.1, 0.7, 0.5]).view(1, 3, 1, 1)
    assert labels.class_logits(text_logits).flatten().tolist() == pytest.approx([0.7, 0.5])
    assert labels.predict(labels.class_logits(text_logits)).item() == 0


def test_threshold_background_uses_the_other_classes_only():
    labels = LabelSet.of(["background", "cat", "dog"], background_index=0, rule="threshold", scale=40.0,
                         threshold=0.6)
    assert labels.texts == ("cat", "dog") and labels.scored == [1, 2]
    sure = torch.tensor([0.30, 0.20]).view(1, 2, 1, 1)  # top 1 / (1 + e^-4) = 0.98
    unsure = torch.tensor([0.21, 0.20]).view(1, 2, 1, 1)  # top 1 / (1 + e^-0.4) = 0.599 < 0.6
    assert labels.predict(sure).item() == 1 and labels.predict(unsure).item() == 0


def test_entropy_background_and_text_background():
    ent = LabelSet.of(
        ["background", "a", "b", "c"], background_index=0, rule="entropy", scale=1.0, entropy=1.0
    )
    flat = torch.zeros(1, 3, 1, 1)  # uniform over 3: entropy ln 3 = 1.10 > 1.0
    peaked = torch.tensor([5.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert math.log(3) > 1.0 and ent.predict(flat).item() == 0 and ent.predict(peaked).item() == 1
    text = LabelSet.of(["background", "a"], background_index=0, rule="text")
    assert (
        text.texts == ("background", "a")
        and text.predict(torch.tensor([0.9, 0.1]).view(1, 2, 1, 1)).item() == 0
    )


def test_synonym_files(tmp_path):
    txt = tmp_path / "names.txt"
    txt.write_text("person, people\nsky\n")
    assert read_synonyms(txt, 2) == (("person", "people"), ("sky",))
    js = tmp_path / "names.json"
    js.write_text(json.dumps(["person", ["sky", "clouds"]]))
    assert read_synonyms(js, 2) == (("person",), ("sky", "clouds"))
    with pytest.raises(ValueError, match="names 2 classes"):
        read_synonyms(js, 3)


def test_prompt_sets():
    assert templates("raw") == ("{}",) and len(templates("pacl7")) == 7
    imagenet = templates("imagenet80")
    assert len(imagenet) == 80 == len(set(imagenet)) and all("{}" in t for t in imagenet)
    assert "itap of a {}." in imagenet


# ------------------------------------------------------------------ the lineage's softmax rule


@pytest.mark.parametrize("scale,thd,area", [(40, 0.0, None), (65, 0.1, 0.1), (50, 0.4, None), (65, 0.3, 0.2)])
def test_softmax_rule_equals_the_official_postprocessing(scale, thd, area):
    """SCLIP clip_segmentor.py:148-170 (tests/support/official.py): synonyms, area and probability
    thresholds."""
    classes = [["sky", "wall", "bed"], ["cat"], ["person", "person in shirt", "body"], ["dog"],
               ["bed", "cot"]]
    query_idx = [c for c, names in enumerate(classes) for _ in names]
    g = torch.Generator().manual_seed(int(scale + 100 * thd))
    text_logits = (torch.rand(2, len(query_idx), 13, 17, generator=g, dtype=torch.float64) - 0.5) * 0.3
    labels = LabelSet.of(classes, background_index=0, rule="softmax", scale=scale, threshold=thd, area=area)
    assert labels.texts == tuple(n for c in classes for n in c)
    assert labels.window_logits(text_logits) is text_logits
    pred = labels.predict(text_logits)
    for b in range(2):
        assert torch.equal(pred[b], postprocess(text_logits[b].clone(), query_idx, scale, thd, area))


def test_softmax_rule_ties_go_to_the_lower_class_so_a_shared_name_never_wins():
    """SCLIP's COCO-Object background line holds 'bed', class 60's only name: equal texts, equal scores, and
    argmax takes the first."""
    classes = [["sky", "bed"], ["cat"], ["bed"]]
    logits = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    logits[:, 3] = logits[:, 1]  # the two 'bed' texts score alike, as identical prompts do
    pred = LabelSet.of(classes, background_index=0, rule="softmax").predict(logits)
    assert not (pred == 2).any() and (logits[:, 1] >= logits[:, [0, 2]].amax(1)).any()


def test_softmax_rule_without_background_only_takes_the_argmax():
    labels = LabelSet.of([["a"], ["b", "bb"], ["c"]], rule="softmax", threshold=0.9)
    logits = torch.randn(1, 4, 5, 6)
    expected = torch.stack([logits[:, 0], logits[:, 1:3].amax(1), logits[:, 3]], 1).argmax(1)
    assert torch.equal(labels.predict(logits), expected)
