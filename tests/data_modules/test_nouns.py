"""Offline caption-noun extraction: lexicon, singulariser and greedy longest match."""

import pytest

from data_modules.classnames import ADE20K_150
from data_modules.nouns import DEFAULT_LEXICON, extract_nouns, load_lexicon, singular

COCO_80 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
PASCAL = (
    "aeroplane",
    "motorbike",
    "potted plant",
    "tv monitor",
    "dining table",
    "sofa",
    "bedclothes",
    "cloth",
    "platform",
    "shelf",
    "wood",
    "ground",
    "track",
    "sign",
    "keyboard",
    "light",
)
EXCLUDED = (
    "top",
    "front",
    "side",
    "view",
    "picture",
    "image",
    "photo",
    "background",
    "lot",
    "couple",
    "group",
    "pair",
    "bunch",
    "way",
    "time",
    "day",
    "back",
    "bottom",
    "middle",
    "edge",
    "corner",
    "area",
    "scene",
    "thing",
    "stand",
    "can",
    "fly",
    "watch",
    "play",
    "ride",
    "well",
    "saw",
)


@pytest.fixture(scope="module")
def lexicon() -> frozenset[str]:
    return load_lexicon()


def test_brief_examples():
    assert extract_nouns("a red fire hydrant near two traffic lights") == ["fire hydrant", "traffic light"]
    assert extract_nouns("a man riding a wave on top of a surfboard") == ["man", "wave", "surfboard"]


@pytest.mark.parametrize(
    ("plural", "expected"),
    [
        ("people", "person"),
        ("men", "man"),
        ("women", "woman"),
        ("children", "child"),
        ("feet", "foot"),
        ("teeth", "tooth"),
        ("mice", "mouse"),
        ("geese", "goose"),
        ("knives", "knife"),
        ("leaves", "leaf"),
        ("wolves", "wolf"),
        ("shelves", "shelf"),
        ("loaves", "loaf"),
        ("buses", "bus"),
        ("glasses", "glass"),
        ("benches", "bench"),
        ("boxes", "box"),
        ("dishes", "dish"),
        ("skis", "ski"),
        ("giraffes", "giraffe"),
        ("bananas", "banana"),
        ("cherries", "cherry"),
        ("cookies", "cookie"),
        ("pies", "pie"),
        ("horses", "horse"),
        ("shoes", "shoe"),
        ("tomatoes", "tomato"),
        ("gloves", "glove"),
        ("caves", "cave"),
        ("lenses", "lens"),
        ("dresses", "dress"),
        ("firemen", "fireman"),
        ("bookshelves", "bookshelf"),
        ("kiwis", "kiwi"),
        ("cacti", "cactus"),
        ("skies", "sky"),
        ("Dogs", "dog"),
    ],
)
def test_plurals(plural, expected):
    assert singular(plural) == expected


@pytest.mark.parametrize(
    "word",
    [
        "glass",
        "bus",
        "grass",
        "cactus",
        "tennis",
        "dog",
        "person",
        "stairs",
        "scissors",
        "jeans",
        "sheep",
        "fish",
        "octopus",
        "iris",
        "dress",
    ],
)
def test_singular_words_stay(word):
    assert singular(word) == word


def test_rules_without_a_lexicon():
    none = frozenset()
    assert singular("cherries", none) == "cherry"
    assert singular("benches", none) == "bench"
    assert singular("houses", none) == "house"
    assert singular("people", none) == "person"
    assert singular("tennis", none) == "tennis"
    assert singular("glass", none) == "glass"
    assert singular("halves", none) == "half"
    assert singular("caves", none) == "cave"  # -ves -> f/fe only where the irregular table says so


def test_multiword_entries_win_over_their_parts():
    assert extract_nouns("a dog eats a hot dog") == ["dog", "hot dog"]
    assert extract_nouns("two teddy bears and a bear") == ["teddy bear", "bear"]
    assert extract_nouns("a chest of drawers beside a chest") == ["chest of drawers", "chest"]
    assert extract_nouns("a hot air balloon over the sea") == ["hot air balloon", "sea"]
    assert extract_nouns("plates of french fries") == ["plate", "french fry"]
    assert extract_nouns("wine glasses and cell phones on a dining table") == [
        "wine glass",
        "cell phone",
        "dining table",
    ]


def test_phrases_do_not_cross_punctuation():
    assert extract_nouns("a hot, dog") == ["dog"]
    assert extract_nouns("traffic. light") == ["light"]


def test_distinct_in_order_of_first_appearance():
    caption = "Two dogs and a cat; the dog chases the cats near a Tree, a tree and people."
    assert extract_nouns(caption) == ["dog", "cat", "tree", "person"]


def test_hyphens_and_apostrophes():
    assert extract_nouns("a boy in a t-shirt eating hot-dogs") == ["boy", "t-shirt", "hot dog"]
    assert extract_nouns("the man's hat and the children\u2019s kites") == ["man", "hat", "child", "kite"]
    assert extract_nouns("a snow-covered mountain") == ["snow", "mountain"]


def test_excluded_words_are_not_nouns(lexicon):
    assert not set(EXCLUDED) & lexicon
    caption = (
        "a picture of a couple in front of a group of buildings on the side of the road at this time of day"
    )
    assert extract_nouns(caption) == ["building", "road"]
    assert extract_nouns("a close up view of a photo with a bunch of bananas in the background") == ["banana"]


@pytest.mark.parametrize("caption", ["", "   ", "\n\t", "a of the, 123 !"])
def test_no_nouns(caption):
    assert extract_nouns(caption) == []


@pytest.mark.parametrize("bad", [None, 3, b"a dog", ["a dog"]])
def test_non_str_is_a_type_error(bad):
    with pytest.raises(TypeError):
        extract_nouns(bad)
    with pytest.raises(TypeError):
        singular(bad)


@pytest.mark.parametrize("name", ADE20K_150)
def test_ade20k_names_are_entries(name, lexicon):
    assert name in lexicon and singular(name) == name
    assert extract_nouns(name) == [name]


@pytest.mark.parametrize("name", COCO_80 + PASCAL)
def test_coco_and_pascal_names_are_entries(name, lexicon):
    noun = singular(name)
    assert noun in lexicon and singular(noun) == noun
    assert extract_nouns(name) == [noun]


def test_lexicon_file_is_sorted_unique_lowercase():
    lines = [
        ln
        for ln in DEFAULT_LEXICON.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines == sorted(lines) and len(lines) == len(set(lines)) >= 1500
    assert all(ln == ln.strip().lower() and "  " not in ln and len(ln.split(" ")) <= 3 for ln in lines)


def test_every_entry_is_its_own_match(lexicon):
    """Each entry extracts to itself, and no entry is the plural of another (no "stair" beside "stairs")."""
    assert [e for e in sorted(lexicon) if extract_nouns(e) != [e]] == []
    rules_only = frozenset()
    assert [
        e for e in sorted(lexicon) if singular(e, rules_only) != e and singular(e, rules_only) in lexicon
    ] == []


def test_custom_lexicon_and_file_errors(tmp_path):
    custom = tmp_path / "lex.txt"
    custom.write_text("# animals\nzebra\nstreet lamp  # a phrase\n\n", encoding="utf-8")
    lex = load_lexicon(custom)
    assert lex == {"zebra", "street lamp"} and load_lexicon(custom) is lex
    assert extract_nouns("zebras under street lamps with a dog", lex) == ["zebra", "street lamp"]
    assert extract_nouns("zebras and dogs", {"dog"}) == ["dog"]  # any set works
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    for path in (tmp_path / "missing.txt", empty):
        with pytest.raises(ValueError, match=path.name):
            load_lexicon(path)
