"""Several training-free rows on one CLIP: one pass over the data, blocks 1..L-1 once per window, and every
row scored exactly as it would be alone."""

import pytest
import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.evaluation.evaluator import Member, evaluate_members
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.last_block import VARIANTS
from lseg_pacl.objectives import build_objective

ROWS = ("clip", "maskclip", "sclip", "clearclip", "naclip")


def test_shared_trunk_features_are_bitwise_those_of_one_at_a_time():
    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None, pos_embed="lineage").eval()
    images = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        many = clip.dense_features_many(images, list(VARIANTS))
        for variant, shared in zip(VARIANTS, many, strict=True):
            clip.last_block = variant
            assert torch.equal(shared, clip.dense_features(images)), variant


def test_the_trunk_runs_once_for_all_rows():
    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None).eval()
    calls = []
    first = clip.model.visual.transformer.resblocks[0]
    handle = first.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        clip.dense_features_many(torch.randn(1, 3, 32, 32), list(VARIANTS))
    handle.remove()
    assert len(calls) == 1


@pytest.fixture
def row_configs(world, tiny_clip_file, tmp_path):
    common = ["model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}",
              f"data.val.roots.synthetic={world}", "eval.benchmarks=[synthetic]", "eval.max_images=3",
              "eval.preset=unified", "eval.short_side=48", "eval.crop=32", "eval.stride=16",
              "eval.pictures=0",
              "data.num_workers=0", "logger.wandb.mode=disabled", f"run.root={tmp_path}"]
    return [load_config(f"baseline_{row}", common) for row in ROWS]


def test_a_group_scores_each_row_exactly_as_alone(row_configs, world, tmp_path):
    module = build_objective(to_plain(row_configs[0])).eval()
    members = [Member(c, module, tmp_path / c.run.experiment, c.model.clip.last_block) for c in row_configs]
    together = evaluate_members(members, "synthetic", world, torch.device("cpu"))
    for member, result in zip(members, together, strict=True):
        (alone,) = evaluate_members([member], "synthetic", world, torch.device("cpu"))
        assert result["per_class"] == alone["per_class"] and result["mIoU"] == alone["mIoU"]
        assert result["protocol_hash"] == alone["protocol_hash"]
        assert result["settings"]["model"].endswith(
            "" if member.method == "plain" else f"({member.method})")
    assert len({r["mIoU"] for r in together}) > 1  # the rows do differ
    assert len({r["protocol_hash"] for r in together}) == 1  # under one protocol


def test_rows_under_different_protocols_are_not_grouped(row_configs, world, tmp_path):
    module = build_objective(to_plain(row_configs[0])).eval()
    other = load_config("baseline_sclip", [f"data.val.roots.synthetic={world}", "eval.preset=unified",
                                           "eval.crop=48", "eval.stride=16", "model.clip.name=lseg-tiny-vit"])
    members = [Member(row_configs[0], module, tmp_path, "plain"), Member(other, module, tmp_path, "sclip")]
    with pytest.raises(ValueError, match="one image protocol"):
        evaluate_members(members, "synthetic", world, torch.device("cpu"))


def test_the_centre_protocol_scores_the_centred_square_of_image_and_ground_truth(world, tmp_path):
    from lseg_pacl.config.loading import eval_for

    cfg = load_config("baseline_clip", [f"data.val.roots.synthetic={world}", "model.clip.name=lseg-tiny-vit",
                                        "model.clip.pretrained=null",
                                        "eval.mode=centre", "eval.short_side=32", "eval.max_images=2",
                                        "eval.pictures=0", "data.num_workers=0"])
    module = build_objective(to_plain(cfg)).eval()
    seen = []
    conv1 = module.clip.model.visual.conv1
    handle = conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-2:]))
    member = Member(cfg, module, tmp_path, "plain")
    (result,) = evaluate_members([member], "synthetic", world, torch.device("cpu"))
    handle.remove()
    assert seen and all(tuple(s) == (32, 32) for s in seen)  # one 32 x 32 square per image
    assert result["protocol"]["mode"] == "centre" and result["mIoU"] is not None
    assert eval_for(cfg.eval, "synthetic").mode == "centre"
