"""CLIP through open_clip: one door in (name + weights), dense patch tokens, and class-name text embeddings.

Weights (``pretrained``): None for random init, a local file (open_clip/OpenAI state dict, safetensors, or one of
our Lightning checkpoints), or a known open_clip tag. A tag is read from the local cache when it is there; when it
must be downloaded and the hub cannot be reached, we stop within seconds and say which file to pass instead
(open_clip alone would retry for about a minute); the network/offline helpers live in hub.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.hub import cached_hub_file as _cached_hub_file
from lseg_pacl.models.hub import download_clip_weights as _download
from lseg_pacl.models.hub import host_reachable as _host_reachable  # noqa: F401 (kept importable here)
from lseg_pacl.models.last_block import transformer_tokens

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)  # registers lseg-tiny-vit (tests, the demo)

# ------------------------------------------------------------------------------------------------ weights


def _is_file_like(value: str) -> bool:
    return os.sep in value or value.startswith(".") or Path(value).suffix in {".pt", ".pth", ".bin", ".ckpt",
                                                                              ".safetensors"}


def _lightning_clip_state(obj: dict) -> dict | None:
    """The CLIP weights inside one of our Lightning checkpoints (keys under ``clip.model.``)."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or "pytorch-lightning_version" not in obj:
        return None
    prefix = "clip.model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_weights(model: nn.Module, path: str) -> None:
    """Load a local weights file into an open_clip model, tensors only (no pickled code is run)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingInputError(f"CLIP weights file {file} does not exist (model.clip.pretrained)")
    if file.suffix != ".safetensors":
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MissingInputError(
                f"{file} cannot be read as a tensors-only checkpoint ({type(exc).__name__}). TorchScript archives "
                f"such as OpenAI's original ViT-B-16.pt are not accepted: pass open_clip's "
                f"open_clip_pytorch_model.bin / open_clip_model.safetensors instead."
            ) from None
        state = _lightning_clip_state(obj)
        if state is not None:
            if not state:
                raise MissingInputError(f"{file} is a Lightning checkpoint without CLIP weights (no clip.model.*)")
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ConfigError(
                    f"{file} does not fit model.clip.name: missing {list(missing)[:5]}, unexpected "
                    f"{list(unexpected)[:5]}"
                )
            return
    try:
        open_clip.load_checkpoint(model, str(file), weights_only=True)
    except RuntimeError as exc:
        raise ConfigError(f"{file} does not fit model.clip.name: {str(exc).splitlines()[0]}") from None


@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip warns 'initialized randomly' before we load weights ourselves; hide that one message."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def create_clip(name: str, pretrained: str | None = None) -> nn.Module:
    """An open_clip CLIP by model name with weights from a tag, a local file, or none (random init)."""
    if name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model '{name}' (model.clip.name); see open_clip.list_models()")
    tag_cfg: dict = {}
    is_file = pretrained is not None and (_is_file_like(pretrained) or Path(pretrained).expanduser().is_file())
    if pretrained is not None and not is_file:
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ConfigError(
                f"'{pretrained}' is neither a file nor a pretrained tag of {name} (model.clip.pretrained); "
                f"tags: {', '.join(tags) or 'none'}"
            )
    quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not name.endswith("quickgelu")
    with _quiet_root_logger():
        model = open_clip.create_model(name, pretrained=None, load_weights=False, force_quick_gelu=quick_gelu)
    if pretrained is None:
        return model
    if is_file:
        load_weights(model, pretrained)
    else:
        file = _cached_hub_file(tag_cfg) or _download(name, pretrained, tag_cfg)
        open_clip.load_checkpoint(model, file, weights_only=True)
    return model


# ------------------------------------------------------------------------------------------------ the model


class TextEmbeddingCache:
    """Normalised, template-averaged class-name embeddings, computed once per label set.

    Valid only while the text tower does not change: trainable text towers clear it before each use.
    """

    def __init__(self) -> None:
        self._store: dict[tuple[tuple[str, ...], tuple[str, ...]], torch.Tensor] = {}

    def get(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor | None:
        return self._store.get((tuple(names), tuple(templates)))

    def put(self, names: Sequence[str], templates: Sequence[str], value: torch.Tensor) -> None:
        self._store[(tuple(names), tuple(templates))] = value

    def clear(self) -> None:
        self._store.clear()


class ClipBackbone(nn.Module):
    """An open_clip CLIP with the views this project needs: pooled, dense (per patch) and text embeddings."""

    def __init__(self, name: str, pretrained: str | None = None, image_size: int | None = None,
                 last_block: str = "plain") -> None:
        super().__init__()
        self.name = name
        self.last_block = last_block  # the last block of dense features (models/last_block.py)
        self.model = create_clip(name, pretrained)
        self.tokenizer = open_clip.get_tokenizer(name)
        visual = self.model.visual
        if not hasattr(visual, "conv1") or getattr(visual, "attn_pool", None) is not None:
            raise ConfigError(f"{name} is not a plain ViT CLIP; dense patch features need one (model.clip.name)")
        self.patch_size = int(visual.patch_size[0])
        self.image_size = int(image_size or visual.image_size[0])
        self.width = int(visual.conv1.out_channels)
        self.embed_dim = int(visual.output_dim)
        pre = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
        self.mean = tuple(pre.get("mean", open_clip.constants.OPENAI_DATASET_MEAN))
        self.std = tuple(pre.get("std", open_clip.constants.OPENAI_DATASET_STD))
        self.text_cache = TextEmbeddingCache()

    # ---- image side
    def _positional(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positional embeddings for a token grid, bilinearly resized when it differs from training."""
        pos = self.model.visual.positional_embedding
        cls_pos, patch_pos = pos[:1], pos[1:]
        old = int(math.isqrt(patch_pos.shape[0]))
        if (old, old) == tuple(grid):
            return pos
        patch_pos = patch_pos.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])

    def grid(self, height: int, width: int) -> tuple[int, int]:
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image sides {height}x{width} must divide by the patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def tokens(self, images: torch.Tensor, last_block: str = "plain") -> torch.Tensor:
        """The last layer's tokens after ln_post, [B, 1 + T, width] (CLS first); ``last_block`` picks CLIP's
        own last block or a training-free variant of it."""
        visual = self.model.visual
        grid = self.grid(images.shape[-2], images.shape[-1])
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positional(grid).to(x.dtype)
        x = visual.ln_pre(x)
        x = transformer_tokens(visual.transformer, x, last_block, grid)
        return visual.ln_post(x)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The T patch tokens of the last layer after ln_post (CLS dropped), [B, T, width], with this
        backbone's ``last_block``."""
        return self.tokens(images, self.last_block)[:, 1:]

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens @ self.model.visual.proj

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """Every patch token in the joint space (ln_post then the projection), [B, T, D], not normalised."""
        return self.project(self.patch_tokens(images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled (CLS) embedding in the joint space, [B, D], not normalised."""
        return self.project(self.tokens(images)[:, 0])

    # ---- text side
    def _truncation_is_exact(self) -> bool:
        """Causal text attention pooled at the end-of-text token: padding after it cannot change the output."""
        return getattr(self.model, "text_pool_type", None) == "argmax" and getattr(self.model, "attn_mask",
                                                                                     None) is not None

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids, cut to the longest text of the batch where that provably leaves the embeddings unchanged."""
        tokens = self.tokenizer(list(texts))
        if self._truncation_is_exact() and tokens.numel():
            longest = int((tokens != 0).sum(1).max().item())
            tokens = tokens[:, : max(longest, 1)]
        return tokens.to(next(self.model.parameters()).device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts in the joint space, [N, D], not normalised."""
        tokens = self.tokenize(texts)
        if tokens.shape[1] == self.model.positional_embedding.shape[0]:
            return self.model.encode_text(tokens)
        return self._encode_short(tokens)

    def _encode_short(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's CLIP.encode_text on a shorter context: positions and causal mask cut to its length."""
        m, n = self.model, tokens.shape[1]
        x = m.token_embedding(tokens).to(m.transformer.get_cast_dtype())
        x = x + m.positional_embedding[:n].to(x.dtype)
        x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def class_embeddings(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """One unit vector per class: each templated prompt normalised, averaged, re-normalised. Cached."""
        cached = self.text_cache.get(names, templates)
        if cached is not None:
            return cached
        prompts = [t.format(n) for n in names for t in templates]
        with torch.no_grad():
            emb = F.normalize(self.encode_text(prompts).float(), dim=-1)
        emb = F.normalize(emb.reshape(len(names), len(templates), -1).mean(1), dim=-1)
        self.text_cache.put(names, templates, emb)
        return emb
