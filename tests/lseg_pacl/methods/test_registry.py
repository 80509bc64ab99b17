"""The training-free methods' interface: registry, options, and the last-block rows through it."""

import pytest
import torch

from lseg_pacl.config.loading import load_config
from lseg_pacl.errors import ConfigError
from lseg_pacl.methods import METHODS, build_method
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.last_block import VARIANTS
from lseg_pacl.models.trunk import Needs
from lseg_pacl.models.zeroshot import zero_shot_logits


def test_every_last_block_is_a_method_giving_the_backbone_s_own_logits():
    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None).eval()
    images = torch.randn(1, 3, 40, 48)
    text = torch.nn.functional.normalize(torch.randn(5, clip.embed_dim), dim=-1)
    assert set(VARIANTS) <= set(METHODS)
    with torch.no_grad():
        trunk = clip.trunk(images)
        for variant in VARIANTS:
            clip.last_block = variant
            expected = zero_shot_logits(clip.dense_features(images), trunk.grid, text, (40, 48))
            got = build_method(variant).logits(clip, trunk, images, text, (40, 48))
            assert torch.equal(got, expected), variant


def test_the_trunk_keeps_what_is_asked_and_refuses_what_it_does_not_have():
    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None).eval()
    images = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        trunk = clip.trunk(images, Needs(frozenset({1, 3}), frozenset({2})))
    assert set(trunk.outputs) == {1, 3} and set(trunk.attentions) == {2} and trunk.layers == 4
    assert trunk.attentions[2].shape == (2, 4, 21, 21)
    assert torch.allclose(trunk.attentions[2].sum(-1), torch.ones(2, 4, 21))
    assert torch.equal(trunk.outputs[3], trunk.x)  # block 3 of 4 feeds the last block
    with pytest.raises(ValueError, match="1..3"):
        clip.trunk(images, Needs(frozenset({4})))


def test_options_are_checked_against_the_method_s_own():
    with pytest.raises(ValueError, match="no option"):
        build_method("sclip", {"tau": 2.0})
    with pytest.raises(ValueError, match="unknown training-free method"):
        build_method("nope")
    with pytest.raises(ConfigError, match="method_options"):
        load_config("baseline_sclip", ["eval.method_options.tau=2.0"])


def test_one_options_mapping_serves_several_methods():
    from lseg_pacl.methods import options_for

    options = {"resclip": {"rcs_layers": [1, 2]}, "scclip": {"lof_k": 8}, "gaussian_std": 3.0}
    assert options_for("resclip", options) == {"rcs_layers": [1, 2], "gaussian_std": 3.0}
    assert options_for("scclip", {"scclip": {"lof_k": 8}, "resclip": {"tau_r": 1.0}}) == {"lof_k": 8}
    assert build_method("resclip", options).options["rcs_layers"] == [1, 2]
    with pytest.raises(ValueError, match="no option"):
        build_method("scclip", options)  # the plain key is meant for every method: scclip has none such
    with pytest.raises(ValueError, match="must be a mapping"):
        options_for("pearl", {"pearl": 3})
