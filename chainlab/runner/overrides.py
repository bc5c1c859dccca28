"""Config overrides, parsed by the type of the field they replace.

``--set a.b=3`` walks the nested :class:`ml_collections.ConfigDict` to ``a.b``,
reads the type of the value already there and parses ``"3"`` as that type. Unknown
keys and values of the wrong type are refused with a one-line
:class:`~chainlab.errors.ChainlabError` naming the valid keys or the expected type,
so a typo never silently trains the wrong model.
"""

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

from chainlab.errors import ChainlabError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """All leaf keys of a nested config in dotted form, e.g. ``["model.width"]``."""
    keys = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(flat_keys(value, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return sorted(keys)


def parse_value(text: str, current: Any, key: str) -> Any:
    """Parse ``text`` as the type of ``current`` (the field's existing value)."""
    expected = type(current).__name__
    try:
        if isinstance(current, bool):
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ChainlabError(f"{key} expects a {expected}, got {text!r}") from None
    return check_value(parsed, current, key)


def check_value(value: Any, current: Any, key: str) -> Any:
    """Accept ``value`` for a field holding ``current`` if the types agree."""
    if isinstance(value, str) and not isinstance(current, str):
        return parse_value(value, current, key)
    if current is None:
        return value
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, tuple | list):
        ok = isinstance(value, tuple | list)
        value = type(current)(value) if ok else value
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ChainlabError(
            f"{key} expects a {type(current).__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of ``config`` with dotted-key ``overrides`` applied and type-checked."""
    config = ml_collections.ConfigDict(config.to_dict())
    valid = flat_keys(config)
    for key, value in overrides.items():
        if key not in valid:
            raise ChainlabError(
                f"unknown config key {key!r}; valid keys: {', '.join(valid)}"
            )
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        with node.ignore_type():
            node[leaf] = check_value(value, node[leaf], key)
    return config


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["a.b=3", "seed=1"]`` -> ``{"a.b": "3", "seed": "1"}``."""
    parsed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ChainlabError(f"--set expects KEY=VALUE, got {item!r}")
        parsed[key.strip()] = value
    return parsed


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a JSON file, such as a run's saved ``config.json``.

    Nested objects are flattened to dotted keys and then validated like ``--set``.
    """
    path = Path(path)
    if not path.is_file():
        raise ChainlabError(f"config file {str(path)!r} does not exist")
    if path.suffix != ".json":
        raise ChainlabError(
            f"config file {str(path)!r} must be a .json file (e.g. a run's config.json)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ChainlabError(
            f"config file {str(path)!r} is not valid JSON: {error}"
        ) from None
    if not isinstance(data, dict):
        raise ChainlabError(f"config file {str(path)!r} must hold a JSON object")
    return _flatten(data)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
