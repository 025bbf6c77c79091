"""Typed config validation and one-line errors."""

from dataclasses import dataclass, field

import pytest

from knoblab.config import to_dataclass
from knoblab.errors import ConfigError, UnknownKeyError


@dataclass
class Schema:
    count: int = 1
    rate: float = 0.5
    name: str | None = None
    flags: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError("count", self.count, "an integer >= 1")


def test_valid_section_becomes_dataclass() -> None:
    s = to_dataclass({"count": 3, "rate": 2, "flags": [1, 2]}, Schema, "x")
    assert s == Schema(count=3, rate=2.0, flags=[1, 2])
    assert isinstance(s.rate, float)


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(UnknownKeyError) as e:
        to_dataclass({"cuont": 3}, Schema, "a.b")
    msg = str(e.value)
    assert "a.b.cuont" in msg and "did you mean a.b.count?" in msg and "\n" not in msg


@pytest.mark.parametrize("value", [1.5, "3", True, None])
def test_wrong_type_names_key_value_and_allowed(value: object) -> None:
    with pytest.raises(ConfigError) as e:
        to_dataclass({"count": value}, Schema, "a")
    assert str(e.value).startswith(f"a.count={value!r} is invalid: allowed is an integer")


def test_post_init_range_error_gets_full_path() -> None:
    with pytest.raises(ConfigError) as e:
        to_dataclass({"count": 0}, Schema, "dataset.sampling")
    assert e.value.key == "dataset.sampling.count"
    assert "dataset.sampling.count=0" in str(e.value)


def test_optional_accepts_null_and_value() -> None:
    assert to_dataclass({"name": None}, Schema, "x").name is None
    assert to_dataclass({"name": "a"}, Schema, "x").name == "a"
    with pytest.raises(ConfigError):
        to_dataclass({"name": 3}, Schema, "x")
