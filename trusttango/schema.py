"""Reading back what was written: every file trusttango reads back (a model's ``config.json``,
a detector file, a search record, a federated run's settings) is JSON validated field by field
against a schema (a pydantic model, or a dataclass whose ``__pydantic_config__`` makes it
strict), so a wrong type, a missing field or an unknown one is named in a one-line
:class:`~trusttango.errors.InputError`: the file, the field, what was expected. Nothing read
is executed. Validation is strict JSON: ``"10"`` is not an integer, ``true`` is not a number.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from trusttango.errors import InputError

T = TypeVar("T")
UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")  # pydantic's words for a field no schema has
STRICT = {"strict": True, "extra": "forbid"}  # a dataclass's ``__pydantic_config__``: no coercion, no unknown fields


def first_error(err: ValidationError) -> str:
    """``field.path: what was expected`` of the first error (the message alone for the whole document)."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in UNKNOWN:
        message = "unknown field"
    elif isinstance(first.get("input"), (str, int, float, bool)) and first["type"] != "value_error":
        message += f", got {json.dumps(first['input'])[:60]}"
    return f"{where}: {message}" if where else message


@cache
def _adapter(schema: type) -> TypeAdapter:
    return TypeAdapter(schema)


def parse(schema: type[T], text: str | bytes, source: object) -> T:
    """``text`` (a JSON document) as a validated ``schema``; ``source`` names it in the error."""
    try:
        return _adapter(schema).validate_json(text)
    except ValidationError as err:
        raise InputError(f"{source}: {first_error(err)}") from None


def validate(schema: type[T], data: Any, source: object) -> T:
    """``data`` (parsed JSON: dicts, lists, numbers, strings) validated as ``schema``, with the
    same strict JSON rules as :func:`parse`."""
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(f"{source}: not JSON data ({err})") from None
    return parse(schema, text, source)


def read(schema: type[T], path: str | Path) -> T:
    """The file at ``path`` as a validated ``schema``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing")
    return parse(schema, path.read_bytes(), path)
