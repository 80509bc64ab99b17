"""The one reading of a yes/no word, wherever a value arrives as text (command-line options, weight sources,
environment variables): the same words everywhere, and anything else is an error that names the key."""

from __future__ import annotations

from lseg_pacl.errors import ConfigError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def is_bool_word(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS | FALSE_WORDS


def parse_bool(value: str | bool, key: str) -> bool:
    """True or False for a yes/no word (any case); a ConfigError naming ``key`` for any other value."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{key}={value}: expected true or false (also: {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))})"
    )
