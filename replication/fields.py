"""Contract fields: what kind of value each holds and what a mirror needs to know of it.

Pure functions over pydantic's field information: the mirror tables, the
apply's value conversion and the contract checks all speak in these kinds.
"""

from __future__ import annotations

__all__ = [
    "KEY_KINDS",
    "PII_MASK",
    "FieldKind",
    "FieldSpec",
    "Pii",
    "field_spec",
]

import datetime as dt
import enum
import types
import typing
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pydantic
from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
    SecretBytes,
    SecretStr,
)
from pydantic.fields import FieldInfo

from replication.errors import ContractDefinitionError

FieldKind = Literal[
    "str", "int", "float", "bool", "decimal", "datetime", "date", "uuid", "enum", "json"
]
KEY_KINDS: frozenset[FieldKind] = frozenset({"str", "int", "uuid"})

# pydantic.Secret (a generic secret of any type) exists from pydantic 2.7 on.
_SECRET_TYPES: tuple[type, ...] = tuple(
    t for t in (SecretStr, SecretBytes, getattr(pydantic, "Secret", None)) if t is not None
)


class _PiiMarker:
    """Annotation marker: the field holds personal data (never logged or printed)."""

    def __repr__(self) -> str:
        return "Pii"


Pii = _PiiMarker()
PII_MASK = "<pii>"
"""What a pii value shows in a repr."""


@dataclass(frozen=True)
class FieldSpec:
    """What a mirror needs to know about one contract field."""

    name: str
    kind: FieldKind
    nullable: bool
    pii: bool = False
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    enum_values: tuple[str, ...] = ()


def field_spec(owner: str, field_name: str, info: FieldInfo) -> FieldSpec:
    """What a mirror needs to know about one field; ContractDefinitionError if it cannot hold it."""
    secret = _secret_in(info.annotation, set())
    if secret is not None:
        raise ContractDefinitionError(
            f"{owner}.{field_name}: holds a {secret.__name__}, and secrets do not belong in "
            "replicated data (every consumer would keep a copy); replicate a reference to the "
            "secret instead"
        )
    annotation = info.annotation
    constraints = list(info.metadata)
    nullable = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) != len(args)
        if len(rest) != 1:
            # A union of several types can only be stored as JSON.
            return FieldSpec(field_name, "json", nullable, pii=_is_pii(info))
        annotation = rest[0]
        # In ``Annotated[Decimal, Field(...)] | None`` the constraints stay on the member.
        constraints.extend(_member_constraints(annotation))
    kind, enum_values = _kind_of(owner, field_name, annotation)
    max_length = precision = scale = None
    for meta in constraints:
        if getattr(meta, "max_length", None) is not None:
            max_length = meta.max_length
        if getattr(meta, "max_digits", None) is not None:
            precision = meta.max_digits
        if getattr(meta, "decimal_places", None) is not None:
            scale = meta.decimal_places
    if kind == "decimal" and (precision is None or scale is None):
        raise ContractDefinitionError(
            f"{owner}.{field_name}: a Decimal field must declare max_digits and decimal_places, "
            "e.g. Field(max_digits=12, decimal_places=2): mirrors store it as NUMERIC(p, s), "
            "which would otherwise round or overflow silently"
        )
    if kind == "enum":
        max_length = max(len(v) for v in enum_values)
    return FieldSpec(
        name=field_name,
        kind=kind,
        nullable=nullable,
        pii=_is_pii(info),
        max_length=max_length if kind in ("str", "enum") else None,
        precision=precision if kind == "decimal" else None,
        scale=scale if kind == "decimal" else None,
        enum_values=enum_values,
    )


def _member_constraints(member: Any) -> list[Any]:
    """The constraint metadata of an ``Annotated`` union member (none for a bare type)."""
    if typing.get_origin(member) is not typing.Annotated:
        return []
    found: list[Any] = []
    for meta in typing.get_args(member)[1:]:
        found.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return found


def _secret_in(annotation: Any, seen: set[type]) -> type | None:
    """The pydantic secret type ``annotation`` holds at any depth (nested models too), or None."""
    origin = typing.get_origin(annotation)
    outer = origin if isinstance(origin, type) else annotation
    if isinstance(outer, type):
        if issubclass(outer, _SECRET_TYPES):
            return outer
        if issubclass(outer, BaseModel) and outer not in seen:
            seen.add(outer)  # a model may refer to itself
            for field in outer.model_fields.values():
                found = _secret_in(field.annotation, seen)
                if found is not None:
                    return found
    for arg in typing.get_args(annotation):
        found = _secret_in(arg, seen)
        if found is not None:
            return found
    return None


def _is_pii(info: FieldInfo) -> bool:
    if any(meta is Pii for meta in info.metadata):
        return True
    # Inside a union or a container (``Annotated[str, Pii] | None``) the marker stays
    # on the member.
    return any(
        typing.get_origin(member) is typing.Annotated
        and any(meta is Pii for meta in typing.get_args(member)[1:])
        for member in typing.get_args(info.annotation)
    )


_SCALARS: tuple[tuple[type, FieldKind], ...] = (
    (bool, "bool"),  # before int: bool is an int
    (int, "int"),
    (float, "float"),
    (Decimal, "decimal"),
    (dt.datetime, "datetime"),  # before date: datetime is a date
    (dt.date, "date"),
    (uuid.UUID, "uuid"),
    (str, "str"),
)


def _kind_of(owner: str, field_name: str, annotation: Any) -> tuple[FieldKind, tuple[str, ...]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind_of(owner, field_name, typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset, dict) or annotation in (list, dict):
        return "json", ()
    if annotation is NaiveDatetime:
        raise ContractDefinitionError(
            f"{owner}.{field_name}: naive datetimes are ambiguous; use AwareDatetime or datetime"
        )
    if annotation in (AwareDatetime, FutureDatetime, PastDatetime):
        return "datetime", ()
    if annotation in (FutureDate, PastDate):
        return "date", ()
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            values = tuple(member.value for member in annotation)
            if not values:
                raise ContractDefinitionError(
                    f"{owner}.{field_name}: an enum field needs at least one member"
                )
            if not all(isinstance(v, str) for v in values):
                raise ContractDefinitionError(
                    f"{owner}.{field_name}: enum values must be strings "
                    "(they are stored as text in mirrors)"
                )
            return "enum", typing.cast(tuple[str, ...], values)
        if issubclass(annotation, BaseModel):
            return "json", ()
        for base, kind in _SCALARS:
            if issubclass(annotation, base):
                return kind, ()
        if annotation.__module__.startswith("pydantic"):
            return "str", ()  # EmailStr, AnyUrl and friends are text on the wire
    raise ContractDefinitionError(
        f"{owner}.{field_name}: type {annotation!r} cannot be mirrored; use str, int, float, "
        "bool, Decimal, datetime, date, UUID, a str Enum, a list/dict, or a nested model"
    )
