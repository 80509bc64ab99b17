"""Albumentations pipelines for caption training and segmentation evaluation.

Every random transform is re-seeded per sample (``seeded``): a Compose copied into DataLoader workers otherwise
repeats the same augmentations in every worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2


def caption_train_transform(size: int, mean: Sequence[float], std: Sequence[float], scale_min: float = 0.5,
                            hflip: bool = True) -> A.Compose:
    """Random resized crop (+ flip) to a square of ``size``, normalised with the encoder's statistics."""
    steps: list = [A.RandomResizedCrop(size=(size, size), scale=(scale_min, 1.0))]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    return A.Compose(steps)


def segmentation_eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Short side to ``size`` and a centre square crop; the mask follows with nearest-neighbour resizing."""
    return A.Compose([
        A.SmallestMaxSize(max_size=size),
        A.CenterCrop(height=size, width=size),
        A.Normalize(mean=tuple(mean), std=tuple(std)),
        ToTensorV2(),
    ])


def sample_seed() -> int:
    """A seed for one sample, drawn from torch's RNG (seeded per run, per worker and per epoch by Lightning)."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


def seeded(transform: A.Compose, **targets: np.ndarray) -> dict:
    transform.set_random_seed(sample_seed())
    return transform(**targets)
