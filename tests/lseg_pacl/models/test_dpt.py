import pytest
import torch
from safetensors.torch import save_file
from support.lseg_official import OfficialLSeg, make_resnet_backbone, perturb_

import lseg_pacl.models.weights as weights
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.dpt import BACKBONES, DPT, create_resnet, create_vit, resize_pos_embed

VIT_L_DPT_PARAMETERS = 341_655_040  # ViT-L/16 384 DPT, features 256, out_dim 512 (its ViT: 303,688,704)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DPT("vit_tiny_lseg").eval()


def _level_sizes(model: DPT, images: torch.Tensor) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    handles = [
        conv.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
        for conv in model.layer_rn
    ]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return sizes


@pytest.mark.parametrize("size", [(64, 96), (48, 64), (40, 56)])
def test_tiny_dpt_gives_half_resolution_embeddings(tiny, size):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, *size))
    assert out.shape == (2, 512, size[0] // 2, size[1] // 2)
    assert torch.isfinite(out).all()


def test_levels_sit_at_strides_4_8_16_32_even_when_sides_do_not_divide_by_32(tiny):
    with torch.no_grad():
        assert _level_sizes(tiny, torch.randn(1, 3, 64, 96)) == [(16, 24), (8, 12), (4, 6), (2, 3)]
        # 40x56: token grid 5x7; the 1/32 level rounds up (two stride-2 convs) and fusion follows the laterals
        assert _level_sizes(tiny, torch.randn(1, 3, 40, 56)) == [(10, 14), (5, 7), (3, 4), (2, 2)]


@pytest.mark.parametrize(
    ("name", "size", "levels"),
    [
        ("vit_large_patch16_384", (64, 96), [(16, 24), (8, 12), (4, 6), (2, 3)]),
        ("vit_large_patch16_384", (80, 112), [(20, 28), (10, 14), (5, 7), (3, 4)]),
        ("vit_base_patch16_384", (80, 48), [(20, 12), (10, 6), (5, 3), (3, 2)]),
        ("vit_base_patch32_384", (64, 96), [(16, 24), (8, 12), (4, 6), (2, 3)]),
        ("vit_base_patch32_384", (96, 160), [(24, 40), (12, 20), (6, 10), (3, 5)]),
    ],
)
def test_full_size_backbones_give_the_right_shapes(name, size, levels):
    # built on the meta device: shapes and parameter counts without allocating or initialising the weights
    with torch.device("meta"):
        model = DPT(name).eval()
        out = model(torch.empty(2, 3, *size))
        assert _level_sizes(model, torch.empty(1, 3, *size)) == levels
    assert out.shape == (2, 512, size[0] // 2, size[1] // 2)
    assert model.patch_size == (32 if "patch32" in name else 16)


VITS = [name for name, spec in BACKBONES.items() if spec.get("kind", "vit") == "vit"]


@pytest.mark.parametrize("name", VITS)
def test_the_backbone_table_states_each_vits_own_patch_size(name):
    # the table lets the data be built before the model; the ViT itself must agree (meta device: no weights)
    with torch.device("meta"):
        assert create_vit(name).patch_embed.patch_size[0] == BACKBONES[name]["patch"]


def test_vit_large_dpt_parameter_count():
    with torch.device("meta"):
        model = DPT("vit_large_patch16_384", features=256, out_dim=512)
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone_parameters())
    assert 330e6 < total < 350e6
    assert total == VIT_L_DPT_PARAMETERS
    assert backbone == 303_688_704  # timm's ViT-L/16 384 without classifier and final norm


def test_reassembly_follows_the_patch_size():
    with torch.device("meta"):
        large = DPT("vit_large_patch16_384")
        b32 = DPT("vit_base_patch32_384")
    up4, up2, same, down = (r[1] for r in large.reassemble)
    assert (up4.kernel_size, up4.stride, up2.stride) == ((4, 4), (4, 4), (2, 2))
    assert isinstance(same, torch.nn.Identity) and down.stride == (2, 2) and down.kernel_size == (3, 3)
    assert [r[1].stride for r in b32.reassemble[:3]] == [(8, 8), (4, 4), (2, 2)]
    assert isinstance(b32.reassemble[3][1], torch.nn.Identity)
    tiny_down = DPT("vit_tiny_lseg").reassemble[3][1]  # patch 8 -> 1/32: two 3x3 stride-2 convs
    assert [(c.kernel_size, c.stride) for c in tiny_down] == [((3, 3), (2, 2))] * 2


def test_pos_embed_resize_is_exact_at_the_native_grid():
    pos = torch.randn(1, 1 + 6 * 4, 8)
    torch.testing.assert_close(resize_pos_embed(pos, (6, 4), (6, 4)), pos, rtol=0, atol=0)
    bigger = resize_pos_embed(pos, (6, 4), (9, 5))
    assert bigger.shape == (1, 1 + 45, 8) and torch.equal(bigger[:, 0], pos[:, 0])  # CLS untouched


def test_last_hook_matches_timm_at_the_native_size(tiny):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = tiny.hooked_tokens(images)[-1]
        timms = tiny.vit.forward_features(images)  # final norm is Identity in the DPT
    torch.testing.assert_close(ours, timms, rtol=1e-5, atol=1e-5)


def test_other_sizes_use_bilinear_positions(tiny):
    grid = (6, 8)
    pos = tiny.pos_embed(grid)
    old = tiny.vit.pos_embed[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(old, size=grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], expected.flatten(2).transpose(1, 2))


def test_sides_must_divide_by_the_patch_size(tiny):
    with pytest.raises(ValueError, match="patch size 8"):
        tiny(torch.randn(1, 3, 60, 64))


def test_parameters_split_into_backbone_and_decoder_and_all_get_gradients():
    torch.manual_seed(0)
    model = DPT("vit_tiny_lseg", features=32, out_dim=16).train()
    backbone = {id(p) for p in model.backbone_parameters()}
    decoder = {id(p) for p in model.decoder_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert backbone and decoder and not backbone & decoder and backbone | decoder == everything
    assert {id(p) for p in model.vit.parameters()} == backbone
    model(torch.randn(2, 3, 48, 64)).square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused  # DDP without find_unused_parameters needs every parameter used


def test_gradient_checkpointing_changes_nothing():
    torch.manual_seed(0)
    model = DPT("vit_tiny_lseg", features=32, out_dim=8).eval()
    images = torch.randn(2, 3, 32, 48)
    plain = model(images)
    plain.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    again = model(images)
    again.sum().backward()
    torch.testing.assert_close(again, plain)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("readout", ["ignore", "add"])
def test_other_readouts(readout):
    model = DPT("vit_tiny_lseg", readout=readout, features=32, out_dim=16).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 16, 16, 16)
    assert not any(r.project for r in model.readout)


def test_bad_readout_and_unknown_backbone():
    with pytest.raises(ConfigError, match="readout"):
        DPT("vit_tiny_lseg", readout="concat")
    with pytest.raises(ConfigError) as info:
        create_vit("vit_huge_patch99")
    for name in BACKBONES:
        assert name in str(info.value)


@pytest.mark.parametrize("layout", ["plain.pth", "nested.pt", "weights.safetensors", "prefixed.bin"])
def test_local_weights_file_round_trips(tmp_path, tiny, layout, offline):
    vit_state = {k: v.clone() for k, v in tiny.vit.state_dict().items()}
    vit_state["norm.weight"], vit_state["norm.bias"] = torch.ones(96), torch.zeros(96)  # a full timm ViT
    path = tmp_path / layout
    if layout == "plain.pth":
        torch.save({**vit_state, "head.weight": torch.zeros(10, 96), "head.bias": torch.zeros(10)}, path)
    elif layout == "nested.pt":
        torch.save({"model": {"state_dict": vit_state}, "epoch": 3}, path)
    elif layout == "weights.safetensors":
        save_file({k: v.contiguous() for k, v in vit_state.items()}, str(path))
    else:  # the ViT inside a larger model
        wrapped = {f"net.vit.{k}": v for k, v in vit_state.items()}
        torch.save({"state_dict": {**wrapped, "net.head.w": torch.ones(2)}}, path)
    loaded = create_vit("vit_tiny_lseg", str(path))
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, vit_state[name]), name
    model = DPT("vit_tiny_lseg", str(path))
    assert torch.equal(model.vit.pos_embed, tiny.vit.pos_embed)


def test_weights_that_do_not_fit_are_a_config_error(tmp_path, tiny):
    state = dict(tiny.vit.state_dict())
    state.pop("blocks.3.mlp.fc2.bias")
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ConfigError, match="blocks.3.mlp.fc2.bias"):
        create_vit("vit_tiny_lseg", str(tmp_path / "short.pth"))


def test_missing_or_unreadable_weights_file(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        create_vit("vit_tiny_lseg", str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingInputError, match="tensors-only"):
        create_vit("vit_tiny_lseg", str(tmp_path / "junk.pt"))


@pytest.fixture
def empty_offline_hub(monkeypatch, tmp_path, offline):
    """No network and an empty Hugging Face cache: a hub tag can only fail."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)


def test_offline_without_cache_fails_fast_and_says_what_to_download(empty_offline_hub):
    with pytest.raises(MissingInputError) as info:  # no connection tried, no wait (the offline fixture)
        DPT("vit_base_patch32_384", pretrained="imagenet")
    message = str(info.value)
    assert "model.lseg.backbone_pretrained=/path/to/model.safetensors" in message
    assert "timm/vit_base_patch32_384.augreg_in21k_ft_in1k" in message


def test_cached_hub_weights_load_offline(monkeypatch, tmp_path, tiny, offline):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--timm--fake_tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    state = {k: v.contiguous() for k, v in tiny.vit.state_dict().items()}
    state.update(
        {
            "norm.weight": torch.ones(96),
            "norm.bias": torch.zeros(96),
            "head.weight": torch.zeros(5, 96),
            "head.bias": torch.zeros(5),
        }
    )
    save_file(state, str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    fake = ("timm/fake_tiny", weights.TIMM_HUB_FILES, "fake")
    monkeypatch.setattr(weights, "timm_hub_source", lambda name, tag, built_here=False: fake)
    vit = create_vit("vit_tiny_lseg", "imagenet")
    assert torch.equal(vit.pos_embed, tiny.vit.pos_embed)


def test_pretrained_tags_are_checked_without_network(offline):
    with pytest.raises(ConfigError, match="augreg_in21k_ft_in1k"):
        create_vit("vit_base_patch32_384", "no_such_tag")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_vit("vit_tiny_lseg", "imagenet")
    assert create_vit("vit_tiny_lseg", "none").pos_embed.shape == (1, 65, 96)


# ------------------------------------------------------------------------------------------------ ResNet DPT


@pytest.fixture(scope="module")
def tiny_resnet():
    torch.manual_seed(0)
    return DPT("resnet_tiny_lseg", features=32, out_dim=16).eval()


def test_tiny_resnet_dpt_shapes_at_a_non_square_input(tiny_resnet):
    with torch.no_grad():
        out = tiny_resnet(torch.randn(2, 3, 64, 96))
        assert _level_sizes(tiny_resnet, torch.randn(1, 3, 64, 96)) == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert out.shape == (2, 16, 32, 48) and torch.isfinite(out).all()
    assert [conv.in_channels for conv in tiny_resnet.layer_rn] == [64, 128, 256, 512]
    assert tiny_resnet.patch_size == 32 and tiny_resnet.vit is None and tiny_resnet.readout is None


def test_resnet_sides_must_divide_by_32(tiny_resnet):
    with pytest.raises(ValueError, match="must divide by 32 for the ResNet backbone resnet_tiny_lseg"):
        tiny_resnet(torch.randn(1, 3, 48, 64))


def test_resnet101_dpt_on_meta():
    with torch.device("meta"):
        model = DPT("resnet101")
        out = model(torch.empty(1, 3, 96, 160))
        assert _level_sizes(model, torch.empty(1, 3, 96, 160)) == [(24, 40), (12, 20), (6, 10), (3, 5)]
    assert out.shape == (1, 512, 48, 80)
    assert [conv.in_channels for conv in model.layer_rn] == [256, 512, 1024, 2048]
    assert sum(p.numel() for p in model.backbone_parameters()) == 42_500_160  # torchvision's, without fc
    assert all(k.startswith(("resnet.", "layer_rn.", "fusion.", "head.")) for k in model.state_dict())


def test_resnet_parameters_split_and_all_get_gradients(tiny_resnet):
    model = DPT("resnet_tiny_lseg", features=16, out_dim=8).train()
    backbone = {id(p) for p in model.backbone_parameters()}
    decoder = {id(p) for p in model.decoder_parameters()}
    assert backbone == {id(p) for p in model.resnet.parameters()} and not backbone & decoder
    assert backbone | decoder == {id(p) for p in model.parameters()}
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


def test_vit_names_are_unchanged_and_kinds_refuse_each_other():
    with torch.device("meta"):
        vit = DPT("vit_tiny_lseg")
    prefixes = {k.split(".")[0] for k in vit.state_dict()}
    assert prefixes == {"vit", "readout", "reassemble", "layer_rn", "fusion", "head"}
    with pytest.raises(ConfigError, match="not a ViT"):
        create_vit("resnet_tiny_lseg")
    with pytest.raises(ConfigError, match="not a ResNet"):
        create_resnet("vit_tiny_lseg")


@pytest.mark.parametrize("layout", ["torchvision.pth", "prefixed.ckpt"])
def test_resnet_weights_from_a_local_file(tmp_path, tiny_resnet, layout, offline):
    state = {k: v.clone() for k, v in tiny_resnet.resnet.state_dict().items()}
    path = tmp_path / layout
    if layout == "torchvision.pth":  # torchvision's layout: the same names plus the ImageNet classifier
        torch.save({**state, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, path)
    else:  # the ResNet inside one of our checkpoints
        torch.save({"state_dict": {f"net.dpt.resnet.{k}": v for k, v in state.items()}}, path)
    loaded = create_resnet("resnet_tiny_lseg", str(path))
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_resnet101_imagenet_is_torchvisions_weights_and_fails_fast_offline(empty_offline_hub):
    with pytest.raises(MissingInputError) as info:  # no connection tried, no wait (the offline fixture)
        DPT("resnet101", pretrained="imagenet")
    message = str(info.value)
    assert "timm/resnet101.tv_in1k" in message and "model.lseg.backbone_pretrained=/path/to/" in message
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_resnet("resnet_tiny_lseg", "imagenet")


def _copy_rcu(ours: torch.nn.Module, official: torch.nn.Module) -> None:
    """An official ResidualConvUnit_custom (convs without bias) into ours (convs with a bias: zero)."""
    missing, unexpected = ours.load_state_dict(official.state_dict(), strict=False)
    assert sorted(missing) == ["conv1.bias", "conv2.bias"] and not unexpected
    with torch.no_grad():
        ours.conv1.bias.zero_()
        ours.conv2.bias.zero_()


def test_resnet_dpt_equals_the_official_lsegrn_image_side():
    """lang-seg lseg_net_zs.py:306-324 (LSegRN.forward up to scratch.head1) with lseg_blocks_zs.py:56-119
    (_make_scratch, _make_resnet_backbone) and 236-372 (ResidualConvUnit_custom / FeatureFusionBlock_custom,
    bn=True), transcribed in tests/support/lseg_official.py on torchvision's ResNet; float64, eval mode,
    random weights with perturbed BatchNorm statistics, a non-square input."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    official = OfficialLSeg(
        make_resnet_backbone(ResNet(BasicBlock, [1, 1, 1, 1])), (64, 128, 256, 512), features=32, out_c=16
    )
    official = perturb_(official).double().eval()
    ours = DPT("resnet_tiny_lseg", features=32, out_dim=16).double().eval()
    o, s = official.pretrained, official.scratch
    ours.resnet.conv1.load_state_dict(o.layer1[0].state_dict())
    ours.resnet.bn1.load_state_dict(o.layer1[1].state_dict())
    ours.resnet.layer1.load_state_dict(o.layer1[4].state_dict())
    for i in (2, 3, 4):
        getattr(ours.resnet, f"layer{i}").load_state_dict(getattr(o, f"layer{i}").state_dict())
    for i in range(4):
        ours.layer_rn[i].load_state_dict(getattr(s, f"layer{i + 1}_rn").state_dict())
        refinenet = getattr(s, f"refinenet{i + 1}")
        _copy_rcu(ours.fusion[i].refine, refinenet.resConfUnit2)
        if i < 3:
            _copy_rcu(ours.fusion[i].lateral, refinenet.resConfUnit1)
        ours.fusion[i].out_conv.load_state_dict(refinenet.out_conv.state_dict())
    ours.head.load_state_dict(s.head1.state_dict())
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        expected = official.image_features(x)
        got = ours(x)
    assert got.shape == expected.shape == (2, 16, 32, 48)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
