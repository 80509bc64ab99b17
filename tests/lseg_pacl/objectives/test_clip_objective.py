import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.objectives.clip_contrastive import ClipContrastive


def module(*over: str) -> ClipContrastive:
    return ClipContrastive(to_plain(load_config("demo_clip", list(over))))


def batch():
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(3, 3, 64, 64, generator=g),
        "caption": ["a ball", "the sky", "a box on sand"],
        "nouns": [["ball"], ["sky"], ["box", "sand"]],
    }


def test_clip_step_trains_both_towers_and_the_logit_scale():
    m = module("model.noun_prompt_templates=0")
    loss = m.training_step(batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.clip.model.visual.conv1.weight.grad is not None
    assert m.clip.model.token_embedding.weight.grad is not None
    assert m.clip.model.logit_scale.grad is not None


def test_noun_prompts_change_the_clip_loss_and_can_be_switched_off():
    torch.manual_seed(0)
    with_nouns = module("model.noun_prompt_templates=7").training_step(batch(), 0)
    torch.manual_seed(0)
    without = module("model.noun_prompt_templates=0").training_step(batch(), 0)
    assert torch.isfinite(with_nouns) and not torch.isclose(with_nouns, without)


def test_logit_scale_can_be_frozen():
    m = module("model.learn_logit_scale=false")
    assert not m.clip.model.logit_scale.requires_grad
