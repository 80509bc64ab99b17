"""Qualitative panels: image | ground truth | prediction, with a legend of the classes shown.

Numbers alone hide the failure modes that matter here (PACL's near-uniform patch softmax, background
swallowing objects, one class painted everywhere), so evaluation saves a few of these per run and logs the
same masks to W&B. Colours are deterministic per class id, so panels of different runs on one benchmark
compare by eye. Ignored pixels (255, also "no prediction") are black; no class colour is black, white or grey.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data_modules.benchmarks import IGNORE_INDEX

MIN_HEIGHT = 256  # smaller images are scaled up (nearest) to at least this height
MAX_LEGEND = 30  # classes listed in the legend; the rest are summarised as "+N more"
MAX_NAME = 40  # characters of a class name shown in the legend
CAPTIONS = ("image", "ground truth", "prediction")
_GOLDEN = 0.618033988749895
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_OUTLINE = (128, 128, 128)


def palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 colours, pairwise distinct and the same on every call.

    Hues step by the golden ratio (neighbouring ids get far-apart hues); saturation and brightness cycle so
    that large vocabularies (COCO-Stuff's 171) stay distinguishable. Saturation >= 0.6 and brightness >= 0.4
    keep every colour away from black (ignore), white (background) and grey (text, outlines).
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    colours = np.empty((num_classes, 3), dtype=np.uint8)
    taken: set[tuple[int, int, int]] = set()
    for k in range(num_classes):
        hue = (k * _GOLDEN) % 1.0
        saturation = (0.9, 0.6)[k % 2]
        value = (0.95, 0.75, 0.55)[(k // 2) % 3]
        while True:
            rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value))
            if rgb not in taken:
                break
            value -= 1 / 255  # a collision (only possible for very large vocabularies): nudge darker
            if value < 0.4:
                value, hue = 0.95, (hue + 1 / 1530) % 1.0
        taken.add(rgb)
        colours[k] = rgb
    return colours


def colourise(mask: np.ndarray, colours: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """[H, W] class ids (``ignore_index``: 255, or 65535 for the 16-bit benchmarks) -> [H, W, 3] uint8, ignore
    drawn black."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    colours = np.asarray(colours, dtype=np.uint8)
    ignore = mask == ignore_index
    ids = np.where(ignore, 0, mask).astype(np.int64)
    bad = (ids < 0) | (ids >= len(colours))
    if bad.any():
        raise ValueError(
            f"mask holds ids {sorted(np.unique(mask[bad]).tolist())[:10]} outside the palette of "
            f"{len(colours)} colours (and not the ignore index {ignore_index})"
        )
    out = colours[ids] if len(colours) else np.zeros((*mask.shape, 3), dtype=np.uint8)
    out[ignore] = 0
    return out


def legend_ids(target: np.ndarray, prediction: np.ndarray, ignore_index: int = IGNORE_INDEX) -> list[int]:
    """The class ids present in target or prediction (never the ignore index), most pixels first (ties:
    smaller id first).

    ``panel`` lists the first ``MAX_LEGEND`` of them, so a truncated legend keeps the classes that cover most.
    """
    ids = np.concatenate([np.asarray(target).ravel(), np.asarray(prediction).ravel()]).astype(np.int64)
    ids = ids[ids != ignore_index]
    if ids.size == 0:
        return []
    present, counts = np.unique(ids, return_counts=True)
    order = np.lexsort((present, -counts))
    return [int(i) for i in present[order]]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed size
        return ImageFont.load_default()


def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(math.ceil(right - left)), int(math.ceil(bottom - top))


def _check_inputs(image: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (de-normalised), got {image.dtype}")
    for name, mask in (("target", target), ("prediction", prediction)):
        if np.asarray(mask).shape != image.shape[:2]:
            raise ValueError(f"{name} has shape {np.asarray(mask).shape}, the image {image.shape[:2]}")
    return image


def panel(
    image: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    ignore_index: int = IGNORE_INDEX,
) -> Image.Image:
    """One picture: image | ground truth | prediction with column captions, a legend of the classes present in
    target or prediction below (at most ``MAX_LEGEND``, then "+N more"; "ignore" when 255 occurs) and an
    optional title above. Images shorter than ``MIN_HEIGHT`` are scaled up by an integer factor (nearest)."""
    image = _check_inputs(image, target, prediction)
    target, prediction = np.asarray(target), np.asarray(prediction)
    colours = palette(len(class_names))
    columns = [image, *(colourise(m, colours, ignore_index) for m in (target, prediction))]
    ignore = bool((target == ignore_index).any() or (prediction == ignore_index).any())
    return compose(
        list(zip(CAPTIONS, columns, strict=True)),
        legend_ids(target, prediction, ignore_index),
        class_names,
        colours,
        title,
        ignore,
    )


def overlay(
    image: np.ndarray, labels: np.ndarray, class_names: Sequence[str], alpha: float = 0.5, title: str = ""
) -> Image.Image:
    """The image with its label map blended in (``alpha`` of the colour) and a legend of the labels
    present."""
    image = _check_inputs(image, labels, labels)
    colours = palette(len(class_names))
    blended = image.astype(np.float32) * (1 - alpha) + colourise(labels, colours).astype(np.float32) * alpha
    ignore = bool((np.asarray(labels) == IGNORE_INDEX).any())
    return compose(
        [("", blended.round().astype(np.uint8))],
        legend_ids(labels, labels),
        class_names,
        colours,
        title,
        ignore,
    )


def compose(
    columns: list[tuple[str, np.ndarray]],
    ids: list[int],
    class_names: Sequence[str],
    colours: np.ndarray,
    title: str = "",
    ignore: bool = False,
) -> Image.Image:
    """Pictures of one size side by side with captions, and a legend of ``ids`` (then "ignore") below."""
    height, width = columns[0][1].shape[:2]
    scale = max(1, math.ceil(MIN_HEIGHT / height))
    pictures = [np.repeat(np.repeat(c, scale, axis=0), scale, axis=1) if scale > 1 else c for _, c in columns]
    captions = [caption for caption, _ in columns]
    h, w = height * scale, width * scale

    font = _font(max(10, h // 40))
    _, line = _text_size(font, "Ag")
    pad = max(6, line // 2)
    swatch = line

    # Legend entries (colour, text), laid out in rows later once the panel width is known.
    entries: list[tuple[tuple[int, int, int] | None, str]] = []
    for i in ids[:MAX_LEGEND]:
        name = str(class_names[i])  # ids are < len(class_names): colourise checked
        name = name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."
        entries.append((tuple(int(c) for c in colours[i]), name))
    if ignore:
        entries.append(((0, 0, 0), "ignore"))
    if len(ids) > MAX_LEGEND:
        entries.append((None, f"+{len(ids) - MAX_LEGEND} more"))
    widths = [
        (swatch + pad // 2 if colour is not None else 0) + _text_size(font, text)[0]
        for colour, text in entries
    ]

    column_w = max(w, *(_text_size(font, c)[0] for c in captions))
    n = len(pictures)
    panel_w = n * column_w + (n + 1) * pad
    if title:
        panel_w = max(panel_w, _text_size(font, title)[0] + 2 * pad)
    if widths:
        panel_w = max(panel_w, max(widths) + 2 * pad)

    rows: list[list[int]] = []
    x = panel_w  # forces a new row for the first entry
    for k, entry_w in enumerate(widths):
        if x + entry_w > panel_w - pad:
            rows.append([])
            x = pad
        rows[-1].append(k)
        x += entry_w + 2 * pad

    title_h = line + pad if title else 0
    caption_h = line + pad // 2 if any(captions) else 0
    top = pad + title_h + caption_h  # where the pictures start
    legend_top = top + h + pad
    panel_h = legend_top + len(rows) * (line + pad // 2) + pad

    canvas = Image.new("RGB", (panel_w, panel_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill=_TEXT, font=font, anchor="lt")
    for k, (caption, picture) in enumerate(zip(captions, pictures, strict=True)):
        left = pad + k * (column_w + pad)
        if caption:
            caption_w = _text_size(font, caption)[0]
            draw.text(
                (left + (column_w - caption_w) // 2, pad + title_h),
                caption,
                fill=_TEXT,
                font=font,
                anchor="lt",
            )
        canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (left + (column_w - w) // 2, top))

    y = legend_top
    for row in rows:
        x = pad
        for k in row:
            colour, text = entries[k]
            if colour is not None:
                draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=colour, outline=_OUTLINE)
                x += swatch + pad // 2
            draw.text((x, y), text, fill=_TEXT, font=font, anchor="lt")
            x += _text_size(font, text)[0] + 2 * pad
        y += line + pad // 2
    return canvas


def save_panel(
    path: Path,
    image: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    class_names: Sequence[str],
    title: str = "",
    ignore_index: int = IGNORE_INDEX,
) -> Path:
    """Writes ``panel(...)`` as a PNG at ``path`` (parents created) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panel(image, target, prediction, class_names, title, ignore_index).save(path, format="PNG")
    return path


def wandb_masks(target: np.ndarray, prediction: np.ndarray, class_names: Sequence[str]) -> dict:
    """The ``masks=`` argument of ``wandb.Image``: ground truth and prediction as uint8 id maps with the same
    class labels, 255 labelled "ignore". W&B stores masks as 8-bit images, so at most 255 classes."""
    if len(class_names) > IGNORE_INDEX:
        raise ValueError(f"W&B masks hold ids 0..254 plus 255 (ignore); got {len(class_names)} classes")
    labels = {i: str(name) for i, name in enumerate(class_names)}
    labels[IGNORE_INDEX] = "ignore"
    masks = {}
    for key, mask in (("ground_truth", target), ("prediction", prediction)):
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"{key} must be [H, W], got shape {mask.shape}")
        bad = (mask != IGNORE_INDEX) & ((mask < 0) | (mask >= len(class_names)))
        if bad.any():
            raise ValueError(
                f"{key} holds ids {sorted(np.unique(mask[bad]).tolist())[:10]} outside the "
                f"{len(class_names)} classes"
            )
        masks[key] = {"mask_data": mask.astype(np.uint8), "class_labels": dict(labels)}
    return masks
