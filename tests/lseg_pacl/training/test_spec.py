"""What data and model both need comes from the config, before either is built, and the built model agrees."""

import pytest
import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.models.clip import ClipBackbone, clip_geometry
from lseg_pacl.objectives import build_objective, input_spec
from lseg_pacl.training.spec import run_spec


@pytest.mark.parametrize("experiment,over", [
    ("demo_clip", []), ("demo_pacl", []), ("lseg_demo_seg", []),
    ("pacl_vitb16", ["model.clip.pretrained=null"]),
    ("lseg_vitb32_ade20k", ["model.clip.pretrained=null", "model.lseg.backbone_pretrained=null"]),
])
def test_the_input_spec_from_the_config_is_what_the_built_model_takes(experiment, over):
    cfg = load_config(experiment, ["model.clip.pretrained=null", *over])
    spec = input_spec(cfg)
    module = build_objective(to_plain(cfg)).eval()
    assert spec.patch == module.patch_size
    x = torch.randn(1, 3, 2 * spec.patch, 3 * spec.patch)  # the model takes inputs of this spec's sides
    assert module.logits(x, torch.randn(2, module.clip.embed_dim), (4, 6)).shape == (1, 2, 4, 6)


def test_normalisation_comes_from_the_weights_tag_else_openais_statistics(monkeypatch):
    import open_clip

    from lseg_pacl.models.clip import clip_normalisation

    openai = (tuple(open_clip.constants.OPENAI_DATASET_MEAN), tuple(open_clip.constants.OPENAI_DATASET_STD))
    assert clip_normalisation("ViT-B-16", None) == openai
    assert clip_normalisation("ViT-B-16", "/weights/mine.pt") == openai  # a file: no record to read
    record = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "hf_hub": "x/y/"}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: record if tag == "mytag" else {})
    assert clip_normalisation("ViT-B-16", "mytag") == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("name", ["lseg-tiny-vit", "ViT-B-16-quickgelu", "ViT-B-32"])
def test_clip_geometry_from_its_config_matches_the_built_tower(name):
    geometry = clip_geometry(name)
    clip = ClipBackbone(name, None)
    visual = clip.model.visual
    assert geometry.patch == visual.patch_size[0] and geometry.width == visual.conv1.out_channels
    assert geometry.image_size == visual.image_size[0] and geometry.embed_dim == visual.output_dim
    x = torch.randn(1, 3, 2 * geometry.patch, 3 * geometry.patch)
    assert clip.patch_tokens(x).shape == (1, 6, geometry.width)


def test_the_run_spec_names_each_benchmark_with_its_classes(tiny):
    cfg = load_config("lseg_demo_seg", [*tiny, "model.clip.pretrained=null"])
    spec = run_spec(cfg)
    assert [b.name for b in spec.benchmarks] == ["synthetic"]
    assert spec.benchmarks[0].class_names[:3] == ("sky", "wall", "grass")
    assert spec.train_classes == spec.benchmarks[0].class_names  # LSeg learns the same world's labels


def test_a_size_the_patch_does_not_divide_is_named(tiny):
    from lseg_pacl.errors import ConfigError

    with pytest.raises(ConfigError, match="data.train.image_size=60 must divide by .* patch size 8"):
        run_spec(load_config("demo_clip", [*tiny, "data.train.image_size=60"]))
