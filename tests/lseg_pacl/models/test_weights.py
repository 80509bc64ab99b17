"""Weight sources: what names a set of weights for a cache key, and the one reading of yes/no words."""

import pytest
import torch

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.weights import clip_weights_identity, vit_weights_source


def test_a_weights_file_is_named_by_its_bytes(tmp_path):
    path = tmp_path / "clip.pt"
    torch.save({"w": torch.zeros(3)}, path)
    first = clip_weights_identity("lseg-tiny-vit", str(path))
    assert first == clip_weights_identity("lseg-tiny-vit", str(path)) and first.startswith("sha256:")
    torch.save({"w": torch.tensor([0.0, 0.0, 1e-3])}, path)
    assert clip_weights_identity("lseg-tiny-vit", str(path)) != first


def test_tags_are_named_by_model_and_tag_and_random_weights_by_nothing(tmp_path):
    assert clip_weights_identity("ViT-B-16", "openai") == "open_clip:ViT-B-16:openai"
    assert clip_weights_identity("ViT-B-16", "openai") != clip_weights_identity("ViT-B-32", "openai")
    assert clip_weights_identity("lseg-tiny-vit", None) is None
    with pytest.raises(MissingInputError, match="does not exist"):
        clip_weights_identity("lseg-tiny-vit", str(tmp_path / "gone.pt"))


@pytest.mark.parametrize("value,expected", [
    (None, ("none", None)), (True, ("hub", None)), ("true", ("hub", None)), ("No", ("none", None)),
    ("imagenet", ("hub", None)), ("random", ("none", None)), ("augreg_in21k", ("hub", "augreg_in21k")),
    ("./vit.pth", ("file", "./vit.pth"))])
def test_vit_weight_sources_read_yes_no_words_like_every_option(value, expected):
    assert vit_weights_source(value) == expected


def test_a_misspelt_yes_no_word_is_a_tag_of_its_own_not_silently_false():
    with pytest.raises(ConfigError, match="neither a file nor a timm pretrained tag"):
        from lseg_pacl.models.weights import timm_hub_source

        timm_hub_source("vit_base_patch32_384", vit_weights_source("ture")[1])


def test_an_lseg_checkpoint_gives_clip_text_weights_but_no_image_tower(tmp_path):
    from lseg_pacl.models.clip import ClipBackbone, create_clip

    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None, image_tower=False)  # what an LSeg module holds
    path = tmp_path / "lseg.ckpt"
    state = {f"clip.model.{k}": v for k, v in clip.model.state_dict().items()}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.6"}, path)
    text_only = ClipBackbone("lseg-tiny-vit", str(path), image_tower=False)
    assert torch.equal(text_only.encode_text(["a sky"]), clip.encode_text(["a sky"]))
    with pytest.raises(MissingInputError, match="holds no CLIP image tower"):
        create_clip("lseg-tiny-vit", str(path))  # PACL or CLIP need the image tower too
