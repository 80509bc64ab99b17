"""Reading model weights, whatever their source: open_clip tags and files, timm's ImageNet ViTs and ResNets
(tags or files), and this project's own Lightning checkpoints.

Files are loaded tensors-only (``weights_only=True`` or safetensors), so a file from elsewhere never runs
code. A tag is read from the local cache, else downloaded through hub.py, which stops within seconds without a
network and names the file to pass instead. Weights are found and read before a large network is built, so a
bad source fails at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import timm
import torch
from torch import nn

from lseg_pacl.checksums import sha256_of
from lseg_pacl.config.values import is_bool_word, parse_bool
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models import hub

CLIP_KEY = "model.clip.pretrained"
VIT_KEY = "model.lseg.backbone_pretrained"
WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
VIT_DEFAULT_TAGS = {
    "imagenet",
    "timm",
    "default",
}  # the backbone's ImageNet weights (timm's default for a ViT)
NO_WEIGHTS = {"", "none", "null", "random"}
TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes, preferred first


def is_file_like(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith((".", "~"))
        or Path(value).suffix in WEIGHT_SUFFIXES
        or Path(value).expanduser().is_file()
    )


def clip_weights_identity(name: str, pretrained: str | None) -> str | None:
    """What names these CLIP weights for a cache key: the tag, or the checksum of the file's bytes; None for a
    random initialisation, which has no identity of its own."""
    if pretrained is None:
        return None
    if is_file_like(pretrained):
        file = Path(pretrained).expanduser()
        if not file.is_file():
            raise MissingInputError(f"CLIP weights file {file} does not exist ({CLIP_KEY})")
        return f"sha256:{sha256_of(file)}"
    return f"open_clip:{name}:{pretrained}"


# ------------------------------------------------------------------------------------------------ CLIP


def clip_tag_config(name: str, pretrained: str | None) -> dict:
    """open_clip's record of a pretrained tag ({} for none or a file); an error naming the tags there are."""
    if pretrained is None or is_file_like(pretrained):
        return {}
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"'{pretrained}' is neither a file nor a pretrained tag of {name} ({CLIP_KEY}); "
            f"tags: {', '.join(tags) or 'none'}"
        )
    return cfg


def lightning_clip_state(obj: object) -> dict | None:
    """The CLIP weights inside one of our Lightning checkpoints (keys under ``clip.model.``)."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or "pytorch-lightning_version" not in obj:
        return None
    prefix = "clip.model."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def saved_clip_config(file: Path) -> dict | None:
    """``model.clip`` of the config inside one of our Lightning checkpoints (None for any other file, or one
    that is not there)."""
    if not file.is_file() or file.suffix == ".safetensors":
        return None
    try:
        obj = load_tensors(file)
    except Exception:  # noqa: BLE001 - not ours, or not readable: load_clip_file says why when it reads it
        return None
    if not isinstance(obj, dict) or "pytorch-lightning_version" not in obj:
        return None
    config = (obj.get("hyper_parameters") or {}).get("config") or {}
    clip = (config.get("model") or {}).get("clip")
    return dict(clip) if isinstance(clip, dict) else None


def load_clip_file(model: nn.Module, path: str, image_tower: bool = True) -> None:
    """A local weights file into an open_clip model: open_clip's own formats, or our Lightning checkpoints
    (an LSeg checkpoint holds only the text tower: enough where ``image_tower`` is not needed)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingInputError(f"CLIP weights file {file} does not exist ({CLIP_KEY})")
    if file.suffix != ".safetensors":
        try:
            obj = load_tensors(file)
        except Exception as exc:
            raise MissingInputError(
                f"{file} cannot be read as a tensors-only checkpoint ({type(exc).__name__}). TorchScript "
                f"archives such as OpenAI's original ViT-B-16.pt are not accepted: pass open_clip's "
                f"open_clip_pytorch_model.bin / open_clip_model.safetensors instead."
            ) from None
        state = lightning_clip_state(obj)
        if state is not None:
            if not state:
                raise MissingInputError(
                    f"{file} is a Lightning checkpoint without CLIP weights (no clip.model.*)"
                )
            missing, unexpected = model.load_state_dict(state, strict=False)
            no_tower = any(k.startswith("visual.") for k in missing) and not any(
                k.startswith("visual.") for k in state
            )
            if no_tower and image_tower:
                raise MissingInputError(
                    f"{file} holds no CLIP image tower (an LSeg checkpoint keeps only "
                    f"the text tower): pass open_clip weights or a CLIP or PACL "
                    f"checkpoint"
                )
            missing = [k for k in missing if image_tower or not k.startswith("visual.")]
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


def load_clip_weights(
    model: nn.Module, name: str, pretrained: str, tag_cfg: dict, image_tower: bool = True
) -> None:
    """``pretrained`` (a file, or a tag whose record is ``tag_cfg``) into ``model``."""
    if not tag_cfg:
        load_clip_file(model, pretrained, image_tower)
        return
    file = hub.cached_hub_file(tag_cfg) or hub.download_clip_weights(name, pretrained, tag_cfg)
    open_clip.load_checkpoint(model, file, weights_only=True)


# --------------------------------------------------------------------------------------------- timm backbones


def vit_weights_source(pretrained: str | bool | None) -> tuple[str, str | None]:
    """("none" | "file" | "hub", file path or hub tag (None: timm's default tag))."""
    if pretrained is None or isinstance(pretrained, bool):
        return ("hub" if pretrained else "none"), None
    value = str(pretrained).strip()
    if value.lower() in NO_WEIGHTS:
        return "none", None
    if is_bool_word(value):
        return ("hub" if parse_bool(value, VIT_KEY) else "none"), None
    if is_file_like(value):
        return "file", value
    if value.lower() in VIT_DEFAULT_TAGS:
        return "hub", None
    return "hub", value


def timm_hub_source(name: str, tag: str | None, built_here: bool = False) -> tuple[str, tuple[str, ...], str]:
    """(hub repo, candidate file names, full tag) of timm's weights for ``name``; tag None: timm's default."""
    if built_here:
        raise ConfigError(f"{name} is built here and has no pretrained weights ({VIT_KEY}: null or file)")
    full = name if tag is None else f"{name}.{tag}"
    cfg = timm.models.get_pretrained_cfg(full) if tag is None or full in timm.list_pretrained(full) else None
    if cfg is None:
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
        raise ConfigError(
            f"'{tag}' is neither a file nor a timm pretrained tag of {name} ({VIT_KEY}); use 'imagenet' "
            f"(timm's default) or one of: {', '.join(tags) or 'none'}"
        )
    if not cfg.hf_hub_id:
        raise ConfigError(f"timm publishes no hub weights for {full}; pass a local file as {VIT_KEY}")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else TIMM_HUB_FILES
    return cfg.hf_hub_id, files, f"{name}.{cfg.tag}" if cfg.tag else name


def fetch_timm_file(name: str, tag: str | None, built_here: bool = False) -> str:
    """The local path of timm's weights for ``name``: from the cache, else downloaded, else a fast error."""
    repo, files, full = timm_hub_source(name, tag, built_here)
    found = hub.cached_hf_file(repo, files)
    if found:
        return found
    repo_id, revision = hub.split_repo(repo)
    hub.require_reachable(
        hub.hf_endpoint(),
        what=f"ImageNet backbone weights {full}",
        filename=files[0],
        where=f"{hub.hf_endpoint()}/{repo_id}",
        config_key=VIT_KEY,
    )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for file in files[:-1]:
        try:
            return hf_hub_download(repo_id, file, revision=revision, cache_dir=hub.hf_cache_dir())
        except EntryNotFoundError:
            continue  # an older repository without safetensors: take the next name
    return hf_hub_download(repo_id, files[-1], revision=revision, cache_dir=hub.hf_cache_dir())


def load_tensors(file: Path, map_location: object = "cpu") -> object:
    """A file's contents, loaded without running code (safetensors, or torch.load with weights_only=True)."""
    if Path(file).suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file), device="cpu")
    return torch.load(file, map_location=map_location, weights_only=True)


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """A tensors-only state dict from a file (no pickled code runs), unwrapped from "state_dict"/"model"."""
    if not file.is_file():
        raise MissingInputError(f"backbone weights file {file} does not exist ({VIT_KEY})")
    try:
        obj = load_tensors(file)
    except Exception as exc:
        raise MissingInputError(
            f"{file} cannot be read as a tensors-only state dict ({type(exc).__name__}; {VIT_KEY})"
        ) from None
    while isinstance(obj, dict):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MissingInputError(f"{file} holds no state dict of tensors ({VIT_KEY})")
    return obj


def read_checkpoint(path: Path) -> dict:
    """One of this project's checkpoints (tensors and plain containers only), holding its run's config."""
    if not path.is_file():
        raise MissingInputError(f"checkpoint {path} does not exist")
    try:
        blob = load_tensors(path)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise MissingInputError(f"{path} is not a readable checkpoint ({why})") from None
    return own_checkpoint(blob, path)


def own_checkpoint(blob: object, path: Path) -> dict:
    """``blob`` if it is one of this project's checkpoints (its run's config inside), else an error."""
    hparams = blob.get("hyper_parameters") if isinstance(blob, dict) else None
    config = hparams.get("config") if isinstance(hparams, dict) else None
    if not config:
        raise MissingInputError(f"{path} is not a lseg_pacl checkpoint (no config in its hyperparameters)")
    return blob


def strip_prefix(state: dict[str, torch.Tensor], anchor: str = "cls_token") -> dict[str, torch.Tensor]:
    """Keys of a backbone stored inside a larger model (``net.vit.cls_token``, ``net.dpt.resnet.conv1.weight``
    ...) reduced to the backbone's own; ``anchor`` is a key of the backbone's top level (the shortest key that
    ends with it marks the prefix)."""
    found = sorted((k for k in state if k == anchor or k.endswith("." + anchor)), key=len)
    if not found or found[0] == anchor:
        return state
    prefix = found[0][: -len(anchor)]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def backbone_state(
    name: str,
    pretrained: str | bool | None,
    built_here: bool,
    default_tag: str | None = None,
    anchor: str = "cls_token",
) -> tuple[dict | None, str, bool]:
    """(state dict or None, where it came from, whether it is timm's hub format) for ``pretrained``;
    ``default_tag``: the timm tag that "imagenet" means (None: timm's default for ``name``)."""
    kind, value = vit_weights_source(pretrained)
    if kind == "hub":
        source = fetch_timm_file(name, value or default_tag, built_here)
        return read_state(Path(source)), source, True
    if kind == "file":
        source = str(Path(str(value)).expanduser())
        return strip_prefix(read_state(Path(source)), anchor), source, False
    return None, "", False


def vit_state(name: str, pretrained: str | bool | None, built_here: bool) -> tuple[dict | None, str, bool]:
    """``backbone_state`` of a ViT."""
    return backbone_state(name, pretrained, built_here)


CLASSIFIER_KEYS = (
    "head.",
    "head_dist.",
    "fc.",
)  # an ImageNet classifier in the file (ViT, ResNet) is not ours


def load_backbone_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, from_hub: bool
) -> None:
    """Strictly, after what timm itself applies to its hub weights (ViTs); an ImageNet classifier in the file
    is not ours."""
    from timm.models.vision_transformer import VisionTransformer

    if from_hub and isinstance(model, VisionTransformer):
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, model)
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_KEYS)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise ConfigError(f"{source} does not fit model.lseg.backbone ({VIT_KEY}): {detail}") from None


load_vit_state = load_backbone_state  # the name the ViT path had
