from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from pinsignal.envsettings import from_env, prefixed, to_env
from pinsignal.errors import ConfigError


@dataclass(frozen=True)
class Example:
    name: str = "x"
    port: int = 1
    ratio: float = 0.5
    flag: bool = False
    folder: Path = Path(".")
    items: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    status: Literal[422, 200] = 422
    mode: Literal["a", "b"] = "a"
    optional: int | None = None


VARIABLES = prefixed(Example, "EX_")


def test_each_field_is_parsed_by_its_type() -> None:
    settings = from_env(Example, VARIABLES, {
        "EX_NAME": " shop ", "EX_PORT": "8000", "EX_RATIO": "0.25", "EX_FLAG": "Yes", "EX_FOLDER": "/srv",
        "EX_ITEMS": "a, b,,c", "EX_PATHS": "one,two", "EX_STATUS": "200", "EX_MODE": "b", "EX_OPTIONAL": "7",
    })
    assert settings == Example(name="shop", port=8000, ratio=0.25, flag=True, folder=Path("/srv"),
                               items=("a", "b", "c"), paths=(Path("one"), Path("two")), status=200, mode="b",
                               optional=7)


def test_unset_and_blank_variables_keep_the_defaults_and_overrides_win() -> None:
    settings = from_env(Example, VARIABLES, {"EX_PORT": "  ", "EX_NAME": "env"}, overrides={"name": "kw"})
    assert settings == Example(name="kw")


@pytest.mark.parametrize(("variable", "raw", "message"), [
    ("EX_PORT", "eighty", "EX_PORT must be a whole number, got 'eighty'."),
    ("EX_RATIO", "half", "EX_RATIO must be a number, got 'half'."),
    ("EX_FLAG", "maybe", "EX_FLAG must be true or false, got 'maybe'."),
    ("EX_STATUS", "ok", "EX_STATUS must be one of 422, 200, got 'ok'."),
    ("EX_OPTIONAL", "none", "EX_OPTIONAL must be a whole number, got 'none'."),
])
def test_a_malformed_value_is_one_sentence_naming_the_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(Example, VARIABLES, {variable: raw})
    assert str(info.value) == message


def test_a_parser_given_for_a_field_wins_over_its_type() -> None:
    assert from_env(Example, VARIABLES, {"EX_NAME": "shop"}, parsers={"name": str.upper}).name == "SHOP"


def test_to_env_round_trips() -> None:
    settings = Example(name="n", port=2, ratio=0.1, flag=True, items=("a", "b"), status=200, optional=None)
    assert from_env(Example, VARIABLES, to_env(settings, VARIABLES)) == settings
