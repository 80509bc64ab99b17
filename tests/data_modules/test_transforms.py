import numpy as np
import torch

from data_modules.transforms import seeded, segmentation_train_transform

MEAN = STD = (0.5, 0.5, 0.5)


def test_lseg_recipe_crops_squares_and_pads_masks_with_ignore():
    t = segmentation_train_transform(crop=32, base_size=20, mean=MEAN, std=STD, scale=(0.5, 1.0))
    image = np.full((30, 40, 3), 200, np.uint8)
    mask = np.ones((30, 40), np.uint8)
    for _ in range(5):
        out = t(image=image, mask=mask)
        assert out["image"].shape == (3, 32, 32) and out["mask"].shape == (32, 32)
        values = set(np.unique(np.asarray(out["mask"])).tolist())
        assert values == {
            1,
            255,
        }  # long side <= 20 < 32: always padded, and the padding is ignore, not class 0


def test_lseg_recipe_scales_within_its_range():
    t = segmentation_train_transform(crop=16, base_size=100, mean=MEAN, std=STD, scale=(0.5, 2.0))
    mask = np.zeros((50, 100), np.uint8)
    mask[:, 50:] = 1  # the right half
    fractions = set()
    for seed in range(20):
        t.set_random_seed(seed)
        out = np.asarray(t(image=np.zeros((50, 100, 3), np.uint8), mask=mask)["mask"])
        assert 255 not in out  # long side >= 50 and short side >= 25 >= 16: no padding needed
        fractions.add(round(float((out == 1).mean()), 2))
    assert len(fractions) > 2  # different scales and crops


def test_seeded_transforms_repeat():
    t = segmentation_train_transform(crop=16, base_size=40, mean=MEAN, std=STD)
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), np.uint8)
    t.set_random_seed(3)
    a = t(image=image, mask=mask)["image"]
    t.set_random_seed(3)
    assert (t(image=image, mask=mask)["image"] == a).all()
    assert seeded(t, image=image, mask=mask)["image"].shape == (3, 16, 16)


def test_centre_crop_is_cliptrase_s_protocol():
    """CLIPtrase clip_self_correlation.py:38-56: Resize(n, BICUBIC) + CenterCrop(n) on the PIL image, then
    ToTensor + Normalize; the ground truth Resize(n, NEAREST) + CenterCrop(n)."""
    from PIL import Image
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    from data_modules.transforms import centre_crop_transform

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, (45, 70)).astype(np.uint8)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    out = centre_crop_transform(32, mean, std)(image=image, mask=mask)
    resize = Compose([Resize(32, interpolation=InterpolationMode.BICUBIC), CenterCrop(32)])
    official = resize(Image.fromarray(image))
    expected = Compose([ToTensor(), Normalize(mean, std)])(official)
    gt = Compose([Resize(32, interpolation=InterpolationMode.NEAREST), CenterCrop(32)])(Image.fromarray(mask))
    assert torch.allclose(out["image"], expected, atol=1e-6) and out["image"].shape == (3, 32, 32)
    assert np.array_equal(out["mask"], np.array(gt))
