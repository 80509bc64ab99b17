"""The frozen-feature cache in training: what may be cached, and cached features give the loss live ones
give."""

import logging

import pytest
import torch

import data_modules.captions as captions
from data_modules.captions import caption_vocabulary, collate_captions
from lseg_pacl.commands.cli import main
from lseg_pacl.config.loading import load_config
from lseg_pacl.objectives import input_spec
from lseg_pacl.training.feature_caching import plan_feature_cache
from lseg_pacl.training.runner import build_model_and_data


def setup(tiny, tiny_clip_file, tmp_path, *extra):
    cfg = load_config(
        "demo_pacl",
        [
            *tiny,
            f"model.clip.pretrained={tiny_clip_file}",
            "data.train.hflip=false",
            "data.train.feature_cache=true",
            f"data.train.feature_cache_dir={tmp_path / 'fc'}",
            *extra,
        ],
    )
    module, data = build_model_and_data(cfg)
    return cfg, module.train(), data


def items(data, indices):
    out = []
    for i in indices:
        torch.manual_seed(i)  # the same caption draw whichever way the sample is served
        out.append(data.train_set[i])
    return collate_captions(out)


def test_cached_and_live_features_give_the_same_loss(tiny, tiny_clip_file, tmp_path):
    cfg, module, data = setup(tiny, tiny_clip_file, tmp_path)
    store = module.feature_cache.token_store
    assert data.train_set.token_store is store  # one store: the data reads what the model writes
    live_batch = items(data, range(8))
    assert "image" in live_batch and "tokens" not in live_batch
    live_loss = module.training_step(live_batch, 0)
    assert store.filled() == 8
    with torch.no_grad():
        expected = module.clip.patch_tokens(live_batch["image"]).half()
    assert torch.equal(torch.stack([store.read(i) for i in range(8)]), expected)

    cached_batch = items(data, range(8))
    assert "tokens" in cached_batch and "image" not in cached_batch
    module.clip.patch_tokens = None  # a cached batch must not run the vision tower
    assert torch.equal(module.training_step(cached_batch, 0), live_loss)


def test_mixed_batches_and_the_uncached_loss_agree(tiny, tiny_clip_file, tmp_path):
    cfg, module, data = setup(tiny, tiny_clip_file, tmp_path)
    module.training_step(items(data, [0, 1, 2]), 0)  # caches 0..2
    mixed = items(data, range(6))
    assert mixed["tokens"].shape[0] == 3 and mixed["image"].shape[0] == 3
    assert mixed["index"][3:].tolist() == [0, 1, 2]  # live rows first, then cached, captions alike
    cached_loss = module.training_step(mixed, 0)
    _, live_module, live_data = setup(tiny, tiny_clip_file, tmp_path, "data.train.feature_cache=false")
    assert live_module.feature_cache is None  # the same weights, everything live in float32
    uncached = items(live_data, range(6))
    torch.testing.assert_close(live_module.training_step(uncached, 0), cached_loss, rtol=2e-3, atol=2e-3)


def test_texts_are_served_from_the_store_after_it_is_filled(tiny, tiny_clip_file, tmp_path):
    cfg, module, data = setup(tiny, tiny_clip_file, tmp_path)
    store = module.feature_cache.text_store
    module.fill_text_store()  # what on_train_start does
    captions_all, nouns = caption_vocabulary(data.train_set.records)
    assert len(store) >= len(set(captions_all)) + 7 * len(nouns) - 1  # every caption and noun prompt
    module.clip.encode_text = None  # nothing left to encode
    assert torch.isfinite(module.training_step(items(data, range(8)), 0))


def test_random_augmentation_leaves_only_texts_cached(tiny, tiny_clip_file, caplog):
    caplog.set_level(logging.WARNING)
    cfg = load_config(
        "demo_pacl",
        [
            *tiny,
            f"model.clip.pretrained={tiny_clip_file}",
            "data.train.feature_cache=true",
            "data.train.crop_scale_min=0.5",
        ],
    )
    plan = plan_feature_cache(cfg, input_spec(cfg))
    assert plan.image_key is None and plan.text_key is not None
    assert "patch tokens not cached" in caplog.text and "crop_scale_min=0.5" in caplog.text


@pytest.mark.parametrize(
    "over,reason",
    [
        (["model.objective=clip"], "trains its encoders"),
        (["model.pacl.freeze_vision=false", "model.pacl.freeze_text=false"], "freeze_text=false"),
        (["model.clip.pretrained=null"], "random weights have no identity"),
    ],
)
def test_nothing_cacheable_turns_the_cache_off_with_the_reason(tiny, tiny_clip_file, over, reason, caplog):
    caplog.set_level(logging.WARNING)
    cfg = load_config(
        "demo_pacl",
        [*tiny, f"model.clip.pretrained={tiny_clip_file}", "data.train.feature_cache=true", *over],
    )
    assert plan_feature_cache(cfg, input_spec(cfg)) is None
    assert reason in caplog.text


@pytest.mark.slow
def test_a_cached_run_reads_no_image_after_its_first_epoch(tiny, tiny_clip_file, tmp_path, monkeypatch):
    reads = []
    real = captions.read_rgb
    monkeypatch.setattr(captions, "read_rgb", lambda path, **kw: reads.append(path) or real(path, **kw))
    args = [
        *tiny,
        f"model.clip.pretrained={tiny_clip_file}",
        "data.train.hflip=false",
        "data.train.feature_cache=true",
        f"data.train.feature_cache_dir={tmp_path / 'fc'}",
        "trainer.max_steps=18",
    ]  # 3 epochs of 6 batches
    assert main(["train", "demo_pacl", *args]) == 0
    assert len(reads) == 48 and len(set(reads)) == 48  # the first epoch only


def test_the_caption_file_is_read_once_for_the_cache_and_the_data(tiny, tiny_clip_file, tmp_path,
                                                                  monkeypatch):
    import lseg_pacl.training.feature_caching as feature_caching

    reads = []
    real = feature_caching.read_coco_captions
    monkeypatch.setattr(feature_caching, "read_coco_captions", lambda *a: reads.append(a) or real(*a))
    monkeypatch.setattr(captions, "read_coco_captions", lambda *a: reads.append(a) or real(*a))
    cfg, module, data = setup(tiny, tiny_clip_file, tmp_path)
    assert len(reads) == 1  # the token store's rows and the dataset's samples are one list
    assert data.train_set.records == list(module.feature_cache.records)
