"""Plain ``key=value`` options of the commands that take no experiment config (predict, score, bench,
data)."""

from __future__ import annotations

from lseg_pacl.config.values import parse_bool
from lseg_pacl.errors import ConfigError


def key_values(words: list[str], allowed: dict[str, type]) -> dict:
    """{key: value} with each value read as its key's type (``bool``: a yes/no word); an unexpected key, a
    word without ``=`` or a value of the wrong type is a ConfigError naming it."""
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in allowed:
            raise ConfigError(
                f"unexpected argument '{word}'; expected key=value with key in: {', '.join(allowed)}"
            )
        if allowed[key] is bool:
            out[key] = parse_bool(value, key)
            continue
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise ConfigError(f"{key}={value}: expected {allowed[key].__name__}") from None
    return out
