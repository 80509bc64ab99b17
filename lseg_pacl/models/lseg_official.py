"""Official lang-seg checkpoints (isl-org/lang-seg bb00b21) read safely and mapped onto our LSeg objective.

lang-seg released Lightning 1.x files: ``demo_e200.ckpt`` (ViT-L/16), ``pascal_fold{0..3}.ckpt`` and
``fss_rn101.ckpt`` (the zero-shot ResNet-101 model), ``fss_l16.ckpt`` (ViT-L/16 zero-shot) and ViT-B/32
ablation models. Their ``state_dict`` holds the whole ``LSegNet`` / ``LSegRNNetZS`` under ``net.``;
``hyper_parameters`` and the Lightning 1.4 callback states are pickled Python objects (``AttributeDict``,
callback classes as dict keys). Reading: ``torch.load(weights_only=True)`` first; a file it refuses is
unpickled by a restricted unpickler that resolves only what tensors and plain containers need and refuses
anything else, naming it, before anything is called (the style of data_modules/prepare/safe_pickle.py).

Mapping (official module -> ours; derived from lseg_vit.py, lseg_blocks.py, lseg_net.py and their _zs twins):

- ``pretrained.model.*`` (timm ViT) -> ``dpt.vit.*``; its final ``norm.*`` and ``head.*`` are not used by the
  DPT (no hook reads them) and are dropped.
- ``pretrained.act_postprocess{i}`` = Sequential(readout, Transpose, Unflatten, 1x1 conv, [resample])
  (lseg_vit.py:446-523): ``.0.project.0.*`` -> ``dpt.readout.{i-1}.project.0.*``; ``.3.*`` ->
  ``dpt.reassemble.{i-1}.0.*``; ``.4.*`` -> ``dpt.reassemble.{i-1}.1.*`` (a patch-8 ViT's two stride-2 convs,
  which no official model has, would be ``.4`` and ``.5``: forward_vit applies ``[3:]`` in order).
- ResNet (``_make_resnet_backbone``, lseg_blocks_zs.py:109-119): ``pretrained.layer1.{0,1,4}`` = conv1, bn1,
  layer1 (2 and 3 are the parameterless relu and maxpool); ``pretrained.layer{2,3,4}`` = layer{2,3,4}; all ->
  ``dpt.resnet.*``.
- ``scratch.layer{i}_rn`` -> ``dpt.layer_rn.{i-1}``; ``scratch.refinenet{i}.resConfUnit1`` / ``resConfUnit2``
  / ``out_conv`` -> ``dpt.fusion.{i-1}.lateral`` / ``refine`` / ``out_conv``. The official units' convs have
  no bias (``bias=not bn``, lseg_blocks.py ResidualConvUnit_custom): ours are filled with zeros, exactly the
  same function (and a bias before a train-mode BatchNorm gets a zero gradient). ``refinenet4.resConfUnit1``
  is never called (refinenet4 gets one input, lseg_net.py:176) and our coarsest block has no lateral unit:
  dropped.
- ``scratch.head1`` -> ``dpt.head``; ``scratch.head_block.depthwise.depthwise`` -> ``spatial.conv``.
- ``clip_pretrained.*`` (OpenAI CLIP ViT-B/32, fp16) -> ``clip.model.*`` in fp32 (open_clip uses OpenAI's
  names); the image tower (``visual.*``) is not kept by our LSeg and is dropped.
- The logit scale is an unregistered constant 1/0.07 (lseg_net.py:141): ``net.log_scale`` = log(1/0.07).

Any other key, or one of ours that the file does not fill, is an error that lists them all.

The spatial-regularization block cannot be read from the keys alone: arch_option 1 (bottleneck) and 2
(depthwise) have the same parameters (lseg_net.py:149-154). With a ``head_block`` in the file, the kind comes
from ``overrides["spatial_reg"]``, else from the file's hyper_parameters (``arch_option``) when it has them,
else it is an error that says to pass it. ``block_depth`` and ``activation`` come from the overrides, the
hyper_parameters, else the official test scripts' defaults (test_lseg.py: block_depth 0, activation lrelu).
The official block_depth b applies the block b - 1 times activated and once not (lseg_net.py:198-201; b = 0
applies it once), which is our block_depth max(b, 1).
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.dpt import BACKBONES

OFFICIAL_LOGIT_SCALE = 1 / 0.07
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# (token width, patch, depth) of the ViT backbones timm builds; the tiny one's come from its BACKBONES entry
TIMM_VITS = {
    "vit_large_patch16_384": (1024, 16, 24),
    "vit_base_patch16_384": (768, 16, 12),
    "vit_base_patch32_384": (768, 32, 12),
}
TIMM_RESNETS = {"resnet101": ("bottleneck", (3, 4, 23, 3))}
CLIP_CANDIDATES = ("ViT-B-32", "lseg-tiny-vit")  # the official text encoder, and our tiny test CLIP
ARCH_OPTIONS = {0: "none", 1: "bottleneck", 2: "depthwise"}
DEFAULT_BLOCK_DEPTH, DEFAULT_ACTIVATION = 0, "lrelu"  # test_lseg.py's argument defaults (official meaning)


# ------------------------------------------------------------------------------------------------ reading


class RefusedGlobal(pickle.UnpicklingError):
    """The file asked for a Python object outside what tensors and plain containers need."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _Name:
    """A class named only as a value (Lightning 1.4 keys callback states by their class): inert, not
    callable."""

    def __init__(self, module: str, name: str) -> None:
        self.qualname = f"{module}.{name}"

    def __repr__(self) -> str:
        return self.qualname

    def __hash__(self) -> int:
        return hash(self.qualname)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Name) and other.qualname == self.qualname


STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
DICT_LIKE = {  # read as a plain dict
    ("pytorch_lightning.utilities.parsing", "AttributeDict"),
    ("lightning_fabric.utilities.data", "AttributeDict"),
    ("lightning.fabric.utilities.data", "AttributeDict"),
}
NAMED_ONLY = ("pytorch_lightning.callbacks.", "lightning.pytorch.callbacks.")


def _rebuild_tensor(flat: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 on our flat storage tensors (requires_grad, hooks, metadata unused)."""
    return flat.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str, where: str) -> None:
        super().__init__(file)
        self.archive, self.root, self.where = archive, root, where
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in DICT_LIKE:
            return dict
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        if module.startswith(NAMED_ONLY):
            return _Name(module, name)
        raise RefusedGlobal(
            f"{self.where} asks for {module}.{name}; refused before anything was called: an official "
            f"lang-seg checkpoint may hold tensors and plain containers only (a file from elsewhere must "
            f"never run code)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise RefusedGlobal(f"{self.where}: an unknown persistent record {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise RefusedGlobal(f"{self.where}: a storage of unknown type {kind!r}")
        if key not in self.storages:
            data = bytearray(self.archive.read(f"{self.root}data/{key}"))
            flat = torch.frombuffer(data, dtype=kind.dtype) if data else torch.empty(0, dtype=kind.dtype)
            if flat.numel() != numel:
                raise MissingInputError(
                    f"{self.where}: storage {key} holds {flat.numel()} values, not {numel}"
                )
            self.storages[key] = flat
        return self.storages[key]


def restricted_load(path: Path) -> Any:
    """A torch zip checkpoint unpickled with only tensors and plain containers allowed."""
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise MissingInputError(f"{where} is not a torch zip checkpoint (legacy or unknown format)") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise MissingInputError(f"{where} is not a torch zip checkpoint (no single data.pkl)")
        root = pickles[0][: -len("data.pkl")]
        if f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() != b"little":
            raise MissingInputError(f"{where} was written big-endian; not supported")
        with archive.open(pickles[0]) as file:
            unpickler = _TensorUnpickler(file, archive, root, where)
            try:
                return unpickler.load()
            except RefusedGlobal:
                raise
            except (pickle.UnpicklingError, TypeError, AttributeError) as exc:
                raise RefusedGlobal(
                    f"{where} could not be read as tensors and plain containers: {exc}"
                ) from None


def read_checkpoint_file(path: str | Path) -> Any:
    """Any checkpoint, tensors and plain containers only: ``torch.load(weights_only=True)``, else (a file
    whose pickle names other globals, as lang-seg's do) the restricted unpickler; RefusedGlobal names what a
    file asked for that is neither."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - refused or unreadable: the restricted reader says which
        return restricted_load(path)


# ------------------------------------------------------------------------------------------------ detection


def is_official_lseg(blob: object) -> bool:
    """A lang-seg Lightning checkpoint: ``net.scratch.*`` weights and no config of ours."""
    if not isinstance(blob, Mapping):
        return False
    state = blob.get("state_dict")
    hparams = blob.get("hyper_parameters")
    ours = isinstance(hparams, Mapping) and isinstance(hparams.get("config"), Mapping)
    return isinstance(state, Mapping) and any(str(k).startswith("net.scratch.") for k in state) and not ours


# ------------------------------------------------------------------------------------------------ mapping

UNUSED = object()  # a known key that our model does not use
_RULES: list[tuple[re.Pattern, Any]] = [
    (re.compile(r"pretrained\.model\.(norm|head)\..*"), UNUSED),  # timm's final norm and classifier
    (re.compile(r"pretrained\.model\.(.+)"), r"dpt.vit.\1"),
    (re.compile(r"pretrained\.act_postprocess([1-4])\.0\.project\.0\.(weight|bias)"), "readout"),
    (re.compile(r"pretrained\.act_postprocess([1-4])\.(\d+)\.(weight|bias)"), "reassemble"),
    (re.compile(r"pretrained\.layer1\.0\.(.+)"), r"dpt.resnet.conv1.\1"),
    (re.compile(r"pretrained\.layer1\.1\.(.+)"), r"dpt.resnet.bn1.\1"),
    (re.compile(r"pretrained\.layer1\.4\.(.+)"), r"dpt.resnet.layer1.\1"),
    (re.compile(r"pretrained\.layer([234])\.(.+)"), r"dpt.resnet.layer\1.\2"),
    (re.compile(r"scratch\.layer([1-4])_rn\.weight"), "layer_rn"),
    (re.compile(r"scratch\.refinenet4\.resConfUnit1\..*"), UNUSED),  # never called (one input)
    (re.compile(r"scratch\.refinenet([1-4])\.(resConfUnit1|resConfUnit2|out_conv)\.(.+)"), "fusion"),
    (re.compile(r"scratch\.head1\.(weight|bias)"), r"dpt.head.\1"),
    (re.compile(r"scratch\.head_block\.depthwise\.depthwise\.(weight|bias)"), r"spatial.conv.\1"),
]
_FUSION_PARTS = {"resConfUnit1": "lateral", "resConfUnit2": "refine", "out_conv": "out_conv"}
_OPENAI_UNUSED = ("visual.", "input_resolution", "context_length", "vocab_size")  # not in our text-only CLIP
_ZERO_BIAS = re.compile(r"dpt\.fusion\.\d\.(lateral|refine)\.conv[12]\.bias")


def _net_key(key: str, resample_counts: Mapping[int, int]) -> Any:
    """Our ``net.`` key (without ``net.``) for an official key after ``net.``; UNUSED; or None (unknown)."""
    for pattern, target in _RULES:
        m = pattern.fullmatch(key)
        if not m:
            continue
        if target is UNUSED:
            return UNUSED
        if target == "readout":
            return f"dpt.readout.{int(m[1]) - 1}.project.0.{m[2]}"
        if target == "reassemble":
            level, index = int(m[1]), int(m[2])
            if index == 3:
                return f"dpt.reassemble.{level - 1}.0.{m[3]}"
            if index < 3:
                return None
            if resample_counts.get(level, 0) > 1:  # several resample convs: a Sequential of ours
                return f"dpt.reassemble.{level - 1}.1.{index - 4}.{m[3]}"
            return f"dpt.reassemble.{level - 1}.1.{m[3]}" if index == 4 else None
        if target == "layer_rn":
            return f"dpt.layer_rn.{int(m[1]) - 1}.weight"
        if target == "fusion":
            return f"dpt.fusion.{int(m[1]) - 1}.{_FUSION_PARTS[m[2]]}.{m[3]}"
        return m.expand(target)
    return None


def _listing(keys: list[str], limit: int = 40) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def convert_state(
    official: Mapping[str, torch.Tensor], expected_net: Mapping[str, torch.Tensor], where: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(our LSegNet state, our CLIP text-tower state in open_clip names) from an official state dict;
    ``expected_net``: our LSegNet's state dict (any device, meta included), for the key set and shapes. An
    error lists every unknown official key and every key of ours the file leaves unfilled."""
    resample_counts: dict[int, int] = collections.Counter()
    for key in official:
        m = re.fullmatch(r"net\.pretrained\.act_postprocess([1-4])\.(\d+)\.weight", key)
        if m and int(m[2]) >= 4:
            resample_counts[int(m[1])] += 1
    net: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    clip: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in official.items():
        if not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        if key.startswith("net.clip_pretrained."):
            name = key[len("net.clip_pretrained.") :]
            if not name.startswith(_OPENAI_UNUSED):
                clip[name] = value.float() if value.is_floating_point() else value
            continue
        ours = _net_key(key[len("net.") :], resample_counts) if key.startswith("net.") else None
        if ours is None:
            unknown.append(key)
        elif ours is not UNUSED:
            net[ours], origin[ours] = value, key
    for key, ref in expected_net.items():  # official convs have no bias (bn=True): zeros, exactly the same
        if _ZERO_BIAS.fullmatch(key) and key not in net:
            net[key] = torch.zeros(ref.shape, dtype=torch.float32)
    if "log_scale" in expected_net:
        net["log_scale"] = torch.tensor(math.log(OFFICIAL_LOGIT_SCALE))
    missing = [f"net.{k}" for k in expected_net if k not in net]
    extra = [origin[k] for k in net if k not in expected_net]  # a place in the official layout, none in ours
    problems = []
    if unknown or extra:
        problems.append(f"unknown keys (no place in our LSeg): {_listing(unknown + extra)}")
    if missing:
        problems.append(f"missing keys (ours that the file does not fill): {_listing(missing)}")
    wrong = [
        f"{k} {tuple(v.shape)} vs ours {tuple(expected_net[k].shape)}"
        for k, v in net.items()
        if k in expected_net and tuple(v.shape) != tuple(expected_net[k].shape)
    ]
    if wrong:
        problems.append(f"shapes that differ: {_listing(wrong, 10)}")
    if problems:
        raise ConfigError(f"{where} does not fit our LSeg: " + "; ".join(problems))
    return net, clip


# ------------------------------------------------------------------------------------------------ inference


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m[1]) for k in state if (m := re.fullmatch(pattern, k))}
    return max(found) + 1 if found else 0


def infer_backbone(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> str:
    """Our BACKBONES name of the file's image encoder, from its keys and shapes."""
    if "net.pretrained.model.cls_token" in state:
        proj = state["net.pretrained.model.patch_embed.proj.weight"]
        found = (
            int(proj.shape[0]),
            int(proj.shape[-1]),
            _count(state, r"net\.pretrained\.model\.blocks\.(\d+)\..*"),
        )
        table = dict(TIMM_VITS)
        for name, spec in BACKBONES.items():
            if "vit_kwargs" in spec:
                kw = spec["vit_kwargs"]
                table[name] = (kw["embed_dim"], kw["patch_size"], kw["depth"])
        for name, dims in table.items():
            if dims == found:
                return name
        raise ConfigError(
            f"{where}: a ViT of width {found[0]}, patch {found[1]}, {found[2]} blocks is none of "
            f"ours ({', '.join(table)})"
        )
    if "net.pretrained.layer1.0.weight" in state:
        block = (
            "bottleneck" if any(k.startswith("net.pretrained.layer1.4.0.conv3.") for k in state) else "basic"
        )
        layers = (
            _count(state, r"net\.pretrained\.layer1\.4\.(\d+)\..*"),
            *(_count(state, rf"net\.pretrained\.layer{i}\.(\d+)\..*") for i in (2, 3, 4)),
        )
        table = dict(TIMM_RESNETS)
        for name, spec in BACKBONES.items():
            if "resnet_kwargs" in spec:
                table[name] = (spec["resnet_kwargs"]["block"], tuple(spec["resnet_kwargs"]["layers"]))
        for name, arch in table.items():
            if arch == (block, layers):
                return name
        raise ConfigError(
            f"{where}: a ResNet of {block} blocks {layers} is none of ours ({', '.join(table)})"
        )
    raise ConfigError(
        f"{where}: neither a ViT (net.pretrained.model.*) nor a ResNet (net.pretrained.layer1.*)"
    )


def infer_clip(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> str:
    """The open_clip model name of the file's CLIP (net.clip_pretrained.*), from its text tower's shapes."""
    import open_clip

    prefix = "net.clip_pretrained."
    if f"{prefix}ln_final.weight" not in state:
        raise ConfigError(f"{where} holds no CLIP text encoder (net.clip_pretrained.*)")
    found = (
        int(state[f"{prefix}ln_final.weight"].shape[0]),
        _count(state, r"net\.clip_pretrained\.transformer\.resblocks\.(\d+)\..*"),
        int(state[f"{prefix}positional_embedding"].shape[0]),
        int(state[f"{prefix}text_projection"].shape[1]),
    )
    for name in CLIP_CANDIDATES:
        cfg = open_clip.get_model_config(name)
        text = cfg["text_cfg"]
        if (text["width"], text["layers"], text["context_length"], cfg["embed_dim"]) == found:
            return name
    raise ConfigError(
        f"{where}: a CLIP text tower of width {found[0]}, {found[1]} layers, context {found[2]}, "
        f"embedding {found[3]} is none of {', '.join(CLIP_CANDIDATES)}"
    )


def _hparam(blob: Mapping, name: str) -> Any:
    hparams = blob.get("hyper_parameters")
    value = hparams.get(name) if isinstance(hparams, Mapping) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def spatial_settings(blob: Mapping, overrides: Mapping[str, Any], where: str = "checkpoint") -> dict:
    """model.lseg.{spatial_reg, block_depth, activation} for the file (module docstring: where each comes
    from)."""
    state = blob["state_dict"]
    has_block = "net.scratch.head_block.depthwise.depthwise.weight" in state
    kind = overrides.get("spatial_reg")
    arch = _hparam(blob, "arch_option")
    if kind is None and arch in ARCH_OPTIONS and (arch != 0) == has_block:
        kind = ARCH_OPTIONS[arch]
    if kind is None:
        if has_block:
            raise ConfigError(
                f"{where} has a spatial-regularization block (net.scratch.head_block) whose kind its keys "
                f"cannot tell: pass model.lseg.spatial_reg=bottleneck (official --arch_option 1) or "
                f"depthwise (--arch_option 2), and model.lseg.block_depth / model.lseg.activation as it was "
                f"trained (defaults: the official test scripts' block_depth 0 = ours 1, activation lrelu)"
            )
        kind = "none"
    if (kind != "none") != has_block:
        raise ConfigError(
            f"{where}: model.lseg.spatial_reg={kind} does not fit a file "
            f"{'with' if has_block else 'without'} a head_block"
        )
    depth = overrides.get("block_depth")
    if depth is None:
        official = _hparam(blob, "block_depth")
        depth = max(int(official if official is not None else DEFAULT_BLOCK_DEPTH), 1)
    activation = overrides.get("activation") or _hparam(blob, "activation") or DEFAULT_ACTIVATION
    return {"spatial_reg": kind, "block_depth": int(depth), "activation": str(activation)}


def official_lseg(
    blob: Mapping, overrides: Mapping[str, Any] | None = None, where: str = "checkpoint"
) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) of our LSeg objective for an official checkpoint: build
    ``LSeg(config, load_pretrained=False)`` and ``load_state_dict(state, strict=True)``. ``overrides``:
    model.lseg values the keys cannot tell (spatial_reg, block_depth, activation)."""
    from lseg_pacl.models.lseg import LSegNet

    overrides = dict(overrides or {})
    state = blob["state_dict"]
    backbone = infer_backbone(state, where)
    clip_name = infer_clip(state, where)
    features = int(state["net.scratch.layer1_rn.weight"].shape[0])
    text_dim = int(state["net.clip_pretrained.text_projection"].shape[1])
    spatial = spatial_settings(blob, overrides, where)
    resnet = BACKBONES[backbone].get("kind") == "resnet"
    lseg = {
        "backbone": backbone,
        "backbone_pretrained": None,
        "features": features,
        **spatial,
        "logit_scale": OFFICIAL_LOGIT_SCALE,
        "learn_logit_scale": False,
        "templates": "raw",
        # test_lseg_zs.py:267-270: ImageNet statistics for clip_resnet101, else 0.5 / 0.5
        "input_mean": IMAGENET_MEAN if resnet else [0.5, 0.5, 0.5],
        "input_std": IMAGENET_STD if resnet else [0.5, 0.5, 0.5],
    }
    config = {
        "model": {
            "objective": "lseg",
            "clip": {"name": clip_name, "pretrained": None, "quick_gelu": True},  # OpenAI's weights
            "lseg": lseg,
        },
        "eval": {"templates": "raw"},  # the official code embeds labels raw
        "data": {"val": {"datasets": ["ade20k"]}},  # configs name a benchmark: LSeg's own
    }
    with torch.device("meta"):
        expected = LSegNet(
            backbone,
            None,
            text_dim,
            features,
            spatial["spatial_reg"],
            spatial["block_depth"],
            spatial["activation"],
        ).state_dict()
    net, clip = convert_state(state, expected, where)
    ours = {f"net.{k}": v for k, v in net.items()}
    ours.update({f"clip.model.{k}": v for k, v in clip.items()})
    return config, ours


# ------------------------------------------------------------------------------------------------ init_from


def initial_weights(
    path: str | Path, net: nn.Module, quick_gelu: bool, key: str = "model.lseg.init_from"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LSegNet state, CLIP text-tower state or {}) to start a run from: an official lang-seg checkpoint
    (mapped) or one of ours (its ``net.*`` and ``clip.model.*`` weights)."""
    file = Path(path).expanduser()
    where = f"{file} ({key})"
    blob = read_checkpoint_file(file)
    if is_official_lseg(blob):
        if not quick_gelu:
            raise ConfigError(
                f"{where} carries OpenAI's CLIP, which uses QuickGELU: set "
                f"model.clip.quick_gelu=true (model.clip.name ViT-B-32)"
            )
        return convert_state(blob["state_dict"], net.state_dict(), where)
    state = blob.get("state_dict") if isinstance(blob, Mapping) else None
    if not isinstance(state, Mapping) or not any(k.startswith("net.") for k in state):
        raise MissingInputError(
            f"{where} is neither an official lang-seg checkpoint nor one of our LSeg "
            f"checkpoints (no net.* weights)"
        )
    net_state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    clip_state = {
        k[len("clip.model.") :]: v
        for k, v in state.items()
        if k.startswith("clip.model.") and not k.startswith("clip.model.visual.")
    }
    return net_state, clip_state


def load_initial_weights(net: nn.Module, clip_model: nn.Module, path: str | Path, quick_gelu: bool) -> None:
    """``initial_weights`` into a freshly built LSegNet (strictly) and CLIP text tower (when the file carries
    one; strictly on the text side)."""
    where = f"{Path(path).expanduser()} (model.lseg.init_from)"
    net_state, clip_state = initial_weights(path, net, quick_gelu)
    try:
        net.load_state_dict(net_state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{where} does not fit model.lseg: {_first_lines(exc)}") from None
    if clip_state:
        try:
            missing, unexpected = clip_model.load_state_dict(clip_state, strict=False)
        except RuntimeError as exc:
            raise ConfigError(
                f"{where}: its CLIP text encoder does not fit model.clip.name: {_first_lines(exc)}"
            ) from None
        missing = [k for k in missing if not k.startswith("visual.")]
        if missing or unexpected:
            raise ConfigError(
                f"{where}: its CLIP text encoder does not fit model.clip.name: missing "
                f"{_listing(list(missing), 8)}; unexpected {_listing(list(unexpected), 8)}"
            )


def _first_lines(exc: Exception, n: int = 4) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines()[:n])
