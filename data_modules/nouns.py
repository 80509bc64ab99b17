"""Offline noun extraction for PACL's noun-prompt augmentation.

PACL wraps each noun of a caption in 7 prompt templates. COCO and web-shard captions carry no noun
annotations, and these machines can download no tagger model (no spaCy or NLTK data), so nouns are found here
with the standard library alone: a lexicon of concrete, visually groundable nouns (``noun_lexicon.txt``, one
lowercase singular entry a line, multiword phrases such as "fire hydrant" included), a rule-based
singulariser, and a greedy longest match over windows of 1 to 3 tokens. There is no part-of-speech tagging: a
lexicon word used as a verb or an adjective ("light blue", "an orange cat") is still taken as a noun.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["DEFAULT_LEXICON", "extract_nouns", "load_lexicon", "singular"]

DEFAULT_LEXICON = Path(__file__).with_name("noun_lexicon.txt")

MAX_WINDOW = 3  # the longest lexicon phrase, in tokens

# Plurals no suffix rule gets right. The mapping applies whatever the lexicon holds (unless the word itself is
# an entry); an entry may also end in one of these, e.g. "bookshelves" -> "bookshelf", "firemen" -> "fireman".
IRREGULAR: dict[str, str] = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
    "oxen": "ox",
    "cacti": "cactus",
    "fungi": "fungus",
    "octopi": "octopus",
    "antennae": "antenna",
    "larvae": "larva",
    "knives": "knife",
    "leaves": "leaf",
    "wolves": "wolf",
    "shelves": "shelf",
    "loaves": "loaf",
    "calves": "calf",
    "halves": "half",
    "scarves": "scarf",
    "wives": "wife",
    "hooves": "hoof",
    "elves": "elf",
    "thieves": "thief",
    "wharves": "wharf",
    "dwarves": "dwarf",
    "sheaves": "sheaf",
    "buses": "bus",
    "busses": "bus",
    "glasses": "glass",
    "skis": "ski",
}
_IRREGULAR_SUFFIXES = tuple(sorted(IRREGULAR, key=len, reverse=True))

# Endings after which a plural adds "-es" rather than "-s" ("benches", "dishes", "boxes", "glasses",
# "buzzes").
_ES_AFTER = ("ches", "shes", "xes", "sses", "zzes")

# Letters and internal hyphens/apostrophes make a word; any other non-space character ("," "." digits ...) is
# a token of its own, so that a phrase never matches across it.
_TOKEN = re.compile(r"[a-z]+(?:['-][a-z]+)*|[^\sa-z'-]")
_CACHE_LIMIT = 200_000  # distinct tokens whose singular one matcher remembers before starting over


@functools.lru_cache(maxsize=8)
def _read_lexicon(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the noun lexicon {path}: {exc}") from None
    entries = set()
    for line in text.splitlines():
        entry = " ".join(line.split("#", 1)[0].lower().split())
        if entry:
            entries.add(entry)
    if not entries:
        raise ValueError(f"the noun lexicon {path} holds no entries")
    return frozenset(entries)


def load_lexicon(path: str | Path | None = None) -> frozenset[str]:
    """The entries of a lexicon file (default: ``noun_lexicon.txt`` beside this module), read once per path.

    One entry a line, lowercase singular, words separated by single spaces; ``#`` starts a comment. A missing,
    unreadable or empty file is a ValueError naming the path.
    """
    return _read_lexicon(Path(path) if path is not None else DEFAULT_LEXICON)


def _candidates(word: str) -> tuple[list[str], str]:
    """Singular candidates of ``word`` in order of preference (taken if in the lexicon), and the best
    guess."""
    # compounds ending in an irregular plural: firemen -> fireman, bookshelves -> bookshelf
    cands = [
        word[: -len(end)] + IRREGULAR[end]
        for end in _IRREGULAR_SUFFIXES
        if word.endswith(end) and len(word) > len(end)
    ]
    if len(word) < 3 or not word.endswith("s") or word.endswith("ss"):
        return cands, word
    if word.endswith(
        ("us", "is")
    ):  # cactus, tennis, iris unless the lexicon has the shorter form (menus, kiwis)
        return [*cands, word[:-1]], word
    if word.endswith("ies") and len(word) > 4:  # cherries -> cherry; cookies, pies -> cookie, pie
        return [*cands, word[:-3] + "y", word[:-1]], word[:-3] + "y"
    if word.endswith(_ES_AFTER):  # benches, dishes; avalanches, mustaches -> ...e
        return [*cands, word[:-2], word[:-1]], word[:-2]
    if word.endswith(("ses", "oes", "zes")):  # horses, shoes, prizes; lenses, tomatoes
        return [*cands, word[:-1], word[:-2]], word[:-1]
    return [*cands, word[:-1]], word[:-1]


class _Matcher:
    """The precomputed state of one lexicon: its phrase starts and a cache of token singulars."""

    def __init__(self, lexicon: frozenset[str]) -> None:
        self.lexicon = lexicon
        self.longest: dict[str, int] = {}  # first token of a multiword entry -> most tokens of such an entry
        for entry in lexicon:
            words = entry.split(" ")
            if 1 < len(words) <= MAX_WINDOW:
                self.longest[words[0]] = max(self.longest.get(words[0], 1), len(words))
        self._singular: dict[str, str] = {}

    def singular(self, word: str) -> str:
        found = self._singular.get(word)
        if found is None:
            found = self._compute_singular(word)
            if len(self._singular) >= _CACHE_LIMIT:
                self._singular.clear()
            self._singular[word] = found
        return found

    def _compute_singular(self, word: str) -> str:
        lexicon = self.lexicon
        if word in lexicon:
            return word
        if word in IRREGULAR:
            return IRREGULAR[word]
        cands, guess = _candidates(word)
        for cand in cands:
            if cand in lexicon:
                return cand
        return guess

    def tokens(self, caption: str) -> list[str]:
        text = caption.lower()
        if "\u2019" in text:
            text = text.replace("\u2019", "'")
        toks = _TOKEN.findall(text)
        if "'" not in text and "-" not in text:
            return toks
        out: list[str] = []
        for tok in toks:
            if "'" in tok and tok.endswith("'s"):  # possessive: "the man's hat"
                tok = tok[:-2]
            if (
                "-" in tok and self.singular(tok) not in self.lexicon
            ):  # "hot-dogs" -> "hot", "dogs"; "t-shirt" stays
                out.extend(tok.split("-"))
            else:
                out.append(tok)
        return out

    def extract(self, caption: str) -> list[str]:
        toks = self.tokens(caption)
        lexicon, longest, sing = self.lexicon, self.longest, self.singular
        found: list[str] = []
        n, i = len(toks), 0
        while i < n:
            tok = toks[i]
            match, width = None, 1
            for k in range(min(longest.get(tok, 1), n - i), 1, -1):
                head = " ".join(toks[i : i + k - 1])
                last = toks[i + k - 1]
                for phrase in (f"{head} {last}", f"{head} {sing(last)}"):
                    if phrase in lexicon:
                        match, width = phrase, k
                        break
                if match is not None:
                    break
            if match is None:
                word = sing(tok)
                if word in lexicon:
                    match = word
            if match is not None and match not in found:
                found.append(match)
            i += width
        return found


@functools.lru_cache(maxsize=8)
def _matcher(lexicon: frozenset[str]) -> _Matcher:
    return _Matcher(lexicon)


def _resolve(lexicon: frozenset[str] | None) -> _Matcher:
    if lexicon is None:
        lexicon = load_lexicon()
    elif not isinstance(lexicon, frozenset):
        lexicon = frozenset(lexicon)
    return _matcher(lexicon)


def singular(word: str, lexicon: frozenset[str] | None = None) -> str:
    """The lowercase singular of ``word``: itself when it is a lexicon entry (or already singular), else the
    irregular form or a suffix-rule candidate, preferring one that is in the lexicon (default lexicon if
    None).

    "people" -> "person", "knives" -> "knife", "cherries" -> "cherry", "benches" -> "bench", "buses" -> "bus",
    "glass", "bus", "cactus", "tennis" -> themselves. With an empty lexicon only the rules decide.
    """
    if not isinstance(word, str):
        raise TypeError(f"singular() takes a str, not {type(word).__name__}")
    return _resolve(lexicon).singular(word.strip().lower())


def extract_nouns(caption: str, lexicon: frozenset[str] | None = None) -> list[str]:
    """The distinct lexicon nouns a caption names, singular, in order of first appearance.

    Greedy longest match over windows of up to 3 tokens, the window's last token singularised, so "a red fire
    hydrant near two traffic lights" gives ["fire hydrant", "traffic light"] (never also "hydrant" or
    "light"). An empty or blank caption gives []; a caption that is not a str is a TypeError.
    """
    if not isinstance(caption, str):
        raise TypeError(f"extract_nouns() takes a str caption, not {type(caption).__name__}")
    return _resolve(lexicon).extract(caption)
