"""One reading of yes/no words, and one error for anything else, wherever the word comes from."""

import pytest

from lseg_pacl.commands.cli import main
from lseg_pacl.config.values import parse_bool
from lseg_pacl.errors import ConfigError


@pytest.mark.parametrize("word,value", [("true", True), ("Yes", True), ("1", True), ("on", True),
                                        ("false", False), ("NO", False), ("0", False), ("off", False)])
def test_yes_no_words(word, value):
    assert parse_bool(word, "k") is value


def test_anything_else_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="embeddings=ture: expected true or false"):
        parse_bool("ture", "embeddings")


@pytest.mark.parametrize("argv", [["predict", "ckpt=x", "image=y", "labels=a", "embeddings=ture"],
                                  ["predict", "ckpt=x", "image=y", "labels=a", "overwrite=maybe"],
                                  ["bench", "full=ture"], ["sweep", "f.yaml", "dry_run=yess"]])
def test_every_command_refuses_a_misspelt_yes_no_word(argv, capsys):
    assert main(argv) == 2
    assert "expected true or false" in capsys.readouterr().err


def test_the_offline_switch_reads_the_same_words(monkeypatch):
    from lseg_pacl.models.hub import hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "")
    assert not hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "sometimes")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        hub_offline()
