"""ProxyCLIP (Lan et al., ECCV'24): CLIP's last attention replaced by a vision foundation model's (VFM's)
patch-to-patch similarity. Official code: mc-lan/ProxyCLIP@e7b767f.

Why: CLIP's patch tokens know *what* is in a window but attend across objects; a self-supervised VFM (DINO)
knows *which patches belong together* but not their names. ProxyCLIP keeps CLIP's values and takes the
attention from the VFM, so each patch averages CLIP's semantics over the region DINO groups it with.

One window (proxyclip_segmentor.py:106-186, open_clip/transformer.py:503-587):
- VFM input: the window with CLIP's normalisation undone and ImageNet's applied, not resized
  (proxyclip_segmentor.py:79-80, 113-116). Proxy F = the VFM's last-block tokens after its final LayerNorm,
  patches only (DINO ``get_intermediate_layers``, :132, :154; DINOv2: class token and registers dropped).
- Proxy attention shared by every head (transformer.py:569-578): F L2-normalised per patch, S = FᵀF,
  S' = ``gamma`` (S - ``beta`` mean S), S' < 0 -> -inf, softmax over keys.
- Block L (transformer.py:526-528, 560-587): V = the value projection of ln_1(x_{L-1}), CLS dropped,
  bilinearly resized from CLIP's grid to the VFM's; out_proj(A V); no residual, no FFN. Then ln_post, the
  projection (:535-536), cosines at the VFM grid, bilinear to the window (segmentor :177-184).
- Windows whose sides are not multiples of ``pad_multiple`` (56) are zero-padded, centred, before CLIP and the
  VFM see them, and the logits cut back (segmentor :218-231, ``compute_padsize`` :294-306). Each network then
  reads its whole patches only, as the official patch convolutions do. The protocol's windows are whole CLIP
  patches; on a padded window CLIP's blocks 1..L-1 run again here on the padded window. The official configs'
  windows (336, 224) never pad; a window cut short by a small image meets the protocol's ``remainder`` rule
  first (right / bottom to whole CLIP patches), then this one, where the official code pads once, centred.
- Kept as the official code has it: where a patch's similarities all fall below beta mean S (a near-uniform
  window, mean S > 1 / beta), its row is all -inf and its attention, hence the window's logits, NaN.

VFM (``vfm``, a timm ViT; ``vfm_weights``, a timm tag, a local file or null = random init, seeded): the
official code loads DINO ViT-B/8 from torch.hub (configs/base_config.py:6, segmentor :53); timm's
``vit_base_patch8_224.dino`` holds the same tensors (dino hubconf.py:67-78). Position embeddings on another
grid (``vfm_pos_embed``): ``hub`` is DINO's hub rule (dino vision_transformer.py:174-194: bicubic with scale
factor (n + 0.1) / N, no antialiasing, unchanged only on the trained square grid); ``timm`` is timm's (bicubic
to the size, antialiased; DINOv2's hub does the same). They differ by a few percent of the features at 336 px;
the ``paper`` preset sets ``hub``.

Where this differs from the official code, on purpose:
- Non-square windows: the official code reads both VFM grid sides from the height (segmentor :149, :158) and
  swaps CLIP's grid sides (transformer.py:504, 521, 580), so it fails on them; here grids are (rows, cols).
- mean S is taken per window; the official ``torch.mean`` runs over the whole batch of windows, which is one
  window there (identical at its batch size 1).
- The official code registers a new forward hook on DINO's qkv at every window (:125-129, unused): not done.
- Precision: the official CLIP and VFM run in fp16 (segmentor :40, :74, :116, :172), the VFM's position
  resampling too. Here everything runs in the dtype given (the ``paper`` preset's fp16 is autocast on CUDA;
  the softmax runs in at least float32, the VFM's positions in the weights' dtype, float32 there).
The ``paper`` preset (experiments/presets/paper/proxyclip.yaml) runs the official protocol: slide 336 / 112
(Cityscapes 224 / 112), short side 336 (ADE, Cityscapes 448), ProxyCLIP's own name files split on '; '.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
import torch.nn.functional as F
from torch import nn

from data_modules.feature_cache import KeyedStore
from lseg_pacl.checksums import sha256_of
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models import hub
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import Trunk
from lseg_pacl.models.weights import is_file_like, load_tensors, strip_prefix, timm_hub_source
from lseg_pacl.models.zeroshot import zero_shot_logits

__all__ = [
    "ProxyCLIP", "build_vfm", "centred_padding", "hub_positions", "proxy_attention", "proxy_block",
    "timm_positions", "vfm_features", "vfm_input", "vfm_model",
]

VFM_KEY = "eval.method_options.vfm_weights"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # proxyclip_segmentor.py:80 transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # vfm_weights null: the same random VFM in every process


def _wide(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


# ------------------------------------------------------------------------------------------------ the window


def vfm_input(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """The window as the VFM was trained to see it: CLIP's normalisation (mean, std) undone, ImageNet's
    applied (proxyclip_segmentor.py:113-116)."""
    def stat(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=image.dtype, device=image.device).view(1, -1, 1, 1)

    return (image * stat(std) + stat(mean) - stat(IMAGENET_MEAN)) / stat(IMAGENET_STD)


def centred_padding(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zeros that bring h x w to multiples of ``multiple``, the odd pixel at the
    right / bottom (proxyclip_segmentor.py:294-306)."""
    def split(side: int) -> tuple[int, int]:
        extra = -side % multiple
        return extra // 2, extra - extra // 2

    return (*split(w), *split(h))


# ---------------------------------------------------------------------------------------------- VFM positions


def hub_positions(patch_pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """DINO's hub rule (vision_transformer.py:174-194) on the patch positions [1, C, N, N]: unchanged on the
    trained square grid, else bicubic with scale factors ((rows + 0.1) / N, (cols + 0.1) / N)."""
    side = patch_pos.shape[-1]
    if tuple(grid) == (side, side):
        return patch_pos
    scale = ((grid[0] + 0.1) / side, (grid[1] + 0.1) / side)
    out = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False,
                        recompute_scale_factor=False)
    if tuple(out.shape[-2:]) != tuple(grid):  # vision_transformer.py:190 asserts the same
        raise ValueError(f"hub position resampling gave {tuple(out.shape[-2:])} for grid {tuple(grid)}")
    return out


def timm_positions(patch_pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """timm's rule (layers/pos_embed.py ``resample_abs_pos_embed``, also DINOv2's hub): bicubic to the size,
    antialiased, in at least float32."""
    if tuple(grid) == tuple(patch_pos.shape[-2:]):
        return patch_pos
    out = F.interpolate(patch_pos.to(_wide(patch_pos)), size=tuple(grid), mode="bicubic", align_corners=False,
                        antialias=True)
    return out.to(patch_pos.dtype)


POSITION_RULES: dict[str, Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]] = {
    "hub": hub_positions,
    "timm": timm_positions,
}


def _positions(vfm: nn.Module, grid: tuple[int, int], rule: str) -> torch.Tensor:
    """The VFM's position embeddings [1, prefix + rows * cols, C] for a grid; ``prefix`` counts the tokens
    before the patches that carry a position (timm ``_pos_embed``: none with ``no_embed_class``)."""
    pos = vfm.pos_embed
    prefix = 0 if vfm.no_embed_class else vfm.num_prefix_tokens
    side = math.isqrt(pos.shape[1] - prefix)
    patch = pos[:, prefix:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = POSITION_RULES[rule](patch, grid).permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat([pos[:, :prefix], patch], dim=1)


def vfm_features(vfm: nn.Module, image: torch.Tensor, rule: str = "timm") -> torch.Tensor:
    """The proxy [B, C, rows, cols]: a timm ViT's patch tokens after its last block and final norm, on the
    image's whole patches (the rest dropped, as its patch convolution does), positions by ``rule``."""
    ph, pw = vfm.patch_embed.patch_size
    grid = (image.shape[-2] // ph, image.shape[-1] // pw)
    if not all(grid):
        raise ValueError(f"a {tuple(image.shape[-2:])} window holds no whole {ph}x{pw} VFM patch")
    x = vfm.patch_embed.proj(image[..., : grid[0] * ph, : grid[1] * pw].to(vfm.pos_embed.dtype))
    x = vfm.patch_embed.norm(x.flatten(2).transpose(1, 2))
    prefix = [t.expand(x.shape[0], -1, -1) for t in (vfm.cls_token, vfm.reg_token) if t is not None]
    pos = _positions(vfm, grid, rule).to(x.dtype)
    if vfm.no_embed_class:  # DINOv2 in timm: positions on the patches, then class token and registers
        x = torch.cat([*prefix, x + pos], dim=1)
    else:  # DINO: the class token's position too
        x = torch.cat([*prefix, x], dim=1) + pos
    x = vfm.norm_pre(vfm.patch_drop(vfm.pos_drop(x)))
    x = vfm.norm(vfm.blocks(x))[:, vfm.num_prefix_tokens :]
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


# ------------------------------------------------------------------------------------------------ block L


def proxy_attention(features: torch.Tensor, beta: float = 1.2, gamma: float = 3.0) -> torch.Tensor:
    """The proxy attention [B, M, M] (M = rows * cols of ``features`` [B, C, rows, cols]), in at least float32
    (transformer.py:569-578): cosine similarity S, gamma (S - beta mean S), negatives masked, softmax."""
    f = F.normalize(features.flatten(2), dim=1)
    s = f.transpose(1, 2) @ f
    s = (s - s.mean(dim=(1, 2), keepdim=True) * beta) * gamma  # per window (official: over the batch)
    s = s.masked_fill(s < 0, float("-inf"))
    return s.softmax(dim=-1, dtype=_wide(s))


def proxy_block(block: nn.Module, x: torch.Tensor, grid: tuple[int, int], attention: torch.Tensor,
                vfm_grid: tuple[int, int]) -> torch.Tensor:
    """CLIP's last block as ProxyCLIP runs it on batch-first tokens x [B, 1 + T, width] (CLS first, T on
    ``grid``): out_proj(A V) [B, M, width] on the VFM grid, no residual, no FFN (transformer.py:560-587).

    One attention for every head: the heads' A V_h, concatenated, are A V of all channels."""
    attn = block.attn
    width = x.shape[-1]
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width :], bias)[:, 1:]  # :566, CLS dropped :580
    v = v.transpose(1, 2).reshape(x.shape[0], width, *grid)
    v = F.interpolate(v, size=tuple(vfm_grid), mode="bilinear", align_corners=False)  # :581
    v = v.flatten(2).transpose(1, 2)
    return attn.out_proj(attention.to(v.dtype) @ v)  # :584-586


# ------------------------------------------------------------------------------------------------ the VFM


def _check_vfm(vfm: nn.Module) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(vfm, VisionTransformer):
        raise TypeError(f"ProxyCLIP's VFM must be a timm VisionTransformer, got {type(vfm).__name__}")
    return vfm


def _hub_file(name: str, tag: str) -> str:
    """timm's weights file for ``name.tag``: the local Hugging Face cache, else a download, else (no network)
    an error within seconds naming the file to pass as a local copy."""
    repo, files, full = timm_hub_source(name, tag)
    found = hub.cached_hf_file(repo, files)
    if found:
        return found
    repo_id, revision = hub.split_repo(repo)
    hub.require_reachable(hub.hf_endpoint(), what=f"ProxyCLIP's VFM weights {full}", filename=files[0],
                          where=f"{hub.hf_endpoint()}/{repo_id}", config_key=VFM_KEY)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for file in files[:-1]:
        try:
            return hf_hub_download(repo_id, file, revision=revision, cache_dir=hub.hf_cache_dir())
        except EntryNotFoundError:
            continue  # no safetensors in that repository: the next name
    return hf_hub_download(repo_id, files[-1], revision=revision, cache_dir=hub.hf_cache_dir())


def _read_state(file: Path) -> dict[str, torch.Tensor]:
    """A tensors-only state dict (safetensors, or torch.load with weights_only=True: no code runs)."""
    if not file.is_file():
        raise MissingInputError(f"VFM weights file {file} does not exist ({VFM_KEY})")
    try:
        obj = load_tensors(file)
    except Exception as exc:
        raise MissingInputError(f"{file} cannot be read as a tensors-only state dict ({type(exc).__name__}; "
                                f"{VFM_KEY})") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MissingInputError(f"{file} holds no state dict of tensors ({VFM_KEY})")
    return strip_prefix(obj)


def build_vfm(name: str, weights: str | None) -> nn.Module:
    """A timm ViT by name, in eval mode and frozen, with ``weights`` (a timm tag, a local file, or None: a
    random initialisation from a fixed seed), on the CPU in float32. Weights are found before building."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    source = state = None
    if weights is not None:
        source = str(Path(weights).expanduser()) if is_file_like(weights) else _hub_file(name, weights)
        state = _read_state(Path(source))
    if state is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            vfm = _check_vfm(timm.create_model(name, pretrained=False, num_classes=0))
    else:  # no random initialisation to throw away: the tensors are the file's
        with torch.device("meta"):
            vfm = _check_vfm(timm.create_model(name, pretrained=False, num_classes=0))
        state = checkpoint_filter_fn(state, vfm)
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist."))}
        try:
            vfm.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            detail = " ".join(line.strip() for line in str(exc).splitlines()[1:4])
            raise ConfigError(f"{source} does not fit the VFM {name} ({VFM_KEY}): {detail}") from None
    return vfm.eval().requires_grad_(False)


_VFMS: dict[tuple, nn.Module] = {}


def vfm_model(name: str, weights: str | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The VFM for (name, weights) on a device in a dtype, built once per process (frozen, eval mode)."""
    key = (name, weights, torch.device(device), dtype)
    if key not in _VFMS:
        _VFMS[key] = build_vfm(name, weights).to(device=device, dtype=dtype)
    return _VFMS[key]


# ------------------------------------------------------------------------------------------------ the method


def _check_options(o: Mapping[str, Any]) -> None:
    name = o["vfm"]
    if not isinstance(name, str) or "." in name or not timm.models.is_model_in_modules(
        name, ["vision_transformer"]
    ):
        raise ValueError(f"vfm must be a timm ViT model name without a tag (e.g. vit_base_patch8_224; the "
                         f"tag goes in vfm_weights), got {name!r}")
    weights = o["vfm_weights"]
    if weights is not None:
        if not isinstance(weights, str) or not weights:
            raise ValueError(f"vfm_weights must be a timm tag, a file or null, got {weights!r}")
        if not is_file_like(weights) and f"{name}.{weights}" not in timm.list_pretrained(f"{name}.*"):
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
            raise ValueError(f"vfm_weights {weights!r} is neither a file nor a timm tag of {name}; tags: "
                             f"{', '.join(tags) or 'none'}")
    if o["vfm_pos_embed"] not in POSITION_RULES:
        raise ValueError(f"vfm_pos_embed must be one of {', '.join(POSITION_RULES)}, "
                         f"got {o['vfm_pos_embed']!r}")
    for key in ("beta", "gamma"):
        value = o[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
    if o["gamma"] <= 0:
        raise ValueError(f"gamma must be positive (it scales the similarities before the mask), "
                         f"got {o['gamma']}")
    cache = o["vfm_cache"]
    if cache is not None and (not isinstance(cache, str) or not cache):
        raise ValueError(f"vfm_cache must be a folder or null, got {cache!r}")
    if cache is not None and weights is None:
        raise ValueError("vfm_cache keeps features of named weights: random ones (vfm_weights null) have no "
                         "identity to key them by")
    multiple = o["pad_multiple"]
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"pad_multiple must be a whole number >= 1 (1: no padding), got {multiple!r}")


class ProxyCLIP(TrainingFreeMethod):
    defaults: ClassVar[dict[str, Any]] = {
        "vfm": "vit_base_patch8_224",  # base_config.py:6 vfm_model='dino' -> dino_vitb8 (segmentor :53)
        "vfm_weights": "dino",  # timm's copy of dino_vitbase8_pretrain.pth (dino hubconf.py:67-78)
        "vfm_pos_embed": "timm",  # hub: DINO's hub resampling (the paper preset); timm: timm's
        "beta": 1.2,  # proxyclip_segmentor.py:31
        "gamma": 3.0,  # proxyclip_segmentor.py:31
        "pad_multiple": 56,  # proxyclip_segmentor.py:220
        "vfm_cache": None,  # a folder keeping the VFM's features by window (data_modules/feature_cache.py)
    }

    def __init__(self, options: Mapping[str, Any] | None = None, vfm: nn.Module | None = None) -> None:
        """``vfm``: a timm ViT built by the caller (tests), used instead of ``vfm``/``vfm_weights``."""
        super().__init__(options)
        _check_options(self.options)
        self._vfm = _check_vfm(vfm) if vfm is not None else None
        self._cache: KeyedStore | None = None

    def vfm(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        if self._vfm is not None:
            return self._vfm
        return vfm_model(self.options["vfm"], self.options["vfm_weights"], device, dtype)

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        h, w = image.shape[-2:]
        pad = centred_padding(h, w, self.options["pad_multiple"])
        if not any(pad):
            return self._window(clip, trunk, image, text, size)
        padded = F.pad(image, pad)  # zeros: CLIP's mean colour, as the official crop padding
        p = clip.patch_size
        whole = padded[..., : padded.shape[-2] // p * p, : padded.shape[-1] // p * p]
        out = self._window(clip, clip.trunk(whole, self.needs()), padded, text, tuple(padded.shape[-2:]))
        out = out[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w]
        if (h, w) != tuple(size):  # the protocol stretches a window's whole patches over its remainder
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out

    def _store(self) -> KeyedStore | None:
        """The frozen-feature store of this VFM (its weights' identity, position rule), when asked for."""
        o = self.options
        if o["vfm_cache"] is None:
            return None
        if self._cache is None:
            weights = o["vfm_weights"]
            identity = f"sha256:{sha256_of(Path(weights).expanduser())}" if is_file_like(weights) \
                else f"timm:{o['vfm']}.{weights}"
            key = {"model": "proxyclip_vfm", "vfm": o["vfm"], "weights": identity,
                   "pos_embed": o["vfm_pos_embed"]}
            self._cache = KeyedStore(Path(o["vfm_cache"]).expanduser(), key)
        return self._cache

    def _features(self, vfm: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The VFM's normalised patch features of a window: read from the store when it holds them (the same
        input, weights and arithmetic give the same bits), else computed (and stored)."""
        store = self._store()
        if store is None:
            return vfm_features(vfm, inputs, self.options["vfm_pos_embed"])
        device = inputs.device.type
        arithmetic = str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else "none"
        name = f"{store.name_of(inputs)}-{arithmetic.removeprefix('torch.')}"
        found = store.get(name)
        if found is not None:
            return found.to(inputs.device)
        features = vfm_features(vfm, inputs, self.options["vfm_pos_embed"])
        store.put(name, features)
        return features

    def _window(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
                size: tuple[int, int]) -> torch.Tensor:
        """Cosines at ``size`` for a window whose CLIP trunk is ``trunk`` (on its whole CLIP patches)."""
        vfm = self.vfm(image.device, image.dtype)
        proxy = self._features(vfm, vfm_input(image, clip.mean, clip.std))
        vfm_grid = tuple(proxy.shape[-2:])
        attention = proxy_attention(proxy, self.options["beta"], self.options["gamma"])
        visual = clip.model.visual
        x = proxy_block(visual.transformer.resblocks[-1], trunk.x, trunk.grid, attention, vfm_grid)
        return zero_shot_logits(clip.project(visual.ln_post(x)), vfm_grid, text, size)
