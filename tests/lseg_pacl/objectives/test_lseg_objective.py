"""LSeg: logits are equivariant to the label order, training lowers the loss, checkpoints round-trip."""

from pathlib import Path

import pytest
import torch

from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.models.lseg import LSegNet
from lseg_pacl.objectives import load_objective
from lseg_pacl.objectives.lseg import LSeg
from lseg_pacl.training.runner import train


def test_logits_shapes_any_label_count_and_label_permutation_equivariance():
    torch.manual_seed(0)
    net = LSegNet(
        "vit_tiny_lseg", None, text_dim=32, features=16, spatial_reg="bottleneck", block_depth=2
    ).eval()
    x = torch.randn(2, 3, 48, 80)
    labels = torch.randn(7, 32)
    out = net(x, labels)
    assert out.shape == (2, 7, 48, 80)
    assert net(x, labels[:3]).shape == (2, 3, 48, 80) and net(x, labels, size=(24, 40)).shape == (
        2,
        7,
        24,
        40,
    )
    perm = torch.randperm(7)
    assert torch.allclose(net(x, labels[perm]), out[:, perm], atol=1e-5)
    assert net.pixel_embeddings(x).norm(dim=1).sub(1).abs().max() < 1e-5


def test_logits_are_the_scaled_cosine_without_regularization():
    torch.manual_seed(0)
    net = LSegNet("vit_tiny_lseg", None, text_dim=32, features=16).eval()
    x, labels = torch.randn(1, 3, 32, 32), torch.randn(4, 32)
    pixels = net.pixel_embeddings(x)  # [1, 32, 16, 16]
    cos = torch.einsum("bdhw,nd->bnhw", pixels, torch.nn.functional.normalize(labels, dim=-1))
    assert torch.allclose(net(x, labels, size=(16, 16)), cos / 0.07, atol=1e-4)
    assert not net.log_scale.requires_grad


def objective(*over: str, train_classes: tuple[str, ...] = ()) -> LSeg:
    return LSeg(
        to_plain(load_config("lseg_demo_seg", ["model.clip.pretrained=null", *over])),
        train_classes=train_classes,
    )


def test_a_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    module = objective(train_classes=("sky", "grass", "box"))
    mask = torch.randint(0, 3, (4, 4, 4)).repeat_interleave(8, 1).repeat_interleave(8, 2)  # 8x8 blocks
    image = torch.nn.functional.one_hot(mask, 3).permute(0, 3, 1, 2).float() * 2 - 1  # colour = class
    mask[:, :2] = 255  # ignored rows
    batch = {"image": image, "mask": mask}
    opt = torch.optim.SGD([p for _, p in module.trainable_parameters()], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.8
    assert not any(p.requires_grad for p in module.clip.parameters())  # the text encoder stays frozen


def test_lr_groups_put_only_the_decoder_scratch_at_ten_times_the_backbone():
    """lang-seg lsegmentation_module.py:119-127: net.pretrained (the ViT and act_postprocess*, i.e. readout
    and reassemble) at base_lr; net.scratch (layer*_rn, refinenet*, head1, head_block) at 10x."""
    module = objective()
    (backbone, one), (rest, ten) = module.lr_groups()
    assert (one, ten) == (1.0, 10.0)
    base = {n.split(".")[2] for n, _ in backbone}
    scratch = {n.split(".")[2] if n.startswith("net.dpt.") else n.split(".")[1] for n, _ in rest}
    assert {"vit", "reassemble"} <= base <= {"vit", "readout", "reassemble"}
    assert {"layer_rn", "fusion", "head"} <= scratch and not scratch & {"vit", "readout", "reassemble"}
    assert not any(n.startswith("clip.") for n, _ in backbone + rest)  # the text tower never trains
    assert len(backbone) + len(rest) == len(module.trainable_parameters())


def test_lr_groups_put_the_resnet_at_the_base_rate():
    """lang-seg lsegmentation_module_zs.py:237-244: net.pretrained (the ResNet) at base_lr, net.scratch at
    10x."""
    module = objective("model.lseg.backbone=resnet_tiny_lseg")
    (backbone, one), (rest, ten) = module.lr_groups()
    assert (one, ten) == (1.0, 10.0)
    resnet = {f"net.dpt.resnet.{n}" for n, _ in module.net.dpt.resnet.named_parameters()}
    assert {n for n, _ in backbone} == resnet
    assert {n.split(".")[2] for n, _ in rest if n.startswith("net.dpt.")} == {"layer_rn", "fusion", "head"}
    assert len(backbone) + len(rest) == len(module.trainable_parameters())


@pytest.mark.slow
def test_a_run_checkpoint_rebuilds_the_model_alone(tiny):
    summary = train("lseg_demo_seg", [*tiny, "model.clip.pretrained=null"])
    assert summary["global_step"] == 4 and 0 <= summary["final"]["val/mIoU"] <= 1
    module = load_objective(Path(summary["last_checkpoint"])).eval()
    assert isinstance(module, LSeg) and module.train_class_names == ()
    x = torch.randn(1, 3, 64, 64)
    labels = module.clip.class_embeddings(("sky", "ball"), ("{}",))
    again = load_objective(Path(summary["last_checkpoint"])).eval()
    assert torch.equal(module.logits(x, labels, (64, 64)), again.logits(x, labels, (64, 64)))


def test_lseg_keeps_only_clips_text_tower_and_still_loads_checkpoints_that_held_the_image_tower(tmp_path):
    torch.manual_seed(0)
    module = objective()
    assert module.clip.model.visual is None and not any(
        k.startswith("clip.model.visual.") for k in module.state_dict()
    )
    from lseg_pacl.models.clip import create_clip

    state = {
        **module.state_dict(),
        **{
            f"clip.model.{k}": v
            for k, v in create_clip("lseg-tiny-vit").state_dict().items()
            if k.startswith("visual.")
        },
    }  # as written before the change
    assert any(k.startswith("clip.model.visual.") for k in state)
    other = objective()
    other.load_state_dict(state)
    x, labels = torch.randn(1, 3, 64, 64), torch.randn(2, module.clip.embed_dim)
    assert torch.equal(module.eval().logits(x, labels, (64, 64)), other.eval().logits(x, labels, (64, 64)))
