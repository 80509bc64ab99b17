"""The app's models: which ones can be chosen, loaded lazily into a small LRU cache, one request at a time
per model, and one image segmented exactly as ``lseg-pacl predict`` segments it (same loading, protocol,
precision and argmax, so the label maps agree pixel for pixel)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lseg_pacl.commands.predict import load_model
from lseg_pacl.config.loading import available_experiments
from lseg_pacl.errors import MissingInputError

log = logging.getLogger(__name__)
TRAINING_FREE = "baseline_"  # experiments whose model is built from CLIP alone: nothing to train
CHECKPOINT = "last.ckpt"


@dataclass(frozen=True)
class Choice:
    """One entry of the model dropdown: ``value`` is what ``predict``'s ``ckpt=`` takes."""

    label: str
    value: str


def checkpoint_label(path: Path, runs: Path) -> str:
    """``experiment/run`` or ``experiment/run/stage`` for ``runs/<...>/checkpoints/last.ckpt``."""
    try:
        parts = path.parent.parent.relative_to(runs).parts
    except ValueError:
        parts = path.parent.parent.parts[-3:]
    return "/".join(parts) or str(path)


def find_choices(runs: Path, ckpt: str | None = None) -> list[Choice]:
    """``ckpt`` (from the command line) first, then every ``runs/**/checkpoints/last.ckpt`` (newest first),
    then the training-free rows."""
    choices: list[Choice] = []
    seen: set[Path] = set()
    if ckpt:
        path = Path(ckpt).expanduser()
        if path.is_file():
            choices.append(Choice(f"{ckpt} (ckpt=)", str(path)))
            seen.add(path.resolve())
        elif ckpt in available_experiments():
            choices.append(Choice(f"{ckpt} (ckpt=)", ckpt))
        else:
            raise MissingInputError(f"ckpt={ckpt} is neither a checkpoint file nor an experiment")
    found = runs.glob(f"**/checkpoints/{CHECKPOINT}") if runs.is_dir() else []
    for path in sorted(found, key=lambda p: (-p.stat().st_mtime, str(p))):
        if path.resolve() not in seen:
            seen.add(path.resolve())
            choices.append(Choice(checkpoint_label(path, runs), str(path)))
    for name in available_experiments():
        if name.startswith(TRAINING_FREE) and name != ckpt:
            choices.append(Choice(f"{name} (training-free)", name))
    return choices


@dataclass
class Segmenter:
    """A loaded model with its protocol: ``segment(rgb, names)`` gives the label ids predict would write."""

    module: object
    cfg: object
    device: object
    protocol: object
    precision: str
    _texts: OrderedDict = field(default_factory=OrderedDict)

    @classmethod
    def load(cls, ckpt: str, overrides: list[str]) -> Segmenter:
        from lseg_pacl.evaluation.settings import device_for, precision_for, protocol_for

        module, cfg = load_model(ckpt, list(overrides))
        device = device_for(cfg)
        module = module.to(device).eval()
        protocol = protocol_for(cfg.eval, module.patch_size, cfg.data.val.image_size)
        return cls(module, cfg, device, protocol, precision_for(cfg, cfg.eval, device))

    def text(self, names: tuple[str, ...]):
        """The labels' text embeddings (the last 8 label lists are kept: the templates make them costly)."""
        from lseg_pacl.models.prompts import templates

        if names not in self._texts:
            self._texts[names] = self.module.clip.class_embeddings(
                names, templates(self.cfg.eval.templates)).to(self.device)
            while len(self._texts) > 8:
                self._texts.popitem(last=False)
        self._texts.move_to_end(names)
        return self._texts[names]

    def segment(self, rgb: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """[H, W] uint8 label ids (0: the first name) of an [H, W, 3] uint8 image, as predict gets them."""
        import torch

        from lseg_pacl.evaluation.inference import infer
        from lseg_pacl.evaluation.settings import autocast_for

        module, device = self.module, self.device
        text = self.text(names)
        raw = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].to(device)
        with torch.no_grad(), autocast_for(self.precision, device):
            fn = lambda im, size: module.logits(im, text, size)  # noqa: E731
            label_map = infer(fn, raw, self.protocol, (module.input_mean, module.input_std)).argmax(1)[0]
        return label_map.cpu().numpy().astype(np.uint8)


class Models:
    """Models loaded on first use and kept in an LRU of ``size``; a model serves one request at a time (its
    own lock), different models may run side by side."""

    def __init__(self, overrides: list[str], size: int = 3, loader=Segmenter.load):
        self.overrides = list(overrides)
        self.size = max(1, size)
        self._loader = loader
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._loaded: OrderedDict[str, Segmenter] = OrderedDict()

    def loaded(self) -> list[str]:
        with self._guard:
            return list(self._loaded)

    @contextmanager
    def use(self, value: str) -> Iterator[Segmenter]:
        with self._guard:
            lock = self._locks.setdefault(value, threading.Lock())
        with lock:
            with self._guard:
                model = self._loaded.get(value)
                if model is not None:
                    self._loaded.move_to_end(value)
            if model is None:
                log.info("loading %s", value)
                model = self._loader(value, self.overrides)  # raises the project's UserErrors as they are
                with self._guard:
                    self._loaded[value] = model
                    while len(self._loaded) > self.size:
                        dropped, _ = self._loaded.popitem(last=False)
                        log.info("unloaded %s (keeping the %d most recent models)", dropped, self.size)
                        self._release_memory()
            yield model

    @staticmethod
    def _release_memory() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
