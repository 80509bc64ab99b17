"""LSeg's official ADE20K label strings (names/lseg): lang-seg's get_labels over its own label file."""

from data_modules.classnames import ADE20K_150
from data_modules.name_sets import NAMES_DIR, name_file


def get_labels(path):
    """isl-org/lang-seg@bb00b21 modules/lseg_module.py:97-109, transcribed."""
    labels = []
    with open(path) as f:
        for line in f.readlines():
            labels.append(line.strip().split(",")[-1].split(";")[0])
    return labels[1:]  # dataset == 'ade20k'


def test_the_lseg_set_is_what_get_labels_reads_from_the_official_file():
    official = get_labels(NAMES_DIR / "lseg" / "ade20k_objectInfo150.txt")
    shipped = name_file("lseg", "ade20k").read_text().splitlines()
    assert shipped == official and len(shipped) == len(ADE20K_150) == 150
    cut = [(a, b) for a, b in zip(shipped, ADE20K_150, strict=True) if a != b]
    assert len(cut) == 15 and ("traffic", "traffic light") in cut and ("chest", "chest of drawers") in cut
    assert all(b.startswith(a + " ") for a, b in cut)  # each a truncation of the benchmark's name
    assert name_file("lseg", "voc21") is None  # ADE20K only
