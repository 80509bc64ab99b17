import pytest
import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.models.prompts import PACL_TEMPLATES
from lseg_pacl.objectives.pacl import Pacl
from lseg_pacl.objectives.texts import noun_prompts


def test_noun_prompts_use_every_template_and_mark_every_image_naming_the_noun():
    prompts, has = noun_prompts([["ball", "sky"], [], ["sky"]])
    assert prompts == [t.format("ball") for t in PACL_TEMPLATES] + [t.format("sky") for t in PACL_TEMPLATES]
    assert has.tolist() == [[True] * 14, [False] * 14, [False] * 7 + [True] * 7]


def test_noun_prompts_with_a_template_subset():
    torch.manual_seed(0)
    prompts, has = noun_prompts([["ball", "sky"], ["ball"]], per_noun=2)
    assert len(prompts) == 4 and len(set(prompts)) == 4
    assert all(any(t.format("ball") == p for t in PACL_TEMPLATES) for p in prompts[:2])
    assert has.tolist() == [[True] * 4, [True, True, False, False]]
    with pytest.raises(ValueError):
        noun_prompts([["ball"]], per_noun=8)


def module(**over) -> Pacl:
    cfg = load_config("demo_pacl", ["model.clip.pretrained=null", *[f"{k}={v}" for k, v in over.items()]])
    return Pacl(to_plain(cfg))


def batch(n=4):
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.randn(n, 3, 64, 64, generator=g),
        "caption": [f"a ball number {i}" for i in range(n)],
        "nouns": [["ball"], ["sky", "ball"], [], ["grass"]][:n],
    }


def test_training_step_trains_only_the_embedder_and_scales():
    m = module()
    m.train()
    assert not m.clip.model.visual.training and not m.clip.model.transformer.training  # frozen: eval mode
    loss = m.training_step(batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.embedder.skip.weight.grad is not None and m.embedder.main[0].weight.grad is not None
    assert all(p.grad is None for p in m.clip.parameters())
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in m.embedder.named_parameters(prefix="embedder")} | {"log_logit_scale"}


def test_embedder_can_start_as_clips_projection():
    m = module(**{"model.pacl.init_skip_from_proj": "true"})
    images = batch()["image"]
    with torch.no_grad():
        torch.testing.assert_close(
            m.dense_embeddings(images), m.clip.dense_features(images), rtol=1e-5, atol=1e-5
        )


def test_temperature_can_be_learned_and_text_unfrozen():
    m = module(**{"model.pacl.learn_temperature": "true", "model.pacl.freeze_text": "false"})
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "log_temperature" in names
    assert any(n.startswith("clip.model.transformer.") for n in names)
    assert not any(n.startswith("clip.model.visual.") for n in names)
