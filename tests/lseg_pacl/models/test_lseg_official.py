"""Official lang-seg checkpoints (isl-org/lang-seg@bb00b21) in: read safely, mapped onto our LSeg, and the
loaded module computes what the official network computes.

Each checkpoint is built here in the official layout: the module structure is transcribed from the official
constructors (tests/support/lseg_official.py: lseg_vit.py, lseg_blocks(_zs).py, lseg_net(_zs).py), so every
key is named as the official modules name it, independently of lseg_pacl's mapping; the CLIP weights are fp16
under ``net.clip_pretrained.`` as in the released files.
"""

from __future__ import annotations

import math
import os
import sys
import types
from collections import OrderedDict

import open_clip
import pytest
import timm
import torch
from support.lseg_official import OfficialLSeg, make_resnet_backbone, make_vit_backbone, perturb_
from timm.models.vision_transformer import VisionTransformer
from torchvision.models import resnet101
from torchvision.models.resnet import BasicBlock, ResNet

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.clip import create_clip
from lseg_pacl.models.lseg import LSegNet
from lseg_pacl.models.lseg_official import (
    RefusedGlobal,
    convert_state,
    infer_backbone,
    is_official_lseg,
    official_lseg,
    read_checkpoint_file,
)
from lseg_pacl.objectives import load_objective
from lseg_pacl.objectives.lseg import LSeg

TINY_CHANNELS = {"vit": (24, 48, 96, 96), "resnet": (64, 128, 256, 512)}
FEATURES, TEXT_DIM = 32, 128  # the tiny CLIP (lseg-tiny-vit) embeds into 128 dimensions


def official_network(
    kind: str, arch_option: int = 0, block_depth: int = 0, activation: str = "lrelu", seed: int = 0
) -> OfficialLSeg:
    """The official image side with random, perturbed weights (float32, as saved)."""
    torch.manual_seed(seed)
    if kind == "resnet":  # LSegRN's backbone: torchvision's ResNet (lseg_vit_zs.py:742-748), tiny
        pretrained = make_resnet_backbone(ResNet(BasicBlock, [1, 1, 1, 1]))
    else:  # a tiny timm ViT (patch 8) with its ImageNet head and final norm, as timm.create_model gives
        vit = VisionTransformer(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=10)
        pretrained = make_vit_backbone(vit, list(TINY_CHANNELS["vit"]), (0, 1, 2, 3), 96, 8)
    net = OfficialLSeg(
        pretrained,
        TINY_CHANNELS[kind],
        features=FEATURES,
        out_c=TEXT_DIM,
        arch_option=arch_option,
        block_depth=block_depth,
        activation=activation,
    )
    return perturb_(net, seed).eval()


def official_clip(seed: int = 1):
    torch.manual_seed(seed)
    clip = create_clip("lseg-tiny-vit", quick_gelu=True)  # OpenAI's names; both towers, as clip.load gives
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return clip


def official_blob(net: OfficialLSeg, clip, hparams: dict | None = None) -> dict:
    state = OrderedDict((f"net.{k}", v.clone()) for k, v in net.state_dict().items())
    state.update((f"net.clip_pretrained.{k}", v.detach().half()) for k, v in clip.state_dict().items())
    return {
        "epoch": 199,
        "global_step": 1000,
        "pytorch-lightning_version": "1.4.9",
        "state_dict": state,
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams if hparams is not None else {"backbone": "clip", "base_lr": 0.004},
    }


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    net, clip = official_network("vit", arch_option=1, block_depth=2), official_clip()
    path = tmp_path_factory.mktemp("official") / "vit_bottleneck.ckpt"
    hparams = {"backbone": "clip_vitl16_384", "arch_option": 1, "block_depth": 2, "activation": "lrelu"}
    torch.save(official_blob(net, clip, hparams), path)
    return path, net, clip


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    net, clip = official_network("resnet"), official_clip()
    path = tmp_path_factory.mktemp("official") / "fss_rn_tiny.ckpt"
    torch.save(official_blob(net, clip), path)
    return path, net, clip


def loaded(path, **overrides) -> LSeg:
    config, state = official_lseg(read_checkpoint_file(path), overrides, where=str(path))
    module = LSeg(config, load_pretrained=False)
    module.load_state_dict(state, strict=True)
    return module.eval()


def assert_same(ours: torch.nn.Module, official: torch.nn.Module, zero_bias: bool = False) -> None:
    """Every tensor of ``official`` at the same name in ``ours`` (value equality); with ``zero_bias``, ours
    also has conv biases the official lacks, which must be zero."""
    theirs, mine = official.state_dict(), ours.state_dict()
    for name, value in theirs.items():
        assert torch.equal(mine[name], value.to(mine[name].dtype)), name
    extra = set(mine) - set(theirs)
    if zero_bias:
        assert extra == {"conv1.bias", "conv2.bias"}
        assert all(not mine[k].any() for k in extra)
    else:
        assert not extra


def assert_decoder_landed(module: LSeg, net: OfficialLSeg) -> None:
    dpt, scratch = module.net.dpt, net.scratch
    for i in range(4):
        assert_same(dpt.layer_rn[i], getattr(scratch, f"layer{i + 1}_rn"))
        refinenet = getattr(scratch, f"refinenet{i + 1}")
        assert_same(dpt.fusion[i].refine, refinenet.resConfUnit2, zero_bias=True)
        if i < 3:
            assert_same(dpt.fusion[i].lateral, refinenet.resConfUnit1, zero_bias=True)
        else:  # refinenet4 gets one input: its resConfUnit1 is never called, and ours has none
            assert dpt.fusion[i].lateral is None
        assert_same(dpt.fusion[i].out_conv, refinenet.out_conv)
    assert_same(dpt.head, scratch.head1)
    assert module.net.log_scale.item() == pytest.approx(math.log(1 / 0.07))


def assert_clip_landed(module: LSeg, clip) -> None:
    mine = module.clip.model.state_dict()
    text = {k: v for k, v in clip.state_dict().items() if not k.startswith("visual.")}
    assert set(mine) == set(text)
    for name, value in text.items():  # fp16 in the file, fp32 in ours
        assert mine[name].dtype == torch.float32 and torch.equal(mine[name], value.half().float()), name


def test_a_vit_checkpoint_lands_every_tensor_in_its_place(vit_file):
    path, net, clip = vit_file
    module = loaded(path)
    c = module.cfg.model
    assert (c.lseg.backbone, c.lseg.features, c.lseg.spatial_reg, c.lseg.block_depth) == (
        "vit_tiny_lseg",
        FEATURES,
        "bottleneck",
        2,
    )  # arch_option 1 and block_depth 2 from its hyper_parameters
    assert (c.clip.name, c.clip.quick_gelu, list(c.lseg.input_mean)) == ("lseg-tiny-vit", True, [0.5] * 3)
    vit, pretrained = module.net.dpt.vit, net.pretrained
    official_vit = {
        k: v for k, v in pretrained.model.state_dict().items() if not k.startswith(("norm.", "head."))
    }
    assert set(vit.state_dict()) == set(official_vit)
    for name, value in official_vit.items():
        assert torch.equal(vit.state_dict()[name], value), name
    for i in range(4):
        post = getattr(pretrained, f"act_postprocess{i + 1}")
        assert_same(module.net.dpt.readout[i].project, post[0].project)
        assert_same(module.net.dpt.reassemble[i][0], post[3])
        resample = module.net.dpt.reassemble[i][1]
        if isinstance(resample, torch.nn.Sequential):  # patch 8 -> 1/32: two stride-2 convs (.4, .5)
            for j, conv in enumerate(resample):
                assert_same(conv, post[4 + j])
        elif len(post) > 4:
            assert_same(resample, post[4])
    assert_same(module.net.spatial.conv, net.scratch.head_block.depthwise.depthwise)
    assert_decoder_landed(module, net)
    assert_clip_landed(module, clip)


def test_a_resnet_checkpoint_lands_every_tensor_in_its_place(resnet_file):
    path, net, clip = resnet_file
    module = loaded(path)
    c = module.cfg.model.lseg
    assert (c.backbone, c.spatial_reg, list(c.input_mean), list(c.input_std)) == (
        "resnet_tiny_lseg",
        "none",
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
    )  # test_lseg_zs.py:267-270
    resnet, pretrained = module.net.dpt.resnet, net.pretrained
    assert_same(resnet.conv1, pretrained.layer1[0])
    assert_same(resnet.bn1, pretrained.layer1[1])
    assert_same(resnet.layer1, pretrained.layer1[4])
    for i in (2, 3, 4):
        assert_same(getattr(resnet, f"layer{i}"), getattr(pretrained, f"layer{i}"))
    assert module.net.spatial.conv is None
    assert_decoder_landed(module, net)
    assert_clip_landed(module, clip)


def _official_logits(net: OfficialLSeg, clip, names, images) -> torch.Tensor:
    """The official forward in float64, its text features from the file's (fp16) CLIP weights."""
    reference = create_clip("lseg-tiny-vit", quick_gelu=True)
    reference.load_state_dict({k: v.half().double() for k, v in clip.state_dict().items()})
    reference = reference.double().eval()
    tokens = open_clip.get_tokenizer("lseg-tiny-vit")(list(names))  # raw labels (lseg_net_zs.py:171-174)
    with torch.no_grad():
        return net.double()(images.double(), reference.encode_text(tokens))


@pytest.mark.parametrize("which", ["vit_file", "resnet_file"])
def test_the_loaded_module_computes_the_official_logits(which, request):
    """lseg_net.py:160-205 (ViT, with a bottleneck head_block applied twice) and lseg_net_zs.py:300-339
    (ResNet) in float64 against our module on a non-square image."""
    path, net, clip = request.getfixturevalue(which)
    module = loaded(path)
    names = ("others", "grass", "a red ball")  # the official 2-way labels start with "others"
    torch.manual_seed(3)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = module.double().segment(images.double(), names)
    expected = _official_logits(net, clip, names, images)
    assert ours.shape == expected.shape == (2, 3, 64, 96)
    # float64 throughout, but our label embeddings are fp32 (ZeroShotObjective's text cache)
    torch.testing.assert_close(ours.double(), expected, rtol=0, atol=1e-6)


def test_unknown_and_missing_keys_are_errors_listing_them_all(resnet_file):
    path, _, _ = resnet_file
    blob = read_checkpoint_file(path)
    state = blob["state_dict"]
    state["net.scratch.bogus.weight"] = torch.ones(3)
    state["net.pretrained.act_postprocess9.weight"] = torch.ones(3)
    del state["net.scratch.refinenet2.out_conv.bias"]
    del state["net.pretrained.layer2.0.conv1.weight"]
    with pytest.raises(ConfigError) as info:
        official_lseg(blob)
    message = str(info.value)
    for key in (
        "net.scratch.bogus.weight",
        "net.pretrained.act_postprocess9.weight",
        "net.dpt.fusion.1.out_conv.bias",
        "net.dpt.resnet.layer2.0.conv1.weight",
    ):
        assert key in message
    assert "unknown keys" in message and "missing keys" in message


def test_a_head_block_needs_its_kind_when_the_file_does_not_say(tmp_path):
    net, clip = official_network("vit", arch_option=2, block_depth=0, seed=5), official_clip()
    path = tmp_path / "depthwise.ckpt"
    torch.save(official_blob(net, clip, {"base_lr": 0.004}), path)  # no arch_option recorded
    blob = read_checkpoint_file(path)
    with pytest.raises(ConfigError, match="spatial_reg=bottleneck .*depthwise"):
        official_lseg(blob)
    config, state = official_lseg(blob, {"spatial_reg": "depthwise"})
    assert (config["model"]["lseg"]["spatial_reg"], config["model"]["lseg"]["block_depth"]) == (
        "depthwise",
        1,
    )
    module = LSeg(config, load_pretrained=False)
    module.load_state_dict(state, strict=True)
    names, images = ("others", "sky"), torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # official block_depth 0: one application without activation (lseg_net.py:198-201)
        ours = module.eval().double().segment(images.double(), names)
    torch.testing.assert_close(ours.double(), _official_logits(net, clip, names, images), rtol=0, atol=1e-6)
    without = {**blob, "state_dict": {k: v for k, v in blob["state_dict"].items() if "head_block" not in k}}
    with pytest.raises(ConfigError, match="does not fit a file without a head_block"):
        official_lseg(without, {"spatial_reg": "depthwise"})


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_payload_is_refused_and_never_runs(tmp_path, resnet_file):
    marker = tmp_path / "pwned"
    _, net, clip = resnet_file
    path = tmp_path / "crafted.ckpt"
    torch.save(official_blob(net, clip, {"backbone": "clip_resnet101", "evil": Payload(marker)}), path)
    with pytest.raises(RefusedGlobal, match=r"asks for (posix|os)\.system; refused"):
        read_checkpoint_file(path)
    with pytest.raises(MissingInputError, match="not a readable checkpoint.*system"):
        load_objective(path)
    config = {
        "model": {
            "objective": "lseg",
            "clip": {"name": "lseg-tiny-vit", "quick_gelu": True},
            "lseg": {"backbone": "resnet_tiny_lseg", "features": FEATURES, "init_from": str(path)},
        }
    }
    with pytest.raises(RefusedGlobal, match="system"):
        LSeg(config)
    assert not marker.exists()


def test_lightning_1x_objects_are_read_as_plain_data(tmp_path, monkeypatch, resnet_file):
    """Lightning 1.4 pickles hyper_parameters as an AttributeDict and keys callback states by the callback's
    class: torch.load(weights_only=True) refuses both; the restricted reader reads the first as a dict and the
    second as an inert name."""

    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    class AttributeDict(dict):
        pass

    class ModelCheckpoint:
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = (
        "pytorch_lightning.utilities.parsing",
        "AttributeDict",
    )
    ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    for name in ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.callbacks"):
        module(name)
    module("pytorch_lightning.utilities.parsing", AttributeDict=AttributeDict)
    module("pytorch_lightning.callbacks.model_checkpoint", ModelCheckpoint=ModelCheckpoint)
    _, net, clip = resnet_file
    blob = official_blob(net, clip, AttributeDict(backbone="clip_resnet101", arch_option=0, block_depth=0))
    blob["callbacks"] = {
        ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"}
    }
    path = tmp_path / "lightning14.ckpt"
    torch.save(blob, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch says: it refuses
        torch.load(path, weights_only=True)
    read = read_checkpoint_file(path)
    assert type(read["hyper_parameters"]) is dict and read["hyper_parameters"]["backbone"] == "clip_resnet101"
    ((key, value),) = read["callbacks"].items()
    assert repr(key) == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" and not callable(key)
    assert value["best_model_score"].item() == 0.5
    assert is_official_lseg(read)
    for name, tensor in blob["state_dict"].items():
        assert torch.equal(read["state_dict"][name], tensor), name
    assert isinstance(load_objective(path), LSeg)


def test_load_objective_and_init_from_take_an_official_file(vit_file, tmp_path):
    path, net, clip = vit_file
    module = load_objective(path)
    reference = loaded(path)
    for name, value in reference.state_dict().items():
        assert torch.equal(module.state_dict()[name], value), name
    # a training run from it: only the LSeg network and the text tower come from the file
    config = {
        "model": {
            "objective": "lseg",
            "clip": {"name": "lseg-tiny-vit", "quick_gelu": True},
            "lseg": {
                "backbone": "vit_tiny_lseg",
                "features": FEATURES,
                "spatial_reg": "bottleneck",
                "block_depth": 2,
                "init_from": str(path),
            },
        }
    }
    started = LSeg(config)
    for name, value in reference.state_dict().items():
        assert torch.equal(started.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="quick_gelu=true"):
        LSeg({**config, "model": {**config["model"], "clip": {"name": "lseg-tiny-vit", "quick_gelu": False}}})
    with pytest.raises(ConfigError, match="does not fit our LSeg.*missing keys.*net.dpt.resnet"):
        LSeg(
            {
                **config,
                "model": {
                    **config["model"],
                    "lseg": {**config["model"]["lseg"], "backbone": "resnet_tiny_lseg"},
                },
            }
        )
    # and from one of ours: its net.* and its text tower
    ours = tmp_path / "ours.ckpt"
    torch.save(
        {
            "state_dict": started.state_dict(),
            "pytorch-lightning_version": "2.6.6",
            "hyper_parameters": {"config": started.hparams["config"]},
        },
        ours,
    )
    again = LSeg(
        {**config, "model": {**config["model"], "lseg": {**config["model"]["lseg"], "init_from": str(ours)}}}
    )
    for name, value in started.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


def _meta_official_state(name: str) -> dict[str, torch.Tensor]:
    """The official layout of a released model, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        if name == "resnet101":  # clip_resnet101: torchvision's ResNet-101 (lseg_vit_zs.py:746)
            net = OfficialLSeg(make_resnet_backbone(resnet101()), (256, 512, 1024, 2048))
        elif name == "vit_large_patch16_384":  # _make_pretrained_clip_vitl16_384 (lseg_vit.py:221-237)
            vit = timm.create_model(name)
            net = OfficialLSeg(
                make_vit_backbone(vit, [256, 512, 1024, 1024], (5, 11, 17, 23), 1024, 16),
                (256, 512, 1024, 1024),
            )
        else:  # _make_pretrained_clip_vitb32_384 (lseg_vit.py:259-272)
            vit = timm.create_model(name)
            net = OfficialLSeg(
                make_vit_backbone(vit, [96, 192, 384, 768], (2, 5, 8, 11), 768, 32), (96, 192, 384, 768)
            )
    return {f"net.{k}": v for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", ["vit_large_patch16_384", "vit_base_patch32_384", "resnet101"])
def test_the_released_models_key_layouts_map_completely(name):
    state = _meta_official_state(name)
    assert infer_backbone(state) == name
    with torch.device("meta"):
        expected = LSegNet(name, None, 512, 256).state_dict()
    net, clip = convert_state(state, expected)
    assert set(net) == set(expected) and not clip
    for key, value in net.items():
        assert tuple(value.shape) == tuple(expected[key].shape), key
    if name == "vit_large_patch16_384":  # 1/32: the 3x3 stride-2 conv at act_postprocess4.4
        assert "net.pretrained.act_postprocess4.4.weight" in state
        assert "net.pretrained.act_postprocess3.4.weight" not in state


def test_our_own_checkpoints_are_not_taken_for_official_ones():
    assert not is_official_lseg(
        {"state_dict": {"net.scratch.x": torch.ones(1)}, "hyper_parameters": {"config": {"model": {}}}}
    )
    assert not is_official_lseg({"state_dict": {"net.dpt.head.weight": torch.ones(1)}})
    assert is_official_lseg(
        {"state_dict": {"net.scratch.head1.weight": torch.ones(1)}, "hyper_parameters": {}}
    )


def test_torch_zip_reader_refuses_other_formats(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MissingInputError, match="not a torch zip checkpoint"):
        read_checkpoint_file(junk)
    with pytest.raises(MissingInputError, match="does not exist"):
        read_checkpoint_file(tmp_path / "nope.ckpt")
