"""Caption shards in img2dataset's layout: split across ranks and workers, seeded, mixed, robust to bad
input."""

import io
import itertools
import pickle
from collections import Counter

import pytest
import torch
from PIL import Image
from support.layouts import add_tar_member, make_shards, truncate
from torch.utils.data import DataLoader

from data_modules.bad_samples import EVENTS, EXHAUSTED, SHARDS
from data_modules.shards import ShardSource, ShardStream, expand_urls, read_shard, worker_shards
from data_modules.transforms import caption_train_transform

T = caption_train_transform(16, (0.5,) * 3, (0.5,) * 3, scale_min=0.5)


def stream(urls, **kw) -> ShardStream:
    opts = dict(
        transform=T,
        batch_size=5,
        samples_per_epoch=40,
        num_workers=2,
        seed=0,
        resampled=False,
        shuffle_buffer=4,
    )
    opts.update(kw)
    sources = opts.pop("sources", None) or [ShardSource(tuple(str(u) for u in urls))]
    return ShardStream(sources, **opts)


def run(ds: ShardStream) -> list[dict]:
    workers = ds.num_workers if ds.num_workers > 1 else 0
    return list(DataLoader(ds, batch_size=None, num_workers=workers))


def keys(batches) -> list[str]:
    return [k for b in batches for k in b.get("key", [])]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), n_shards=8, per_shard=5)


def test_two_ranks_by_two_workers_read_every_sample_once(shards):
    per_rank = []
    for rank in (0, 1):
        batches = run(stream(shards, rank=rank, world_size=2))
        assert len(batches) == 4 and all(b["image"].shape == (5, 3, 16, 16) for b in batches)
        per_rank.append(keys(batches))
    everything = per_rank[0] + per_rank[1]
    assert sorted(everything) == [f"{i:09d}" for i in range(40)]  # no overlap, no loss
    assert not set(per_rank[0]) & set(per_rank[1])


def test_shard_assignment_partitions_each_pass():
    urls = [f"s{i}" for i in range(10)]
    parts = [worker_shards(urls, 0, 3, 0, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert sorted(u for p in parts for u in p) == urls
    again = [worker_shards(urls, 0, 3, 0, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert parts == again  # every process computes the same split without talking


def test_same_seed_same_stream_and_epochs_differ(shards):
    a, b = run(stream(shards)), run(stream(shards))
    assert keys(a) == keys(b)
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b, strict=True))
    later = stream(shards)
    later.set_epoch(1)
    other_seed = stream(shards, seed=1)
    assert keys(run(later)) != keys(a) and sorted(keys(run(later))) == sorted(keys(a))
    assert keys(run(other_seed)) != keys(a)


def test_resampled_mode_gives_a_fixed_epoch_length(shards):
    ds = stream(shards, resampled=True, samples_per_epoch=60, num_workers=1)
    batches = run(ds)
    assert len(batches) == len(ds) == 12
    assert set(keys(batches)) <= {f"{i:09d}" for i in range(40)}


def test_sources_are_mixed_by_weight(tmp_path):
    a = make_shards(tmp_path / "a", n_shards=2, per_shard=5, captions=lambda i: f"from a {i}")
    b = make_shards(tmp_path / "b", n_shards=2, per_shard=5, captions=lambda i: f"from b {i}")
    ds = stream(
        None,
        sources=[ShardSource(tuple(map(str, a)), 3.0), ShardSource(tuple(map(str, b)), 1.0)],
        resampled=True,
        samples_per_epoch=800,
        num_workers=1,
        batch_size=20,
    )
    origin = Counter(c.split()[1] for batch in run(ds) for c in batch["caption"])
    assert sum(origin.values()) == 800
    assert 0.68 < origin["a"] / 800 < 0.82  # 3:1 -> 0.75


def test_bad_samples_and_shards_are_counted_and_skipped(tmp_path):
    good = make_shards(tmp_path / "good", n_shards=2, per_shard=5)
    jpeg = io.BytesIO()
    Image.new("RGB", (24, 32), (200, 10, 10)).save(jpeg, "JPEG")
    jpeg = jpeg.getvalue()
    bad = tmp_path / "bad.tar"
    for name, data in [
        ("a.jpg", jpeg[: len(jpeg) // 2]),
        ("a.txt", b"a truncated picture"),
        ("b.jpg", jpeg),
        ("b.txt", b"   "),
        ("c.txt", b"no picture"),
        ("d.jpg", jpeg),
        ("e.jpg", jpeg),
        ("e.txt", b"caf\xe9 latte"),
        ("f.jpg", jpeg),
        ("f.txt", b"a red square"),
        ("f.pyd", pickle.dumps(ValueError("loaded"))),
    ]:
        add_tar_member(bad, name, data)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(good[1].read_bytes())
    truncate(broken, 0.3)
    urls = [str(good[0]), str(bad), str(broken), str(tmp_path / "missing.tar")]
    events: list = []
    seen = [k for u in urls for k, _ in read_shard(u, events)]
    assert "f" in seen and Counter(r for r, _ in events) == {"bad_shard": 1, "missing_shard": 1}
    ds = stream(urls, num_workers=1, samples_per_epoch=6, batch_size=6, shuffle_buffer=1)
    (batch,) = run(ds)
    reasons = Counter(r for r, _ in batch[EVENTS])  # (the DataLoader hands pairs over as lists)
    assert reasons == {
        "bad_image": 1,
        "empty_caption": 1,
        "missing_image": 1,
        "missing_caption": 1,
        "caption_not_utf8": 1,
        "bad_shard": 1,
        "missing_shard": 1,
    }
    assert "a red square" in batch["caption"] and len(batch["caption"]) == 6


def test_a_stream_that_runs_dry_reports_instead_of_hanging(tmp_path):
    ds = stream([str(tmp_path / "gone.tar")], num_workers=1, samples_per_epoch=5)
    (only,) = run(ds)
    assert [tuple(e) for e in only[EVENTS]] == [("missing_shard", str(tmp_path / "gone.tar"))]
    assert "image" not in only and "ran dry" in only[EXHAUSTED] and only[SHARDS] == 1


def test_a_dead_source_in_resampled_mode_is_dropped_not_waited_on(shards, tmp_path):
    dead = ShardSource(tuple(str(tmp_path / f"typo{i}.tar") for i in range(3)), 1.0)
    ds = stream(
        None,
        sources=[ShardSource(tuple(map(str, shards)), 1.0), dead],
        resampled=True,
        samples_per_epoch=20,
        num_workers=1,
    )
    batches = run(ds)
    assert len(batches) == 4 and all(b["image"].shape[0] == 5 for b in batches)
    reasons = Counter(r for b in batches for r, _ in b[EVENTS])
    assert reasons == {"missing_shard": 16}  # 16 draws in a row without a sample: the source is given up
    assert sum(b[SHARDS] for b in batches) >= 17


def test_file_urls_read_like_paths(shards):
    events: list = []
    assert [k for k, _ in read_shard(f"file://{shards[0]}", events)] == [f"{i:09d}" for i in range(5)]
    assert events == []


def test_brace_patterns_expand_and_pipes_are_refused():
    assert expand_urls(["/d/{00000..00002}.tar", "/e/x.tar"]) == [
        "/d/00000.tar",
        "/d/00001.tar",
        "/d/00002.tar",
        "/e/x.tar",
    ]
    with pytest.raises(ValueError, match="pipe"):
        expand_urls(["pipe:curl -s http://x/{0..3}.tar"])


def test_too_few_shards_for_the_workers_is_a_clear_error(shards):
    with pytest.raises(ValueError, match="cannot feed"):
        stream(shards[:3], world_size=2, num_workers=2, samples_per_epoch=40)


@pytest.mark.parametrize("workers,consumed", [(2, 1), (2, 3), (3, 4), (1, 2)])
def test_a_resumed_stream_continues_with_the_batches_an_uninterrupted_one_gives(tmp_path, workers, consumed):
    from data_modules.shards import ResumableShardLoader

    urls = [str(u) for u in make_shards(tmp_path, n_shards=9, per_shard=6)]
    truncate(urls[2], 0.6)  # bad samples in the middle of the stream shift batch boundaries
    build = lambda: stream(urls, num_workers=workers, batch_size=4, samples_per_epoch=32, shuffle_buffer=5)  # noqa: E731
    full = list(ResumableShardLoader(build(), workers if workers > 1 else 0))
    first = ResumableShardLoader(build(), workers if workers > 1 else 0)
    for batch in itertools.islice(iter(first), consumed):
        first.trained(batch)
    again = ResumableShardLoader(build(), workers if workers > 1 else 0)
    again.load_state_dict(first.state_dict())
    rest = list(again)
    assert keys(rest) == keys(full[consumed:])
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(rest, full[consumed:], strict=True))


def test_members_named_like_paths_are_refused_and_counted(tmp_path):
    jpeg = io.BytesIO()
    Image.new("RGB", (24, 32), (200, 10, 10)).save(jpeg, "JPEG")
    shard = tmp_path / "shards" / "evil.tar"
    shard.parent.mkdir()
    for name, data in [
        ("../escape.jpg", jpeg.getvalue()),
        ("../escape.txt", b"up and out"),
        ("sub/inner.jpg", jpeg.getvalue()),
        ("./ok.jpg", jpeg.getvalue()),
        ("./ok.txt", b"fine"),
    ]:
        add_tar_member(shard, name, data)
    events: list = []
    assert [k for k, _ in read_shard(str(shard), events)] == ["ok"]
    assert Counter(r for r, _ in events) == {"bad_key": 3}
    assert not (tmp_path / "escape.jpg").exists() and sorted(p.name for p in shard.parent.iterdir()) == [
        "evil.tar"
    ]
