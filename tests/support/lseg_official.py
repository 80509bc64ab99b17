"""A direct transcription of lang-seg's LSeg networks (isl-org/lang-seg@bb00b21), for fidelity tests.

The module structure follows the official constructors, so a ``state_dict()`` of ``OfficialLSeg`` names every
tensor as the released checkpoints do (``pretrained.*``, ``scratch.*``; the checkpoint adds ``net.`` and
``net.clip_pretrained.*``). The forward follows ``LSeg.forward`` (modules/models/lseg_net.py:160-205) and
``LSegRN.forward`` (lseg_net_zs.py:300-339) line for line, except that it runs in the modules' own dtype (the
official code casts the pixel embeddings to fp16 for the cosine, lseg_net.py:194) and takes the text features
as an argument (the official code encodes them with ``clip_pretrained.encode_text``). Not our code: written
from the official source, independently of lseg_pacl.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ProjectReadout(nn.Module):
    """lseg_vit.py:79-90."""

    def __init__(self, in_features, start_index=1):
        super().__init__()
        self.start_index = start_index
        self.project = nn.Sequential(nn.Linear(2 * in_features, in_features), nn.GELU())

    def forward(self, x):
        readout = x[:, 0].unsqueeze(1).expand_as(x[:, self.start_index :])
        features = torch.cat((x[:, self.start_index :], readout), -1)
        return self.project(features)


class Transpose(nn.Module):
    """lseg_vit.py:93-101."""

    def __init__(self, dim0, dim1):
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x):
        return x.transpose(self.dim0, self.dim1)


def resample_modules(channels: int, patch: int, level: int) -> list[nn.Module]:
    """What follows the 1x1 conv in act_postprocess{level}: _make_vit_b16_backbone (lseg_vit.py:446-523; patch
    16: deconv k4, deconv k2, none, conv 3x3 s2) and _make_vit_b32_backbone (lseg_vit.py:315-396; patch 32:
    deconv k8, k4, k2, none). Patch 8 (our tiny test ViT; no official model has it) continues the pattern:
    deconv k2, none, conv 3x3 s2, two convs 3x3 s2 (forward_vit applies ``act_postprocess[3:]`` in order)."""
    stride = (4, 8, 16, 32)[level - 1]
    if patch > stride:
        k = patch // stride
        return [nn.ConvTranspose2d(channels, channels, kernel_size=k, stride=k, padding=0, bias=True)]
    steps = int(math.log2(stride // patch))
    return [nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1) for _ in range(steps)]


def make_vit_backbone(model, features, hooks, vit_features, patch, use_readout="project"):
    """_make_vit_b16_backbone / _make_vit_b32_backbone (lseg_vit.py:275-405, 408-535), without the forward
    hooks (``forward`` below reads the hooked blocks directly)."""
    pretrained = nn.Module()
    pretrained.model = model
    pretrained.hooks = list(hooks)
    pretrained.patch = patch
    assert use_readout == "project"
    for level in (1, 2, 3, 4):
        modules = [
            ProjectReadout(vit_features, 1),
            Transpose(1, 2),
            nn.Unflatten(2, torch.Size([384 // patch, 384 // patch])),
            nn.Conv2d(vit_features, features[level - 1], kernel_size=1, stride=1, padding=0),
            *resample_modules(features[level - 1], patch, level),
        ]
        setattr(pretrained, f"act_postprocess{level}", nn.Sequential(*modules))
    return pretrained


def make_resnet_backbone(resnet):
    """_make_resnet_backbone (lseg_blocks_zs.py:109-119)."""
    pretrained = nn.Module()
    pretrained.layer1 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)
    pretrained.layer2 = resnet.layer2
    pretrained.layer3 = resnet.layer3
    pretrained.layer4 = resnet.layer4
    return pretrained


def make_scratch(in_shape, out_shape):
    """_make_scratch (lseg_blocks.py / lseg_blocks_zs.py:56-106) with groups=1, expand=False."""
    scratch = nn.Module()
    for i, ch in enumerate(in_shape, start=1):
        setattr(
            scratch, f"layer{i}_rn", nn.Conv2d(ch, out_shape, kernel_size=3, stride=1, padding=1, bias=False)
        )
    return scratch


class ResidualConvUnit_custom(nn.Module):  # noqa: N801 - the official name
    """lseg_blocks_zs.py:236-302 with bn=True, activation nn.ReLU(False)."""

    def __init__(self, features, activation, bn):
        super().__init__()
        self.bn = bn
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=not self.bn)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=not self.bn)
        if self.bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)
        self.activation = activation

    def forward(self, x):
        out = self.activation(x)
        out = self.conv1(out)
        if self.bn:
            out = self.bn1(out)
        out = self.activation(out)
        out = self.conv2(out)
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock_custom(nn.Module):  # noqa: N801 - the official name
    """lseg_blocks_zs.py:307-372 (deconv=False, expand=False, align_corners=True)."""

    def __init__(self, features, activation, bn):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True, groups=1)
        self.resConfUnit1 = ResidualConvUnit_custom(features, activation, bn)
        self.resConfUnit2 = ResidualConvUnit_custom(features, activation, bn)

    def forward(self, *xs):
        output = xs[0]
        if len(xs) == 2:
            output = output + self.resConfUnit1(xs[1])
        output = self.resConfUnit2(output)
        output = F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(output)


class DepthwiseConv(nn.Module):
    """depthwise_conv (lseg_net.py:29-40)."""

    def __init__(self):
        super().__init__()
        self.depthwise = nn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, x):
        C, H, W = x.shape[1:]
        return self.depthwise(x.reshape(-1, 1, H, W)).view(-1, C, H, W)


class HeadBlock(nn.Module):
    """bottleneck_block (lseg_net.py:61-79) or depthwise_block (43-58)."""

    def __init__(self, bottleneck: bool, activation: str):
        super().__init__()
        self.bottleneck = bottleneck
        self.depthwise = DepthwiseConv()
        self.activation = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(), "tanh": nn.Tanh()}[activation]

    def forward(self, x, act=True):
        sum_layer = x.max(dim=1, keepdim=True)[0] if self.bottleneck else 0
        x = self.depthwise(x) + sum_layer
        return self.activation(x) if act else x


class OfficialLSeg(nn.Module):
    """LSeg / LSegRN's image side with ``use_bn=True`` (LSegNet, LSegRNNetZS): ``pretrained``, ``scratch``."""

    def __init__(
        self,
        pretrained,
        in_channels,
        features=256,
        out_c=512,
        arch_option=0,
        block_depth=0,
        activation="lrelu",
    ):
        super().__init__()
        self.pretrained = pretrained
        self.scratch = make_scratch(in_channels, features)
        for i in (1, 2, 3, 4):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock_custom(features, nn.ReLU(False), True))
        self.logit_scale = torch.tensor(1 / 0.07)  # lseg_net.py:141: exp(log(1/0.07)), never registered
        self.out_c = out_c
        self.scratch.head1 = nn.Conv2d(features, out_c, kernel_size=1)
        self.arch_option, self.block_depth = arch_option, block_depth
        if arch_option in (1, 2):
            self.scratch.head_block = HeadBlock(arch_option == 1, activation)

    # ---- the encoders
    def forward_vit(self, x):
        """forward_vit + forward_flex + _resize_pos_embed (lseg_vit.py:104-201)."""
        pretrained, model = self.pretrained, self.pretrained.model
        b, c, h, w = x.shape
        gs_h, gs_w = h // pretrained.patch, w // pretrained.patch
        posemb_tok, posemb_grid = model.pos_embed[:, :1], model.pos_embed[0, 1:]
        gs_old = int(math.sqrt(len(posemb_grid)))
        posemb_grid = posemb_grid.reshape(1, gs_old, gs_old, -1).permute(0, 3, 1, 2)
        posemb_grid = F.interpolate(posemb_grid, size=(gs_h, gs_w), mode="bilinear")
        posemb_grid = posemb_grid.permute(0, 2, 3, 1).reshape(1, gs_h * gs_w, -1)
        pos_embed = torch.cat([posemb_tok, posemb_grid], dim=1)
        t = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat((model.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + pos_embed
        activations = []
        for i, blk in enumerate(model.blocks):
            t = blk(t)
            if i in pretrained.hooks:
                activations.append(t)
        layers = []
        for level, act in enumerate(activations, start=1):
            post = getattr(pretrained, f"act_postprocess{level}")
            y = post[0:2](act)
            y = nn.Unflatten(2, torch.Size([gs_h, gs_w]))(y)
            layers.append(post[3 : len(post)](y))
        return layers

    def forward_resnet(self, x):
        """lseg_net_zs.py:306-309."""
        layer_1 = self.pretrained.layer1(x)
        layer_2 = self.pretrained.layer2(layer_1)
        layer_3 = self.pretrained.layer3(layer_2)
        layer_4 = self.pretrained.layer4(layer_3)
        return [layer_1, layer_2, layer_3, layer_4]

    def image_features(self, x):
        """Up to ``scratch.head1`` (lseg_net.py:169-185)."""
        encode = self.forward_resnet if hasattr(self.pretrained, "layer1") else self.forward_vit
        layer_1, layer_2, layer_3, layer_4 = encode(x)
        layer_1_rn = self.scratch.layer1_rn(layer_1)
        layer_2_rn = self.scratch.layer2_rn(layer_2)
        layer_3_rn = self.scratch.layer3_rn(layer_3)
        layer_4_rn = self.scratch.layer4_rn(layer_4)
        path_4 = self.scratch.refinenet4(layer_4_rn)
        path_3 = self.scratch.refinenet3(path_4, layer_3_rn)
        path_2 = self.scratch.refinenet2(path_3, layer_2_rn)
        path_1 = self.scratch.refinenet1(path_2, layer_1_rn)
        return self.scratch.head1(path_1)

    def forward(self, x, text_features):
        """lseg_net.py:185-205 (without the fp16 cast): logits [B, N, H, W] for text features [N, out_c]."""
        image_features = self.image_features(x)
        imshape = image_features.shape
        image_features = image_features.permute(0, 2, 3, 1).reshape(-1, self.out_c)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits_per_image = self.logit_scale.to(image_features) * image_features @ text_features.t()
        out = logits_per_image.view(imshape[0], imshape[2], imshape[3], -1).permute(0, 3, 1, 2)
        if self.arch_option in (1, 2):
            for _ in range(self.block_depth - 1):
                out = self.scratch.head_block(out)
            out = self.scratch.head_block(out, False)
        return F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)  # output_conv


def perturb_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BatchNorm statistic moved off its initial value (no 0 or 1 left), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.2 if p.ndim <= 1 else 0.05))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    return module
