"""A checkpoint rebuilds the exact architecture it was trained with, whatever the weights' source: CLIP,
PACL and LSeg trained on OpenAI-style weights (ViT-B-32 with the ``openai`` tag: QuickGELU, which only the
tag turns on) reload through ``ckpt=`` (load_objective) and through ``model.clip.pretrained=FILE`` with the
same activation, so their logits are identical. Random weights stand in for OpenAI's (nothing is
downloaded: the tag's record alone decides the architecture)."""

import lightning
import pytest
import torch
from open_clip.transformer import QuickGELU

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.models.clip import ClipBackbone, clip_quick_gelu
from lseg_pacl.objectives import OBJECTIVES, load_objective

NAMES = ("cat", "a red bus", "grass")
EXPERIMENTS = {"clip": "demo_clip", "pacl": "demo_pacl", "lseg": "lseg_demo_seg"}


def quick(clip: ClipBackbone) -> bool:
    return isinstance(clip.model.transformer.resblocks[0].mlp.gelu, QuickGELU)


def trained_on_openai_weights(objective: str):
    cfg = load_config(EXPERIMENTS[objective], ["model.clip.name=ViT-B-32", "model.clip.pretrained=openai"])
    torch.manual_seed(0)
    return OBJECTIVES[objective](to_plain(cfg), load_pretrained=False).eval()  # the tag's architecture


def save(module, path):
    torch.save({"pytorch-lightning_version": lightning.__version__, "hyper_parameters": dict(module.hparams),
                "state_dict": module.state_dict(), "global_step": 0}, path)
    return path


def test_the_openai_tag_means_quickgelu_and_a_bare_name_gelu():
    assert clip_quick_gelu("ViT-B-32", "openai") is True
    assert clip_quick_gelu("ViT-B-32", None) is False
    assert clip_quick_gelu("ViT-B-32", "openai", quick_gelu=False) is False  # said explicitly
    assert clip_quick_gelu("ViT-B-32-quickgelu", None) is True


@pytest.mark.parametrize("objective", ["clip", "pacl", "lseg"])
def test_a_checkpoint_reloads_with_the_activation_it_was_trained_with(objective, tmp_path):
    trained = trained_on_openai_weights(objective)
    assert quick(trained.clip)
    assert trained.hparams["config"]["model"]["clip"]["quick_gelu"] is True  # written into its checkpoints
    path = save(trained, tmp_path / "last.ckpt")
    reloaded = load_objective(path).eval()
    assert quick(reloaded.clip)
    image = torch.randn(1, 3, 64, 96)  # non-square
    with torch.no_grad():
        for a, b in ((trained, reloaded),):
            ea, eb = a.clip.class_embeddings(NAMES, a.templates), b.clip.class_embeddings(NAMES, b.templates)
            assert torch.equal(ea, eb)
            assert torch.equal(a.logits(image, ea, (64, 96)), b.logits(image, eb, (64, 96)))


@pytest.mark.parametrize("objective", ["clip", "lseg"])
def test_its_clip_as_a_weights_file_builds_the_same_activation(objective, tmp_path):
    """``model.clip.pretrained=<our checkpoint>``: the file's own config decides (an LSeg checkpoint holds the
    text tower only)."""
    trained = trained_on_openai_weights(objective)
    path = save(trained, tmp_path / "last.ckpt")
    image_tower = objective != "lseg"
    clip = ClipBackbone("ViT-B-32", str(path), image_tower=image_tower).eval()
    clip.requires_grad_(any(p.requires_grad for p in trained.clip.parameters()))  # frozen as it was (the
    # attention takes another kernel for frozen weights)
    assert quick(clip)
    with torch.no_grad():
        ours, theirs = clip.class_embeddings(NAMES, ("{}",)), trained.clip.class_embeddings(NAMES, ("{}",))
    assert torch.equal(ours, theirs)
