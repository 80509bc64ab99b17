"""LSeg's image encoder: a DPT (dense prediction transformer) on an ImageNet timm ViT or ResNet, giving one
embedding per pixel at half the input resolution.

Why a DPT and not CLIP's image tower: LSeg trains this encoder so that its per-pixel embeddings match CLIP's
frozen text embeddings; the paper's backbone is timm's ImageNet ViT-L/16 (384), read at four depths and fused
coarse to fine (docs/methods.md#lseg). We run timm's blocks ourselves so that the positional embeddings are
resized bilinearly (LSeg's choice; timm's own dynamic size resizes bicubically) and any input whose sides
divide by the patch size works, square or not.

Layout (strides relative to the input): hooked block outputs -> readout (CLS handling) -> token map at
1/patch -> reassemble to 1/4, 1/8, 1/16, 1/32 -> 3x3 conv to ``features`` -> four fusion blocks, coarse to
fine, ending at 1/2 -> 1x1 head to ``out_dim``.

Deviations from the DPT/LSeg code, on purpose: the coarsest fusion block has no lateral residual unit (it has
no lateral input, so that unit would be an unused parameter set that breaks DDP without
find_unused_parameters); the ViT's final LayerNorm is dropped (no hook reads it); each fusion block upsamples
to the size of the next finer level rather than by exactly x2, which is the same operation when sides divide
by 32 and keeps shapes consistent when they do not; a 1/32 level that needs a x4 reduction (patch 8) uses two
3x3 stride-2 convs.

The ResNet kind (LSeg's zero-shot model, ``LSegRN`` in lang-seg modules/models/lseg_net_zs.py:240-339): timm's
``resnet101`` with torchvision's ImageNet weights (timm tag ``resnet101.tv_in1k``; ``backbone_pretrained:
imagenet`` means that tag), read at four depths as lang-seg's ``_make_resnet_backbone`` does
(lseg_blocks_zs.py:109-119): conv1+bn1+relu+maxpool+layer1 -> 1/4 (256 channels), layer2 -> 1/8 (512), layer3
-> 1/16 (1024), layer4 -> 1/32 (2048), each straight into its 3x3 ``layer_rn`` conv (no readout, no
reassembly). Image sides must divide by 32. The ResNet lives under ``resnet.*`` (the ViT kind's parameter
names are unchanged). Its weights expect ImageNet normalisation, which the official zero-shot test uses for it
(test_lseg_zs.py:267-270): set model.lseg.input_mean=[0.485,0.456,0.406] and
model.lseg.input_std=[0.229,0.224,0.225] (the schema's default is the ViT models' 0.5/0.5).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import timm
import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from lseg_pacl.errors import ConfigError
from lseg_pacl.models.weights import backbone_state, load_backbone_state

STRIDES = (4, 8, 16, 32)  # the four reassembled levels, relative to the input image

BACKBONES: dict[str, dict] = {
    # LSeg's main model: hooks after blocks 5, 11, 17, 23
    "vit_large_patch16_384": {"hooks": (5, 11, 17, 23), "channels": (256, 512, 1024, 1024), "patch": 16},
    "vit_base_patch16_384": {"hooks": (2, 5, 8, 11), "channels": (96, 192, 384, 768), "patch": 16},
    # LSeg's ablation model ("ViT-B/32")
    "vit_base_patch32_384": {"hooks": (2, 5, 8, 11), "channels": (96, 192, 384, 768), "patch": 32},
    # a tiny random ViT that builds offline, for tests and the CPU demo (no pretrained weights exist)
    "vit_tiny_lseg": {
        "hooks": (0, 1, 2, 3),
        "channels": (24, 48, 96, 96),
        "patch": 8,
        "vit_kwargs": {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3},
    },
    # LSeg's zero-shot model: torchvision's ImageNet ResNet-101 (timm's copy of those weights); "patch" is the
    # number every image side must divide by
    "resnet101": {
        "kind": "resnet",
        "channels": (256, 512, 1024, 2048),
        "patch": 32,
        "imagenet_tag": "tv_in1k",
    },
    # a tiny random ResNet (one BasicBlock per stage) that builds offline, for tests and demos
    "resnet_tiny_lseg": {
        "kind": "resnet",
        "channels": (64, 128, 256, 512),
        "patch": 32,
        "resnet_kwargs": {"block": "basic", "layers": (1, 1, 1, 1)},
    },
}
RESNET_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


# ------------------------------------------------------------------------------------------------ the ViT


def backbone_spec(name: str) -> dict:
    """The backbone's entry in BACKBONES (hooks, reassemble channels, patch size); an error for an unknown
    one."""
    if name not in BACKBONES:
        known = ", ".join(BACKBONES)
        raise ConfigError(f"unknown DPT backbone '{name}' (model.lseg.backbone); known: {known}")
    return BACKBONES[name]


def backbone_kind(name: str) -> str:
    """The backbone's kind: "vit" or "resnet"."""
    return backbone_spec(name).get("kind", "vit")


def create_vit(name: str, pretrained: str | bool | None = None) -> VisionTransformer:
    """A timm ViT without classifier that accepts any input size divisible by its patch size.

    ``pretrained``: None (random init); "imagenet" (or True, "timm", "default") for timm's default weights of
    ``name``, or an explicit timm tag such as "augreg_in21k_ft_in1k", read from the Hugging Face cache or
    downloaded (fails fast without a network); or a local .pth/.pt/.bin/.safetensors state dict, possibly
    nested under "state_dict"/"model" or prefixed (``...vit.cls_token``), loaded strictly (an ImageNet head
    is dropped). Reading them is weights.py's job.
    """
    spec = backbone_spec(name)
    if backbone_kind(name) != "vit":
        raise ConfigError(f"{name} is not a ViT backbone")
    state, source, from_hub = backbone_state(name, pretrained, built_here="vit_kwargs" in spec)
    if "vit_kwargs" in spec:
        vit = VisionTransformer(**spec["vit_kwargs"], num_classes=0, dynamic_img_size=True)
    else:
        vit = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)
    plain = isinstance(vit, VisionTransformer) and vit.cls_token is not None and vit.reg_token is None
    if not plain or vit.no_embed_class:
        raise ConfigError(f"{name} is not a plain ViT with a class token and no register tokens")
    if state is not None:
        load_backbone_state(vit, state, source, from_hub)
    return vit


def create_resnet(name: str, pretrained: str | bool | None = None) -> ResNet:
    """A timm ResNet without classifier. ``pretrained`` as for ``create_vit``; "imagenet" means the backbone's
    ``imagenet_tag`` (torchvision's weights for resnet101, as lang-seg's lseg_vit_zs.py:746 loads them)."""
    spec = backbone_spec(name)
    if backbone_kind(name) != "resnet":
        raise ConfigError(f"{name} is not a ResNet backbone")
    built_here = "resnet_kwargs" in spec
    state, source, from_hub = backbone_state(
        name, pretrained, built_here=built_here, default_tag=spec.get("imagenet_tag"), anchor="conv1.weight"
    )
    if built_here:
        kwargs = spec["resnet_kwargs"]
        resnet = ResNet(RESNET_BLOCKS[kwargs["block"]], list(kwargs["layers"]), num_classes=0)
    else:
        resnet = timm.create_model(name, pretrained=False, num_classes=0)
    if state is not None:
        load_backbone_state(resnet, state, source, from_hub)
    return resnet


def resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """[1, 1 + gh*gw, C] positional embeddings (CLS first) bilinearly resized to another token grid."""
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    patch_pos = patch_pos.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=new_grid, mode="bilinear", align_corners=False)
    return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)


# ------------------------------------------------------------------------------------------------ the decoder


class Readout(nn.Module):
    """Patch tokens from [B, 1 + T, C] block outputs: "ignore" drops CLS, "add" adds it, "project"
    concatenates it to every patch token then Linear(2C -> C) + GELU."""

    def __init__(self, width: int, mode: str) -> None:
        super().__init__()
        if mode not in ("ignore", "add", "project"):
            raise ConfigError(f"unknown DPT readout '{mode}'; use project, add or ignore")
        self.mode = mode
        self.project = nn.Sequential(nn.Linear(2 * width, width), nn.GELU()) if mode == "project" else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        if self.mode == "ignore":
            return patches
        if self.mode == "add":
            return patches + cls
        assert self.project is not None
        return self.project(torch.cat([patches, cls.expand_as(patches)], dim=-1))


def _resample(channels: int, patch: int, stride: int) -> nn.Module:
    """From the token grid (1/patch) to 1/stride: transposed conv up, identity, or 3x3 stride-2 convs down."""
    if patch > stride:
        factor = patch // stride
        if factor * stride != patch:
            raise ValueError(f"patch {patch} is not a multiple of stride {stride}")
        return nn.ConvTranspose2d(channels, channels, kernel_size=factor, stride=factor)
    if patch == stride:
        return nn.Identity()
    steps = math.log2(stride / patch)
    if steps != int(steps):
        raise ValueError(f"stride {stride} is not patch {patch} times a power of two")
    convs = [nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(int(steps))]
    return convs[0] if len(convs) == 1 else nn.Sequential(*convs)


class ResidualConvUnit(nn.Module):
    """x + BN(conv(ReLU(BN(conv(ReLU(x)))))), 3x3 convs (DPT's unit with batch norm)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(F.relu(x)))
        out = self.bn2(self.conv2(F.relu(out)))
        return x + out


class FusionBlock(nn.Module):
    """(coarser path [+ RCU(lateral)]) -> RCU -> bilinear upsampling (align_corners=True) -> 1x1 conv."""

    def __init__(self, features: int, lateral: bool = True) -> None:
        super().__init__()
        self.lateral = ResidualConvUnit(features) if lateral else None
        self.refine = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(
        self, path: torch.Tensor, lateral: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if lateral is not None:
            assert self.lateral is not None, "this fusion block takes no lateral input"
            path = path + self.lateral(lateral)
        path = self.refine(path)
        size = size or (2 * path.shape[-2], 2 * path.shape[-1])
        path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class DPT(nn.Module):
    """Images [B, 3, H, W] (sides divisible by the patch size; by 32 for a ResNet) -> pixel embeddings
    [B, out_dim, H/2, W/2]."""

    def __init__(
        self,
        backbone: str,
        pretrained: str | None = None,
        features: int = 256,
        out_dim: int = 512,
        readout: str = "project",
    ) -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        self.backbone_name = backbone
        self.kind = backbone_kind(backbone)
        self.grad_checkpointing = False
        channels = tuple(spec["channels"])
        if self.kind == "resnet":
            self.hooks: tuple[int, ...] = ()
            self.vit = self.readout = self.reassemble = None
            self.resnet = create_resnet(backbone, pretrained)
            self.patch_size = int(spec["patch"])
        else:
            self.resnet = None
            self._build_vit(backbone, pretrained, spec, readout)
        self.layer_rn = nn.ModuleList(nn.Conv2d(ch, features, 3, padding=1, bias=False) for ch in channels)
        # fusion[0] is the finest (1/4 -> 1/2); fusion[3] the coarsest, which has no lateral input
        self.fusion = nn.ModuleList(FusionBlock(features, lateral=i < 3) for i in range(4))
        self.head = nn.Conv2d(features, out_dim, 1)

    def _build_vit(self, backbone: str, pretrained: str | None, spec: dict, readout: str) -> None:
        self.hooks = tuple(spec["hooks"])
        self.vit = create_vit(backbone, pretrained)
        self.vit.norm = nn.Identity()  # no hook reads the final norm; an unused parameter would upset DDP
        del self.vit.blocks[max(self.hooks) + 1 :]  # blocks after the last hook (none for BACKBONES)
        self.patch_size = int(self.vit.patch_embed.patch_size[0])
        width = int(self.vit.embed_dim)
        self.readout = nn.ModuleList(Readout(width, readout) for _ in self.hooks)
        self.reassemble = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, ch, 1), _resample(ch, self.patch_size, stride))
            for ch, stride in zip(spec["channels"], STRIDES, strict=True)
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each ViT block (ResNet stage) in the backward pass (less memory for ViT-L at 480)."""
        self.grad_checkpointing = enable

    @property
    def backbone(self) -> nn.Module:
        """The ViT or the ResNet."""
        return self.resnet if self.kind == "resnet" else self.vit

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Everything but the backbone: readouts, reassembly, fusion and head."""
        return (p for name, p in self.named_parameters() if not name.startswith(("vit.", "resnet.")))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        if height % self.patch_size or width % self.patch_size:
            if self.kind == "resnet":
                raise ValueError(
                    f"image sides {height}x{width} must divide by 32 for the ResNet backbone "
                    f"{self.backbone_name} (its coarsest level is at 1/32)"
                )
            raise ValueError(f"image sides {height}x{width} must divide by the patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def resnet_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The ResNet's four levels at 1/4, 1/8, 1/16, 1/32 (lang-seg lseg_net_zs.py:306-309)."""
        self.grid(images.shape[-2], images.shape[-1])
        r = self.resnet
        x = r.maxpool(r.act1(r.bn1(r.conv1(images))))
        levels = []
        for stage in (r.layer1, r.layer2, r.layer3, r.layer4):
            x = self._run(stage, x)
            levels.append(x)
        return levels

    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        old = tuple(int(g) for g in self.vit.patch_embed.grid_size)
        return resize_pos_embed(self.vit.pos_embed, (old[0], old[1]), grid)

    def hooked_tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the hooked blocks, each [B, 1 + T, C] with CLS first."""
        grid = self.grid(images.shape[-2], images.shape[-1])
        vit = self.vit
        x = vit.patch_embed(images)  # [B, gh, gw, C] (dynamic_img_size)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = vit.norm_pre(vit.pos_drop(x + self.pos_embed(grid).to(x.dtype)))
        outputs = []
        for i, block in enumerate(vit.blocks):
            x = self._run(block, x)
            if i in self.hooks:
                outputs.append(x)
        return outputs

    def vit_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The ViT's hooked tokens, read out and reassembled to 1/4, 1/8, 1/16, 1/32."""
        batch = images.shape[0]
        grid = self.grid(images.shape[-2], images.shape[-1])
        levels = []
        for tokens, readout, reassemble in zip(
            self.hooked_tokens(images), self.readout, self.reassemble, strict=True
        ):
            x = readout(tokens).transpose(1, 2).reshape(batch, -1, grid[0], grid[1])
            levels.append(reassemble(x))
        return levels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.resnet_levels(images) if self.kind == "resnet" else self.vit_levels(images)
        levels = [layer_rn(x) for layer_rn, x in zip(self.layer_rn, raw, strict=True)]
        path = self.fusion[3](levels[3], size=levels[2].shape[-2:])
        path = self.fusion[2](path, levels[2], size=levels[1].shape[-2:])
        path = self.fusion[1](path, levels[1], size=levels[0].shape[-2:])
        path = self.fusion[0](path, levels[0])  # 1/4 -> 1/2
        return self.head(path)
