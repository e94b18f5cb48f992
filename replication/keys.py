"""Entity keys and their string form, the change event's ``subject``.

A single-field key is written as its canonical text (a UUID in its lower-case
hyphenated form, an integer in decimal, a string as itself). A composite key
writes each part that way, percent-encodes it (RFC 3986, nothing kept) and
joins the parts with ``/``, so parts may contain any character and the
encoding is stable and reversible.
"""

from __future__ import annotations

__all__ = ["decode_subject", "encode_subject", "key_text"]

import uuid
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote, unquote

from pydantic import TypeAdapter, ValidationError

from replication.contracts import Contract, ContractInfo, unportable_reason


def key_text(value: Any) -> str:
    """The canonical text of one key value."""
    if type(value) in _EXACT_KEY_TYPES:  # the common case, without the checks below
        return str(value)
    if isinstance(value, bool):
        raise TypeError("a key value cannot be a bool")
    if isinstance(value, uuid.UUID | int | str):
        return str(value)
    raise TypeError(f"a key value must be str, int or UUID, not {type(value).__name__}")


_EXACT_KEY_TYPES = frozenset({uuid.UUID, int, str})


@cache
def _key_field_adapter(model: type[Contract], name: str) -> TypeAdapter[Any]:
    """Validates one key field with the constraints its contract declares."""
    field = model.model_fields[name]
    annotated: Any = Annotated[field.annotation, field]
    return TypeAdapter(annotated)


def encode_subject(key: tuple[Any, ...]) -> str:
    """The ``subject`` of a change event for this key (one value per key field)."""
    if len(key) == 1:
        return key_text(key[0])
    return "/".join(quote(key_text(part), safe="") for part in key)


def decode_subject(info: ContractInfo, subject: str) -> tuple[Any, ...]:
    """The typed key that ``subject`` encodes for this contract; ValueError if it cannot."""
    specs = info.key_specs
    parts = [subject] if len(specs) == 1 else [unquote(p) for p in subject.split("/")]
    if len(parts) != len(specs):
        raise ValueError(
            f"subject {subject!r} has {len(parts)} part(s), "
            f"the key of {info.label} has {len(specs)} ({', '.join(info.key)})"
        )
    values: list[Any] = []
    for spec, part in zip(specs, parts, strict=True):
        try:
            if spec.kind == "uuid":
                value: Any = uuid.UUID(part)
            elif spec.kind == "int":
                if not part.lstrip("-").isdigit():
                    raise ValueError(part)
                value = int(part)
            else:
                value = part
        except ValueError:
            raise ValueError(
                f"subject part {part!r} is not a valid {spec.kind} for key field {spec.name}"
            ) from None
        if key_text(value) != part:
            raise ValueError(
                f"subject part {part!r} is not in canonical form for key field {spec.name} "
                f"(expected {key_text(value)!r})"
            )
        # The contract's own checks, which an upsert's data gets: a delete has no data.
        problem = unportable_reason(value)
        if problem:
            raise ValueError(f"key field {spec.name} {problem}")
        try:
            _key_field_adapter(info.model, spec.name).validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors(include_url=False))
            raise ValueError(f"key field {spec.name}: {problems}") from None
        values.append(value)
    canonical = encode_subject(tuple(values))
    if canonical != subject:
        # Each part may be canonical while its escaping is not ('A%2D1', a raw space).
        raise ValueError(
            f"subject {subject!r} is not in canonical form for the key of {info.label} "
            f"(expected {canonical!r})"
        )
    return tuple(values)
