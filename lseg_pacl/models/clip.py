"""CLIP through open_clip: one door in (name + weights), dense patch tokens, and class-name text embeddings.

Weights (``pretrained``): None for random init, a local file (open_clip/OpenAI state dict, safetensors, or one
of our Lightning checkpoints), or a known open_clip tag. A tag is read from the local cache when it is there;
when it must be downloaded and the hub cannot be reached, we stop within seconds and say which file to pass
instead (open_clip alone would retry for about a minute); reading weights is weights.py's job, the network
hub.py's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.errors import ConfigError
from lseg_pacl.models.last_block import final_block
from lseg_pacl.models.positions import POSITION_RULES
from lseg_pacl.models.trunk import NOTHING, Needs, Trunk, run_trunk
from lseg_pacl.models.weights import clip_tag_config, is_file_like, load_clip_weights, saved_clip_config

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)  # registers lseg-tiny-vit (tests, the demo)


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


def clip_quick_gelu(
    name: str, pretrained: str | None, quick_gelu: bool | None = None, _depth: int = 0
) -> bool:
    """Whether this CLIP uses QuickGELU: ``quick_gelu`` when given; a ``-quickgelu`` model name; else what
    the weights say (open_clip's record of a tag such as ``openai``; the activation one of our checkpoints
    was built with); else GELU. Decided by the weights' name whether or not they are read, so a module
    rebuilt without them (a checkpoint's state dict replaces them) has the architecture it was trained
    with."""
    if quick_gelu is not None:
        return bool(quick_gelu)
    if name.endswith("quickgelu"):
        return True
    if pretrained is None:
        return False
    if is_file_like(pretrained):  # one of ours says what it was built with (or the weights it started from)
        saved = saved_clip_config(Path(pretrained).expanduser()) if _depth < 8 else None
        if not saved or saved.get("name") != name:
            return False
        return clip_quick_gelu(name, saved.get("pretrained"), saved.get("quick_gelu"), _depth + 1)
    return bool(clip_tag_config(name, pretrained).get("quick_gelu", False))


def create_clip(
    name: str,
    pretrained: str | None = None,
    image_tower: bool = True,
    quick_gelu: bool | None = None,
    load_weights: bool = True,
) -> nn.Module:
    """An open_clip CLIP by model name, its activation as ``clip_quick_gelu`` says, with the weights of a
    tag, a local file, or none (random init); ``load_weights=False`` builds the architecture of those weights
    without reading them; ``image_tower=False``: weights of the text side suffice (the image tower is dropped
    by the caller)."""
    if name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model '{name}' (model.clip.name); see open_clip.list_models()")
    tag_cfg = clip_tag_config(name, pretrained)
    force = clip_quick_gelu(name, pretrained, quick_gelu) and not name.endswith("quickgelu")
    with _quiet_root_logger():
        model = open_clip.create_model(name, pretrained=None, load_weights=False, force_quick_gelu=force)
    if pretrained is not None and load_weights:
        load_clip_weights(model, name, pretrained, tag_cfg, image_tower)
    return model


@dataclass(frozen=True)
class ClipGeometry:
    """What an open_clip ViT's config says about its image side, before any weights are built."""

    patch: int
    width: int  # the vision transformer's token width
    image_size: int  # its native input side
    embed_dim: int  # the joint image-text space


def clip_geometry(name: str) -> ClipGeometry:
    cfg = open_clip.get_model_config(name)
    if not cfg:
        raise ConfigError(f"unknown open_clip model '{name}' (model.clip.name); see open_clip.list_models()")
    vision = cfg["vision_cfg"]
    patch = vision.get("patch_size")
    plain = isinstance(patch, int) and isinstance(vision.get("layers"), int)
    if not plain or vision.get("timm_model_name") or vision.get("attentional_pool"):
        raise ConfigError(f"{name} is not a plain ViT CLIP; dense patch features need one (model.clip.name)")
    size = vision["image_size"]
    return ClipGeometry(
        patch, int(vision["width"]), int(size if isinstance(size, int) else size[0]), int(cfg["embed_dim"])
    )


def clip_normalisation(name: str, pretrained: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the weights were trained with: their tag's record, else OpenAI's statistics."""
    pre = clip_tag_config(name, pretrained) if pretrained else {}
    return (
        tuple(pre.get("mean", open_clip.constants.OPENAI_DATASET_MEAN)),
        tuple(pre.get("std", open_clip.constants.OPENAI_DATASET_STD)),
    )


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
    """An open_clip CLIP with the views this project needs: pooled, dense (per patch) and text embeddings.

    ``image_tower=False`` keeps only the text side (LSeg embeds labels with CLIP but sees images with its own
    encoder): open_clip has no text-only constructor, so the image tower is dropped right after the weights
    are loaded, before the module reaches a device or a checkpoint.
    """

    def __init__(
        self,
        name: str,
        pretrained: str | None = None,
        image_size: int | None = None,
        last_block: str = "plain",
        image_tower: bool = True,
        pos_embed: str = "resize",
        quick_gelu: bool | None = None,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        if pos_embed not in POSITION_RULES:
            known = ", ".join(POSITION_RULES)
            raise ConfigError(f"unknown model.clip.pos_embed '{pos_embed}'; known: {known}")
        geometry = clip_geometry(name)
        self.pos_embed = pos_embed  # how position embeddings meet other grids (models/positions.py)
        self.name = name
        self.last_block = last_block  # the last block of dense features (models/last_block.py)
        self.model = create_clip(name, pretrained, image_tower, quick_gelu, load_weights)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.patch_size = geometry.patch
        self.image_size = int(image_size or geometry.image_size)
        self.width = geometry.width
        self.embed_dim = geometry.embed_dim
        self.mean, self.std = clip_normalisation(name, pretrained)
        self.text_cache = TextEmbeddingCache()
        if not image_tower:
            self.model.visual = None

    # ---- image side
    def _positional(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positional embeddings for a token grid, by this backbone's ``pos_embed`` rule."""
        return POSITION_RULES[self.pos_embed](self.model.visual.positional_embedding, grid)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image sides {height}x{width} must divide by the patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def tokens(self, images: torch.Tensor, last_block: str = "plain") -> torch.Tensor:
        """The last layer's tokens after ln_post, [B, 1 + T, width] (CLS first); ``last_block`` picks CLIP's
        own last block or a training-free variant of it."""
        return self.tokens_many(images, (last_block,))[0]

    def tokens_many(self, images: torch.Tensor, last_blocks: Sequence[str]) -> list[torch.Tensor]:
        """``tokens`` for several last blocks, sharing blocks 1..L-1 (computed once)."""
        trunk = self.trunk(images)
        transformer = self.model.visual.transformer
        return [self.model.visual.ln_post(final_block(transformer, trunk.x, v, trunk.grid))
                for v in last_blocks]

    def trunk(self, images: torch.Tensor, needs: Needs = NOTHING) -> Trunk:
        """Blocks 1..L-1 on ``images`` (patch embedding, positions, ln_pre first), keeping what ``needs`` asks
        for (models/trunk.py)."""
        visual = self.model.visual
        grid = self.grid(images.shape[-2], images.shape[-1])
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positional(grid).to(x.dtype)
        return run_trunk(visual.transformer, visual.ln_pre(x), grid, needs)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The T patch tokens of the last layer after ln_post (CLS dropped), [B, T, width], with this
        backbone's ``last_block``."""
        return self.tokens(images, self.last_block)[:, 1:]

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens @ self.model.visual.proj

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """Every patch token in the joint space (ln_post then the projection), [B, T, D], not normalised."""
        return self.project(self.patch_tokens(images))

    def dense_features_many(self, images: torch.Tensor, last_blocks: Sequence[str]) -> list[torch.Tensor]:
        """``dense_features`` with each of several last blocks, the shared blocks computed once."""
        return [self.project(t[:, 1:]) for t in self.tokens_many(images, last_blocks)]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled (CLS) embedding in the joint space, [B, D], not normalised."""
        return self.project(self.tokens(images)[:, 0])

    # ---- text side
    def _truncation_is_exact(self) -> bool:
        """Causal text attention pooled at the end-of-text token: padding after it cannot change the
        output."""
        return (
            getattr(self.model, "text_pool_type", None) == "argmax"
            and getattr(self.model, "attn_mask", None) is not None
        )

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids, cut to the longest text of the batch where that provably leaves the embeddings
        unchanged."""
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
