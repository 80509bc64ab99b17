"""The on-disk stores of frozen features: rows round-trip in float16, keys separate caches, damage is not
trusted."""

import pickle

import pytest
import torch

from data_modules.feature_cache import TextStore, TokenStore, files_digest


def test_token_rows_round_trip_in_float16_and_survive_reopening(tmp_path):
    store = TokenStore(tmp_path, {"model": "m"}, n=5, tokens=3, width=4)
    rows = torch.randn(2, 3, 4)
    assert store.write([1, 3], rows) == 2
    assert [store.has(i) for i in range(5)] == [False, True, False, True, False]
    assert torch.equal(store.read(3), rows[1].half())
    again = pickle.loads(pickle.dumps(store))  # as a DataLoader worker receives it
    assert again.has(1) and torch.equal(again.read(1), rows[0].half())
    reopened = TokenStore(tmp_path, {"model": "m"}, n=5, tokens=3, width=4)
    assert reopened.folder == store.folder and reopened.filled() == 2


def test_another_key_or_shape_is_another_cache(tmp_path):
    a = TokenStore(tmp_path, {"model": "m"}, n=5, tokens=3, width=4)
    a.write([0], torch.ones(1, 3, 4))
    assert TokenStore(tmp_path, {"model": "other"}, n=5, tokens=3, width=4).filled() == 0
    assert TokenStore(tmp_path, {"model": "m"}, n=6, tokens=3, width=4).filled() == 0


def test_rows_not_finite_in_float16_stay_uncached_and_shapes_are_checked(tmp_path):
    store = TokenStore(tmp_path, {}, n=3, tokens=2, width=2)
    rows = torch.ones(2, 2, 2)
    rows[1, 0, 0] = 1e6  # beyond float16
    assert store.write([0, 1], rows) == 1
    assert store.has(0) and not store.has(1)
    with pytest.raises(ValueError, match="do not fit"):
        store.write([2], torch.ones(1, 3, 2))


def test_text_store_keeps_embeddings_by_string_and_reloads_them(tmp_path):
    store = TextStore(tmp_path, {"model": "m"})
    emb = torch.randn(3, 8)
    store.add(["a", "b", "c"], emb)
    assert store.missing(["b", "d", "d", "e"]) == ["d", "e"]
    assert torch.equal(store.get(["c", "a"]), emb[[2, 0]].half())
    store.save()
    again = TextStore(tmp_path, {"model": "m"})
    assert len(again) == 3 and torch.equal(again.get(["b"]), emb[[1]].half())
    assert len(TextStore(tmp_path, {"model": "other"})) == 0


def test_a_damaged_text_store_is_recomputed_not_trusted(tmp_path, caplog):
    store = TextStore(tmp_path, {"model": "m"})
    store.add(["a"], torch.randn(1, 4))
    store.save()
    store.file.write_bytes(store.file.read_bytes()[:20])
    assert len(TextStore(tmp_path, {"model": "m"})) == 0
    assert "unreadable" in caplog.text


def test_the_files_digest_follows_the_files(tmp_path):
    f = tmp_path / "x.jpg"
    f.write_bytes(b"1234")
    first = files_digest([f])
    f.write_bytes(b"12345")
    assert files_digest([f]) != first


def test_the_text_store_keeps_first_rows_across_many_chunks(tmp_path):
    store = TextStore(tmp_path, {"model": "m"})
    emb = torch.randn(2, 4)
    store.add(["x", "x"], emb)  # a repeated text keeps its first row
    assert torch.equal(store.get(["x"]), emb[[0]].half())
    for c in range(50):  # chunk after chunk, as a COCO-sized fill adds them
        store.add([f"caption {c} {k}" for k in range(100)], torch.full((100, 4), float(c)))
    assert len(store) == 5001
    assert store.get(["caption 49 99", "x", "caption 3 0"])[:, 0].tolist() == [
        49.0,
        float(emb[0, 0].half()),
        3.0,
    ]
    store.save()
    again = TextStore(tmp_path, {"model": "m"})
    assert torch.equal(again.get(["caption 17 5", "x"]), store.get(["caption 17 5", "x"]))


def test_keyed_store_reads_back_exactly_what_it_wrote_named_by_the_input(tmp_path):
    from data_modules.feature_cache import KeyedStore

    store = KeyedStore(tmp_path, {"model": "m", "weights": "w"})
    x = torch.randn(1, 3, 8, 10, dtype=torch.float64)
    name = KeyedStore.name_of(x)
    y = x.clone()
    y[0, 0, 0, 0] += 1e-12
    assert KeyedStore.name_of(y) != name and KeyedStore.name_of(x.float()) != name
    assert store.get(name) is None
    features = torch.randn(1, 5, 7, dtype=torch.float64)
    store.put(name, features)
    assert torch.equal(store.get(name), features) and store.get(name).dtype == torch.float64
    assert KeyedStore(tmp_path, {"model": "m", "weights": "w"}).folder == store.folder
    assert KeyedStore(tmp_path, {"model": "m", "weights": "other"}).folder != store.folder
    store.put("bf16", torch.ones(2, dtype=torch.bfloat16))
    assert torch.equal(store.get("bf16"), torch.ones(2))
    assert not list(store.folder.glob(".writing-*"))
