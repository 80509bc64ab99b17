"""The `paper` protocols end to end against the official inference code, transcribed in
tests/support/official.py: SCLIP (slide windows, correlative last block, synonyms, area and probability
thresholds) and NACLIP (whole image, neighbourhood last block, PAMR), on a non-square 8-bit image, in float64,
with random perturbed CLIP weights.

mmseg's data preprocessor normalises with CLIP's statistics rounded in 0..255 (122.771, ...); the
transcription takes them unrounded (x 255), so that logits must agree to 1e-10 and labels exactly.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import official
from support.models import perturbed_tiny_clip

from lseg_pacl.evaluation.inference import Protocol, infer
from lseg_pacl.evaluation.labels import LabelSet
from lseg_pacl.models.zeroshot import zero_shot_logits

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
MMSEG_MEAN = 255 * torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)  # [122.771, 116.746, 104.094]
MMSEG_STD = 255 * torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)  # [68.501, 66.632, 70.323]
CLASSES = [["sky", "wall", "bed"], ["cat"], ["person", "person in shirt"], ["dog"], ["bed"], ["tree", "wood"]]


@pytest.fixture(scope="module")
def clip():
    model = perturbed_tiny_clip()
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (45, 61, 3), generator=g, dtype=torch.uint8).numpy()
    texts = F.normalize(torch.randn(sum(map(len, CLASSES)), 128, generator=g, dtype=torch.float64), dim=-1)
    texts[4] = texts[2]  # "bed" of the background line and the class "bed": the same prompt
    return image, texts


def official_input(image, short):
    resized = official.mmseg_resize(image, short)
    return (torch.from_numpy(resized).permute(2, 0, 1)[None].double() - MMSEG_MEAN) / MMSEG_STD


def ours(clip, image, texts, labels, proto, variant):
    def fn(x, size):
        dense = clip.dense_features_many(x, [variant])[0]
        return labels.window_logits(zero_shot_logits(dense, clip.grid(*x.shape[-2:]), texts, size))

    raw = torch.from_numpy(image).permute(2, 0, 1)[None]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the 8-bit image normalised in float64, as the transcription
    try:
        with torch.no_grad():
            return infer(fn, raw, proto, (MEAN, STD))
    finally:
        torch.set_default_dtype(default)


def agree(ours_logits, official_logits, ours_pred, official_pred):
    assert ours_logits.dtype == torch.float64
    assert torch.allclose(ours_logits, official_logits, atol=1e-10, rtol=0)
    assert torch.equal(ours_pred[0], official_pred)


def test_sclip_paper_protocol_equals_the_official_code(clip, inputs):
    """SCLIP cfg_voc21.py: logit 65, prob_thd 0.1, area_thd 0.1; slide 224/112 scaled to this tiny model's
    patch 8 (crop 32, stride 16) on a short side of 40 (clip_segmentor.py:80-170)."""
    image, texts = inputs
    query_idx = [c for c, names in enumerate(CLASSES) for _ in names]
    with torch.no_grad():
        img = official_input(image, 40)
        logits = official.forward_slide(clip.model, img, texts, "csa", stride=16, crop=32)
        logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear")
    expected = official.postprocess(logits[0].clone(), query_idx, 65, 0.1, 0.1)
    labels = LabelSet.of(CLASSES, background_index=0, rule="softmax", scale=65, threshold=0.1, area=0.1)
    proto = Protocol(mode="slide", short_side=40, crop=32, stride=16, patch=8, remainder="drop",
                     resize_backend="cv2")
    got = ours(clip, image, texts, labels, proto, "sclip")
    agree(got, logits, labels.predict(got), expected)
    assert not (expected == 4).any()  # the class 'bed' never wins against the background line holding it


def test_naclip_paper_protocol_equals_the_official_code(clip, inputs):
    """NACLIP cfg_voc21.py: whole image (slide_crop=0), prob_thd 0.1, PAMR 10 x (8, 16) guided by the resized
    input (naclip.py:110-153); the whole image's sides do not divide by the patch (54 = 6 x 8 + 6)."""
    image, texts = inputs
    query_idx = [c for c, names in enumerate(CLASSES) for _ in names]
    with torch.no_grad():
        img = official_input(image, 40)
        assert img.shape[-1] % 8
        logits = official.forward_feature(clip.model, img, texts, "naclip")
        logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
        guide = F.interpolate(img, size=image.shape[:2], mode="bilinear", align_corners=False)
        logits = official.pamr(guide, logits, 10, (8, 16))
    expected = official.postprocess(logits[0].clone(), query_idx, 40, 0.1)
    labels = LabelSet.of(CLASSES, background_index=0, rule="softmax", scale=40, threshold=0.1)
    proto = Protocol(mode="whole", short_side=40, patch=8, remainder="drop", resize_backend="cv2",
                     pamr_iterations=10, pamr_dilations=(8, 16))
    got = ours(clip, image, texts, labels, proto, "naclip")
    agree(got, logits, labels.predict(got), expected)
    assert np.unique(expected.numpy()).size > 2  # a non-trivial map
