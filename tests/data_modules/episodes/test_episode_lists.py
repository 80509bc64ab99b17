"""COCO-20i's lists come from the user's copy, through an unpickler that runs nothing."""

import os

import pytest
from episode_official import write_pickle

from data_modules.episodes import EpisodeSet, lists


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def fake_classwise(fold=0):
    return {c: ([f"val2014/COCO_val2014_{c:012d}.jpg"] if c % 4 == fold else []) for c in range(80)}


@pytest.mark.parametrize("protocol", [2, 4])
def test_coco_lists_load_in_any_protocol(tmp_path, protocol):
    data = fake_classwise()
    write_pickle(tmp_path / "val" / "fold0.pkl", data, protocol)
    assert lists.coco_classwise(tmp_path, "val", 0) == data


def test_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    bad = fake_classwise()
    bad[4] = [Payload(marker)]
    write_pickle(tmp_path / "splits" / "coco" / "val" / "fold0.pkl", bad, 4)
    (tmp_path / "COCO2014" / "val2014").mkdir(parents=True)
    (tmp_path / "COCO2014" / "annotations" / "val2014").mkdir(parents=True)
    with pytest.raises(lists.RefusedGlobal, match=r"asks to call (posix|os|nt)\.system"):
        EpisodeSet("coco20i", tmp_path, 0, "test")
    with pytest.raises(lists.RefusedGlobal):
        lists.load_list_pickle(tmp_path / "splits" / "coco" / "val" / "fold0.pkl")
    assert not marker.exists()


def test_lists_of_another_shape_are_refused(tmp_path):
    write_pickle(tmp_path / "val" / "fold0.pkl", {0: ("a.jpg",)}, 4)
    with pytest.raises(ValueError, match="list of image names"):
        lists.coco_classwise(tmp_path, "val", 0)
    write_pickle(tmp_path / "val" / "fold1.pkl", [1, 2], 2)
    with pytest.raises(ValueError, match="int keys"):
        lists.coco_classwise(tmp_path, "val", 1)
    (tmp_path / "val" / "fold2.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable"):
        lists.coco_classwise(tmp_path, "val", 2)


def test_a_missing_list_names_the_file_and_where_to_put_it(tmp_path):
    (tmp_path / "COCO2014" / "train2014").mkdir(parents=True)
    (tmp_path / "COCO2014" / "annotations" / "train2014").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        EpisodeSet("coco20i", tmp_path, 2, "train")
    msg = str(err.value)
    assert str(tmp_path / "splits" / "coco" / "trn" / "fold2.pkl") in msg
    assert "splits/coco/trn/fold2.pkl" in msg and "coco_lists=" in msg
    other = tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match=str(other / "trn" / "fold2.pkl")):
        EpisodeSet("coco20i", tmp_path, 2, "train", coco_lists=other)


def test_converted_text_lists_read_as_the_pickle_and_are_preferred(tmp_path):
    """`data prepare coco20i splits=DIR` writes <class>\\t<image> lines; they are read back as the pickle."""
    data = {3: ["val2014/a.jpg", "val2014/b.jpg"], 7: ["val2014/c.jpg"]}
    write_pickle(tmp_path / "val" / "fold3.pkl", {3: ["val2014/other.jpg"]}, 4)
    lines = [f"{c}\t{name}" for c, names in data.items() for name in names]
    (tmp_path / "val" / "fold3.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert lists.coco_classwise(tmp_path, "val", 3) == data
    (tmp_path / "val" / "fold3.txt").write_text("3 val2014/a.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="fold3.txt:1"):
        lists.coco_classwise(tmp_path, "val", 3)
