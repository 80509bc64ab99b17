"""An export (``lseg-pacl export``) run by ONNX Runtime on the CPU, with what the protocol code needs:
normalisation, patch, label embeddings, ``embeddings`` and ``logits`` (the objective's logit rule, read from
metadata.json), and the eval protocol it was exported with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.evaluation.inference import Protocol
from lseg_pacl.export.deps import onnxruntime
from lseg_pacl.export.writer import FORMAT, FORMAT_VERSION, IMAGE_MODEL, METADATA


class OnnxSegmenter:
    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        ort = onnxruntime()
        self.folder = Path(folder).expanduser()
        meta_path = self.folder / METADATA
        if not meta_path.is_file():
            raise MissingInputError(f"{self.folder} holds no {METADATA}: not an export (lseg-pacl export "
                                    f"ckpt=... format=onnx out={self.folder})")
        self.metadata = meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            raise ConfigError(f"{meta_path} is not an export this version reads (format {meta.get('format')} "
                              f"version {meta.get('format_version')})")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads

        def session(name: str):
            path = self.folder / name
            if not path.is_file():
                raise MissingInputError(f"{path} is missing from the export")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.image_session = session(meta["input"].get("file", IMAGE_MODEL))
        head = meta["logits"].get("head")
        self.head_session = session(head) if head else None
        self.names: tuple[str, ...] = ()
        self.label_embeddings: torch.Tensor | None = None
        if meta.get("labels"):
            path = self.folder / meta["labels"]["file"]
            if not path.is_file():
                raise MissingInputError(f"{path} is missing from the export")
            self.names = tuple(meta["labels"]["names"])
            self.label_embeddings = torch.from_numpy(np.load(path).astype(np.float32))

    # ---- what predict reads off a model
    @property
    def input_mean(self) -> tuple[float, ...]:
        return tuple(self.metadata["input"]["mean"])

    @property
    def input_std(self) -> tuple[float, ...]:
        return tuple(self.metadata["input"]["std"])

    @property
    def patch_size(self) -> int:
        return int(self.metadata["input"]["patch"])

    def protocol(self, overrides: dict | None = None) -> Protocol:
        """The eval protocol of the export, with ``overrides`` ({field: value}) over it."""
        fields = {f.name for f in Protocol.__dataclass_fields__.values()} - {"patch"}
        unknown = sorted(set(overrides or {}) - fields)
        if unknown:
            raise ConfigError(f"backend=onnx takes protocol keys only ({', '.join(sorted(fields))}); "
                              f"not {', '.join(unknown)}")
        values = {**self.metadata["protocol"], **(overrides or {}), "patch": self.patch_size}
        try:
            return Protocol(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eval: {exc}") from None

    # ---- the model
    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit embeddings [N, D, gh, gw] of normalised images [N, 3, H, W] (sides multiples of the patch)."""
        x = images.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.image_session.run(["embeddings"], {"image": x})[0])

    def logits(self, images: torch.Tensor, class_embeddings: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        """The objective's logits [N, C, *size], by the export's logit rule."""
        rule = self.metadata["logits"]
        emb = self.embeddings(images)
        labels = F.normalize(class_embeddings.detach().float().cpu(), dim=-1)
        if self.head_session is not None:
            low = self.head_session.run(["logits"], {"embeddings": emb.numpy(),
                                                     "labels": labels.contiguous().numpy()})[0]
            low = torch.from_numpy(low)
        else:
            low = float(rule.get("scale", 1.0)) * torch.einsum("bdhw,cd->bchw", emb, labels)
        up = rule["upsample"]
        return F.interpolate(low, size=tuple(size), mode=up["mode"], align_corners=up["align_corners"])
