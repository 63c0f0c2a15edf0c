"""Reading and validating YAML configs: safe loading, dotted overrides, one-line errors.

Schema-independent (the pydantic models live in :mod:`segbalance.config`), torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from segbalance.errors import InputError, did_you_mean


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, loaded with ``yaml.safe_load`` (no python object tags)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(str(path), "config file not found", "an existing YAML file")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(str(path), f"not valid YAML: {first}", "a YAML mapping") from None
    if not isinstance(raw, dict):
        raise InputError(str(path), f"top level is {type(raw).__name__}", "a YAML mapping")
    return raw


def validate_config(
    raw: dict[str, Any],
    model: type[BaseModel],
    where: str,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Validate a mapping against ``model``; errors become one-line :class:`InputError`."""
    data = json.loads(json.dumps(raw, default=str))  # a deep copy with plain containers
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value, where)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, model, where) from None


def set_dotted(mapping: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """``mapping["a"]["b"] = value`` for ``dotted="a.b"``, creating missing sections."""
    node = mapping
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise InputError(where, f"{dotted}: cannot set inside a non-mapping", "a mapping")
    node[last] = value


def _config_error(exc: ValidationError, model: type[BaseModel], where: str) -> InputError:
    errors = exc.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    path = ".".join(loc) or "(top level)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        fields = _fields_at(model, first["loc"][:-1])
        hint = did_you_mean(loc[-1], fields)
        return InputError(where, f"{path}: unknown key{hint}{more}", f"one of {', '.join(fields)}")
    if first["type"] == "missing":
        return InputError(where, f"{path}: required key is missing{more}", "the key to be set")
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return InputError(where, f"{path}: {message}{shown}{more}")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``loc`` (for "did you mean" on unknown keys)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _section_type(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _section_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def dump_config(config: BaseModel, extra: dict[str, Any] | None = None) -> str:
    """YAML text of a validated config (resolved defaults), with ``extra`` keys on top."""
    payload = {**(extra or {}), **config.model_dump(mode="json")}
    return yaml.safe_dump(payload, sort_keys=False)
