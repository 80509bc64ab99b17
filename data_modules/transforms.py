"""Albumentations pipelines for caption training and segmentation evaluation.

Every random transform is re-seeded per sample (``seeded``): a Compose copied into DataLoader workers
otherwise repeats the same augmentations in every worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from data_modules.benchmarks import IGNORE_INDEX


class CaptionTransform:
    """The caption training pipeline (called like an albumentations Compose), which also says how much smaller
    a JPEG may be decoded without losing detail in its output (``max_decode_reduction``)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], scale_min: float = 0.5,
                 hflip: bool = True, reduced_decode: bool = True) -> None:
        self.size, self.scale_min, self.reduced_decode = size, scale_min, reduced_decode
        steps: list = [
            A.Resize(height=size, width=size)
            if scale_min >= 1.0
            else A.RandomResizedCrop(size=(size, size), scale=(scale_min, 1.0))
        ]
        if hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
        self.compose = A.Compose(steps)

    def __call__(self, **targets: np.ndarray) -> dict:
        return self.compose(**targets)

    def set_random_seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def max_decode_reduction(self, width: int, height: int) -> float:
        """The smallest crop this pipeline can take, over the output side: shrinking the decoded image by up
        to this factor never makes a crop smaller than the output (no detail the output could show is
        lost)."""
        if not self.reduced_decode:
            return 1.0
        if self.scale_min >= 1.0:
            smallest = min(width, height)  # the whole image, each side resized to ``size``
        else:  # a crop of area scale_min * W * H at aspect ratio 3:4 .. 4:3: its short side at least this
            smallest = min(math.sqrt(0.75 * self.scale_min * width * height), width, height)
        return max(1.0, smallest / self.size)


def caption_train_transform(size: int, mean: Sequence[float], std: Sequence[float], scale_min: float = 0.5,
                            hflip: bool = True, reduced_decode: bool = True) -> CaptionTransform:
    """Random resized crop (+ flip) to a square of ``size``, normalised with the encoder's statistics.

    ``scale_min`` >= 1 means no cropping: the whole image resized to the square (what a crop of scale 1 gives
    for aspect ratios within 3:4..4:3), a deterministic transform when ``hflip`` is off too."""
    return CaptionTransform(size, mean, std, scale_min, hflip, reduced_decode)


def caption_transform_is_deterministic(scale_min: float, hflip: bool) -> bool:
    """Whether ``caption_train_transform`` gives the same tensor for an image every epoch (features
    cacheable)."""
    return scale_min >= 1.0 and not hflip


def segmentation_train_transform(
    crop: int,
    base_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> A.Compose:
    """LSeg's ADE20K recipe: long side drawn from [scale] x base_size, pad to ``crop`` (image 0, mask
    ``ignore_index``, never a real class: the benchmark's own, 65535 for the 16-bit ones), random ``crop``
    square, flip."""
    sizes = list(range(round(scale[0] * base_size), round(scale[1] * base_size) + 1))
    steps: list = [
        A.LongestMaxSize(max_size=sizes),
        A.PadIfNeeded(
            min_height=crop,
            min_width=crop,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        ),
        A.RandomCrop(height=crop, width=crop),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    return A.Compose(steps)


def segmentation_eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Short side to ``size`` and a centre square crop; the mask follows with nearest-neighbour resizing."""
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=size),
            A.CenterCrop(height=size, width=size),
            A.Normalize(mean=tuple(mean), std=tuple(std)),
            ToTensorV2(),
        ]
    )


def normalize_transform(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalisation only: evaluation protocols resize inside the inference code and score at the original
    size."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()])


def sample_seed(generator: torch.Generator | None = None) -> int:
    """A seed for one sample: from its own generator (training: a function of seed, epoch and index), else
    from torch's RNG (seeded per run, per worker and per epoch by Lightning)."""
    return int(torch.randint(0, 2**31 - 1, (), generator=generator).item())


def seeded(transform: A.Compose, generator: torch.Generator | None = None, **targets: np.ndarray) -> dict:
    transform.set_random_seed(sample_seed(generator))
    return transform(**targets)


def uint8_transform():
    """The 8-bit image as a [3, H, W] uint8 tensor, the mask untouched: protocols that resize before
    normalising (OpenCV on 8 bits, as MMSegmentation) normalise inside the inference code."""

    def to_tensor(image: np.ndarray, mask: np.ndarray) -> dict:
        return {"image": torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1), "mask": mask}

    return to_tensor


def centre_crop_transform(size: int, mean: Sequence[float], std: Sequence[float]):
    """CLIPtrase's protocol (clip_self_correlation.py:38-56): the image resized bicubically (PIL,
    torchvision's Resize(size): short side ``size``, long side truncated) and centre-cropped to size x size;
    the mask resized nearest-neighbour and cropped alike, so the metric is taken on the crop."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def crop(image: np.ndarray, mask: np.ndarray) -> dict:
        img = TF.center_crop(TF.resize(Image.fromarray(image), size, InterpolationMode.BICUBIC), size)
        kind = np.uint16 if mask.dtype == np.uint16 else np.uint8
        gt = TF.resize(Image.fromarray(mask.astype(kind)), size, InterpolationMode.NEAREST)
        gt = TF.center_crop(gt, size)
        rgb = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255
        return {"image": (rgb - mean_t) / std_t, "mask": np.array(gt)}

    return crop
