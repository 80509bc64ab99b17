import logging

import pytest

from data_modules.bad_samples import MIN_SEEN, DataQualityError, SkipCounter


def test_counts_by_reason_and_logs_each_reason_once(caplog):
    counter = SkipCounter(max_bad_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="data_modules.bad_samples"):
        counter.add(8, [("bad_image", "a.jpg"), ("bad_image", "b.jpg"), ("exif_ignored", "c.jpg")])
        counter.add(8, [("empty_caption", "d")])
    assert counter.counts == {"bad_image": 2, "exif_ignored": 1, "empty_caption": 1}
    assert counter.skipped == 3 and counter.seen == 19  # notes are used samples, not extra ones
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3 and any("a.jpg" in m for m in logged) and not any("b.jpg" in m for m in logged)


def test_raises_once_the_share_is_exceeded_but_not_before_enough_samples():
    counter = SkipCounter(max_bad_fraction=0.05)
    counter.add(0, [("bad_image", "x.jpg")] * 3)  # 100 % bad, but only 3 seen: no verdict yet
    counter.add(MIN_SEEN, [])  # 3 of 103 = 2.9 %: fine
    with pytest.raises(DataQualityError, match="x.jpg"):
        counter.add(0, [("bad_image", "y.jpg")] * 5)  # 8 of 108 = 7.4 %


def test_the_stop_names_the_worst_shards_first():
    counter = SkipCounter(max_bad_fraction=0.05)
    counter.add(MIN_SEEN, [("bad_image", "s3://b/good.tar:000001")])
    events = [("bad_image", f"s3://b/rotten.tar:{k:06d}") for k in range(6)] + [
        ("empty_caption", "/d/two.tar:7")
    ] * 2
    with pytest.raises(DataQualityError) as err:
        counter.add(0, events)
    message = str(err.value)
    assert "Worst: s3://b/rotten.tar (6 bad); /d/two.tar (2 bad); s3://b/good.tar (1 bad)" in message


def test_epoch_end_check_catches_small_sets():
    counter = SkipCounter(max_bad_fraction=0.1)
    counter.add(4, [("missing_file", "m.png")])
    with pytest.raises(DataQualityError, match="1 of 5"):
        counter.check()


def test_failed_shards_are_a_share_of_the_shards_not_of_the_samples():
    counter = SkipCounter(max_bad_fraction=0.05)
    counter.add(50, [("missing_shard", "s3.tar")], shards=9)  # too few shards and samples for a verdict
    assert counter.skipped == 0 and counter.failed_shards == 1
    with pytest.raises(DataQualityError, match="1 of 10 shards could not be read.*s3.tar"):
        counter.add(50, [], shards=1)
