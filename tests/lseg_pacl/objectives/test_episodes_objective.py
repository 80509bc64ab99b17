"""2-way episodes in the objectives: each image scored against its own ["others", class] pair, LSeg's
zero-shot training step (lang-seg lsegmentation_module_zs.py:122-127, 338-343) and the episode validation
scores."""

import numpy as np
import torch

from data_modules.synthetic import CLASS_NAMES
from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.objectives.clip_contrastive import ClipContrastive
from lseg_pacl.objectives.lseg import LSeg

FOLD0 = (0, 5)  # the synthetic world's fold 0 (data_modules/episodes/folds.py)


def lseg(*over: str) -> LSeg:
    cfg = load_config("lseg_zs_demo_episodes", ["model.clip.pretrained=null", *over])
    return LSeg(to_plain(cfg), train_classes=CLASS_NAMES, episodes=[("synthetic", CLASS_NAMES, FOLD0)])


def per_image(module, images, class_ids, texts, size):
    return torch.cat(
        [module.logits(images[i : i + 1], texts[[0, 1 + int(c)]], size) for i, c in enumerate(class_ids)]
    )


def test_lseg_scores_each_image_against_its_own_pair_in_one_forward():
    torch.manual_seed(0)
    module = lseg("model.lseg.spatial_reg=bottleneck", "model.lseg.block_depth=2").eval()
    images, class_ids = torch.randn(4, 3, 64, 96), torch.tensor([3, 0, 3, 7])
    texts = module.episode_texts(CLASS_NAMES)
    assert texts.shape[0] == 1 + len(CLASS_NAMES)
    with torch.no_grad():
        together = module.episode_logits(images, class_ids, texts, (64, 96))
        alone = per_image(module, images, class_ids, texts, (64, 96))
    assert together.shape == (4, 2, 64, 96)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_any_objective_scores_episodes_class_by_class():
    torch.manual_seed(0)
    cfg = load_config("demo_clip", ["model.clip.pretrained=null"])
    module = ClipContrastive(to_plain(cfg)).eval()
    images, class_ids = torch.randn(3, 3, 64, 64), torch.tensor([2, 9, 2])
    texts = module.episode_texts(CLASS_NAMES)
    with torch.no_grad():
        got = module.episode_logits(images, class_ids, texts, (64, 64))
        want = per_image(module, images, class_ids, texts, (64, 64))
    torch.testing.assert_close(got, want)


def test_the_zero_shot_training_step_learns_the_binary_masks_with_the_text_frozen():
    torch.manual_seed(0)
    module = lseg()
    fg = torch.zeros(4, 64, 64, dtype=torch.long)
    fg[:, 16:48, 16:48] = 1
    image = fg[:, None].float().expand(-1, 3, -1, -1) * 2 - 1  # the class is a bright square
    batch = {
        "image": image,
        "target": fg,
        "support_image": image.flip(-1),
        "support_target": fg.flip(-1),
        "class_id": torch.tensor([1, 2, 3, 4]),
    }
    opt = torch.optim.SGD([p for _, p in module.trainable_parameters()], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.8
    assert not any(p.requires_grad for p in module.clip.parameters())


def test_validation_logs_the_folds_mean_foreground_iou_and_fb_iou(monkeypatch):
    """Predictions and targets chosen here; the logged scores equal a direct numpy computation."""
    module = lseg().eval()
    logged = {}
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.__setitem__(key, float(value)))
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 2, (3, 8, 8)))
    target[0, 0] = 255
    classes = torch.tensor([0, 0, 5])
    pred = torch.from_numpy(rng.integers(0, 2, (3, 8, 8)))
    logits = torch.stack([1 - pred, pred], 1).float()  # argmax = pred
    monkeypatch.setattr(module, "episode_logits", lambda *a: logits)
    module.validation_step({"image": torch.zeros(3, 3, 64, 64), "target": target, "class_id": classes}, 0, 0)
    module.on_validation_epoch_end()
    t, p = target.numpy(), pred.numpy()
    inter = np.zeros((2, 10))
    union = np.zeros((2, 10))  # noqa: E702
    for i, c in enumerate(classes.tolist()):
        valid = t[i] != 255
        for k in (0, 1):
            a, b = (p[i] == k) & valid, t[i] == k
            inter[k, c] += (a & b).sum()
            union[k, c] += a.sum() + b.sum() - (a & b).sum()
    miou = np.mean([inter[1, c] / max(union[1, c], 1) for c in FOLD0])
    fb = np.mean(inter[:, FOLD0].sum(1) / union[:, FOLD0].sum(1))
    assert logged["val/mIoU/episodes/synthetic"] == np.float32(miou)
    assert abs(logged["val/FB-IoU/episodes/synthetic"] - fb) < 1e-6
    assert logged["val/mIoU"] == logged["val/mIoU/episodes/synthetic"]
