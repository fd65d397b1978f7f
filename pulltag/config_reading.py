"""Reading configuration sections: a section's allowed keys and their types come from its dataclass's
fields, so adding a setting is adding a field (with its default); checks beyond the type live in the
section's reader in `pulltag.config`. Every problem is a `ConfigError`: one line naming the key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from pulltag.logs import loggable


class ConfigError(Exception):
    """A configuration problem; `str()` is one line naming the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        # Keys come from the user's file: escape anything that would break the one-line promise.
        key, reason = loggable(key), loggable(reason)
        super().__init__(f"config: {key}: {reason}")
        self.key = key
        self.reason = reason


T = TypeVar("T")
Reader = Callable[[object, str], Any]


def expect_mapping(value: object, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type_name(value)}")
    for k in value:
        if not isinstance(k, str):
            raise ConfigError(key, f"keys must be strings, got {k!r}")
    return value


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_keys(section: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
    known = sorted(allowed)
    for key in section:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {', '.join(known)})")


def read_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {type_name(value)}")
    return value


def read_opt_str(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a non-empty string or null, got {type_name(value)}")
    return value


def read_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {type_name(value)}")
    return value


def read_number(value: object, path: str) -> float:
    # bool is an int subclass in Python; `timeout: yes` is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number, got {type_name(value)}")
    if value <= 0:
        raise ConfigError(path, f"must be greater than 0, got {value}")
    return float(value)


def read_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {type_name(value)}")
    if value < 1:
        raise ConfigError(path, f"must be at least 1, got {value}")
    return value


def read_globs(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, "must be a list of non-empty strings")
    return tuple(value)


def one_of(choices: tuple[str, ...]) -> Reader:
    wording = " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices)

    def read(value: object, path: str) -> str:
        text = read_str(value, path)
        if text not in choices:
            raise ConfigError(path, f"must be {wording}; got {text!r}")
        return text

    return read


# A field's type annotation picks its reader; Literal types accept exactly their values.
_READERS: dict[object, Reader] = {
    str: read_str,
    str | None: read_opt_str,
    bool: read_bool,
    float: read_number,
    int: read_int,
    tuple[str, ...]: read_globs,
}


def reader_for(annotation: object) -> Reader:
    if get_origin(annotation) is Literal:
        return one_of(get_args(annotation))
    return _READERS[annotation]


def read_fields(cls: type[T], raw: object, path: str) -> dict[str, Any]:
    """The keys given in section `path`, each checked by its field's type; unknown keys are refused."""
    section = expect_mapping(raw, path)
    check_keys(section, (f.name for f in fields(cls)), f"{path}.")  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    return {key: reader_for(hints[key])(value, f"{path}.{key}") for key, value in section.items()}


def read_section(cls: type[T], raw: object, path: str) -> T:
    """A section with no rule beyond its fields' types: defaults for the keys not given."""
    return cls(**read_fields(cls, raw, path))
