"""Episode order equals a transcription of the official samplers; training draws are a function of
(seed, epoch, index)."""

import numpy as np
import pytest
from episode_official import (
    official_coco_test_order,
    official_fss_metadata,
    official_pascal_metadata,
    official_pascal_test_order,
    write_fss,
    write_pickle,
)

from data_modules.episodes import MIN_FRACTION, EpisodeSet, fold_classes, lists, sampling
from data_modules.images import read_label_png


def fake_coco_classwise(fold, split, per_class=lambda c: 3 + c % 11):
    """80 keys as the official pkls; the split's classes hold lists of varied lengths (shared images too)."""
    ids = fold_classes("coco20i", fold, "train" if split == "trn" else "test")
    sub = "train2014" if split == "trn" else "val2014"
    return {
        c: (
            [f"{sub}/COCO_{sub}_{(c * 7 + k) % 150:012d}.jpg" for k in range(per_class(c))]
            if c in ids
            else []
        )
        for c in range(80)
    }


@pytest.mark.parametrize("fold", [0, 3])
def test_coco_test_draws_equal_the_official_sampler(fold):
    classwise = fake_coco_classwise(fold, "val")
    ids = fold_classes("coco20i", fold, "test")
    want = official_coco_test_order(classwise, ids)
    got = [(e.query, e.class_id) for e in sampling.coco_test_draws(classwise, ids, 1000, seed=0)]
    assert got == want and len(set(got)) > 100
    # replace=False matters: it draws through permutation(len), so replace=True gives other episodes
    rs = np.random.RandomState(0)
    other = []
    for _ in range(50):
        c = rs.choice(ids, 1)[0]
        other.append((str(rs.choice(classwise[c], 1)[0]), int(c)))
    assert other != want[:50]


def test_coco_test_set_uses_the_draws(tmp_path):
    classwise = fake_coco_classwise(1, "val")
    write_pickle(tmp_path / "splits" / "coco" / "val" / "fold1.pkl", classwise, 2)
    for d in ("COCO2014/val2014", "COCO2014/annotations/val2014"):
        (tmp_path / d).mkdir(parents=True)
    ds = EpisodeSet("coco20i", tmp_path, 1, "test")
    want = official_coco_test_order(classwise, fold_classes("coco20i", 1, "test"))
    assert len(ds) == 1000
    assert [(ds.episode(i)[0].query, ds.episode(i)[0].class_id) for i in range(1000)] == want
    assert ds.episode(3)[1] is None
    assert len(EpisodeSet("coco20i", tmp_path, 1, "test", episodes=20)) == 20


def voc_dirs(tmp_path):
    for d in ("VOC2012/JPEGImages", "VOC2012/SegmentationClassAug"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    return tmp_path


@pytest.mark.parametrize("fold", range(4))
def test_pascal_test_order_is_the_official_one(tmp_path, fold):
    meta = official_pascal_metadata(lists.shipped_dir(), "val", fold)
    want = official_pascal_test_order(meta)
    ds = EpisodeSet("pascal5i", voc_dirs(tmp_path), fold, "test")
    assert len(ds) == 1000
    assert [(ds.episode(i)[0].query, ds.episode(i)[0].class_id) for i in range(1000)] == want


def test_fss_test_order_is_the_official_one(tmp_path):
    test = lists.fss_categories("test")
    present = [test[5], test[0], test[17]]
    write_fss(tmp_path, present, n=11)  # 1..11: sorted() puts 10.jpg and 11.jpg after 1.jpg
    base = tmp_path / "FSS-1000"
    (base / present[0] / "notes.txt").write_text("not an image")
    want = [(p.replace(str(base) + "/", ""), c) for p, c in official_fss_metadata(str(base), test, "test")]
    ds = EpisodeSet("fss1000", tmp_path, 0, "test")
    got = [(ds.episode(i)[0].query, ds.episode(i)[0].class_id) for i in range(len(ds))]
    assert got == want and len(got) == 33
    assert got[0] == (f"{test[0]}/1.jpg", 760) and got[1] == (f"{test[0]}/10.jpg", 760)
    assert {c for _, c in got} == {760, 765, 777}


def test_training_draws_are_deterministic_and_supports_differ_from_queries(tmp_path):
    ds = EpisodeSet("pascal5i", voc_dirs(tmp_path), 1, "train", seed=7)
    meta = official_pascal_metadata(lists.shipped_dir(), "trn", 1)
    assert len(ds) == len(meta) == 2286 + 5883 + 2086  # the other folds' trn lists, in fold order
    assert [(e.query, e.class_id) for e in ds.episodes] == [tuple(m) for m in meta]
    idx = list(range(0, len(ds), 97))
    first = [ds.episode(i, epoch=0) for i in idx]
    assert first == [ds.episode(i, epoch=0) for i in idx]
    again = EpisodeSet("pascal5i", tmp_path, 1, "train", seed=7)
    assert first == [again.episode(i, epoch=0) for i in idx]
    second = [ds.episode(i, epoch=1) for i in idx]
    assert [s for _, s in first] != [s for _, s in second]  # supports differ across epochs
    assert [e for e, _ in first] == [e for e, _ in second]  # the query list is fixed
    ds.set_epoch(1)
    assert [ds.episode(i) for i in idx] == second
    other_seed = EpisodeSet("pascal5i", tmp_path, 1, "train", seed=8)
    assert [s for _, s in first] != [other_seed.episode(i, 0)[1] for i in idx]
    pools = sampling.by_class(ds.episodes)
    for e, s in first + second:
        assert s != e.query and s in pools[e.class_id]


def test_coco_training_draws(tmp_path):
    classwise = fake_coco_classwise(2, "trn", per_class=lambda c: 1 + c % 3)  # some classes: one image
    write_pickle(tmp_path / "splits" / "coco" / "trn" / "fold2.pkl", classwise, 4)
    for d in ("COCO2014/train2014", "COCO2014/annotations/train2014"):
        (tmp_path / d).mkdir(parents=True)
    ds = EpisodeSet("coco20i", tmp_path, 2, "train")
    assert len(ds) == len({n for v in classwise.values() for n in v})  # coco.py:29-30, 75-79
    ds = EpisodeSet("coco20i", tmp_path, 2, "train", episodes=300)
    draws = [ds.episode(i, 0) for i in range(300)]
    assert draws == [ds.episode(i, 0) for i in range(300)]
    assert draws != [ds.episode(i, 1) for i in range(300)]
    seen = {e.class_id for e, _ in draws}
    assert seen <= set(fold_classes("coco20i", 2, "train"))
    assert len(seen) > 20 and all(len(classwise[c]) >= 2 for c in seen)  # one-image classes have no support
    for e, s in draws:
        assert s != e.query and s in classwise[e.class_id] and e.query in classwise[e.class_id]


def test_fss_training_supports(tmp_path):
    trn = lists.fss_categories("trn")
    write_fss(tmp_path, [trn[0], trn[1]], n=4)
    ds = EpisodeSet("fss1000", tmp_path, 0, "train")
    assert len(ds) == 8 and {e.class_id for e in ds.episodes} == {0, 1}
    for i in range(len(ds)):
        e, s = ds.episode(i, epoch=3)
        assert s != e.query and s.split("/")[0] == e.query.split("/")[0] and s.endswith(".jpg")


def test_synthetic_episodes_follow_the_masks(world):
    for split, folder in (("test", "validation"), ("train", "training")):
        ds = EpisodeSet("synthetic", world, 1, split)
        classes = fold_classes("synthetic", 1, split)
        masks = sorted((world / "ADEChallengeData2016" / "annotations" / folder).glob("*.png"))
        want = []
        for m in masks:
            raw = read_label_png(m)
            for c in classes:
                if (raw == c + 1).sum() >= MIN_FRACTION * raw.size:
                    want.append((m.stem, c))
        got = [(e.query, e.class_id) for e in ds.episodes]
        assert got == [w for w in want if split == "test" or sum(x[1] == w[1] for x in want) > 1]
        assert len(ds) == len(got) > 0


def test_a_missing_dataset_folder_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug"):
        EpisodeSet("pascal5i", tmp_path, 0, "test")
    with pytest.raises(FileNotFoundError, match="FSS-1000"):
        EpisodeSet("fss1000", tmp_path, 0, "test")
    (tmp_path / "FSS-1000").mkdir()
    with pytest.raises(FileNotFoundError, match="no episode"):
        EpisodeSet("fss1000", tmp_path, 0, "test")
    with pytest.raises(FileNotFoundError, match="classnames.json"):
        EpisodeSet("synthetic", tmp_path, 0, "test")
