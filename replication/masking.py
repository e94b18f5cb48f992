"""Personal data in output: which parts of a contract's data are hidden, and hiding them.

A :class:`Mask` is read once from a model's declared types. What it hides:

- a value marked :data:`~replication.fields.Pii`, at any depth: a field of the
  contract, a field of a nested model, a list item, a dict value (a dict whose
  keys are marked is hidden whole, since keys cannot be hidden one by one);
- a field the model does not declare, at any depth: a field a newer version of
  the contract added, an extra field of a nested model, any field of an event
  whose contract the reader does not know. Nothing says what it holds, so it
  is hidden rather than shown;
- a value of another shape than declared (an object where a string was
  declared): what is inside is just as unknown.

Content declared free-form (``Any``, a bare ``dict`` or ``list``) is shown as it
is. ``None`` is always shown: it reveals nothing. Reprs, logs and the DLQ tools
mask with it; ``dlq show --show-pii`` and export files are the ways to see the
values.
"""

from __future__ import annotations

__all__ = [
    "UNKNOWN_MODEL",
    "Mask",
    "masked_items",
    "masked_json",
    "masked_object",
    "model_mask",
]

import dataclasses
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typing_extensions import is_typeddict

from replication.fields import Pii


@dataclass(frozen=True, eq=False)
class Mask:
    """Which parts of one value are hidden, read from its declared type."""

    pii: bool = False
    """The whole value is hidden (marked pii, or of unknown content)."""
    fields: Mapping[str, Mask] | None = None
    """It may be an object with these fields (a model); any other name is hidden."""
    items: Mask | None = None
    """It may be a list, tuple or set of these."""
    values: Mask | None = None
    """It may be a dict of these (its keys are shown)."""
    scalar: bool = False
    """It may be a string, number, boolean, date..."""
    free: bool = False
    """It may be anything: shown as it is (a model inside still hides its own pii)."""


_HIDDEN = Mask(pii=True)
_NONE = Mask()  # None, alone: nothing else may be there
_SCALAR = Mask(scalar=True)
_FREE = Mask(free=True)
UNKNOWN_MODEL = Mask(fields={})
"""The data of an unknown contract: every field hidden, their names shown."""

_models: dict[type, Mask] = {}


def model_mask(model: type) -> Mask:
    """The mask of a model's data (a contract, a nested pydantic model)."""
    known = _models.get(model)
    if known is None:
        known = _models[model] = _mask_of(model, {})
    return known


def _mask_of(annotation: Any, building: dict[Any, Mask]) -> Mask:
    """The mask of a value declared as ``annotation``."""
    if type(annotation).__name__ == "TypeAliasType":  # ``type X = ...``, either module's
        return _mask_of(annotation.__value__, building)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(meta is Pii for meta in args[1:]):
            return _HIDDEN
        return _mask_of(args[0], building)
    if annotation is Any or annotation is object or isinstance(annotation, typing.TypeVar):
        return _FREE
    if annotation is None or annotation is type(None):
        return _NONE
    if origin is typing.Literal:
        return _SCALAR
    if origin in (typing.Union, types.UnionType):
        return _merge([_mask_of(arg, building) for arg in args])
    if isinstance(origin, type) and args:
        if issubclass(origin, Mapping):
            if _mask_of(args[0], building).pii:
                return _HIDDEN
            return Mask(values=_mask_of(args[1], building) if len(args) > 1 else _FREE)
        if issubclass(origin, Sequence | AbstractSet) and not issubclass(origin, str | bytes):
            members = [arg for arg in args if arg is not Ellipsis and arg != ()]
            return Mask(items=_merge([_mask_of(m, building) for m in members]))
    outer = origin if isinstance(origin, type) else annotation
    if not isinstance(outer, type):
        return _HIDDEN  # a form this module cannot read: its content is unknown
    if issubclass(outer, BaseModel):
        return _model(outer, building)
    if is_typeddict(outer) or dataclasses.is_dataclass(outer):
        return _declared(outer, building)
    if issubclass(outer, Mapping):
        return Mask(values=_FREE)
    if issubclass(outer, Sequence | AbstractSet) and not issubclass(outer, str | bytes):
        return Mask(items=_FREE)
    return _SCALAR


def _model(model: type[BaseModel], building: dict[Any, Mask]) -> Mask:
    known = _models.get(model) or building.get(model)
    if known is not None:
        return known
    fields: dict[str, Mask] = {}
    mask = Mask(fields=fields)
    building[model] = mask  # a model may refer to itself: its fields are filled in below
    for name, info in model.model_fields.items():
        inner = _field(info, building)
        for alias in (name, info.alias, info.validation_alias, info.serialization_alias):
            if isinstance(alias, str):
                fields[alias] = inner
    for name, computed in model.model_computed_fields.items():
        fields[name] = _mask_of(computed.return_type, building)
    _models[model] = mask
    return mask


def _field(info: FieldInfo, building: dict[Any, Mask]) -> Mask:
    if any(meta is Pii for meta in info.metadata):
        return _HIDDEN
    return _mask_of(info.annotation, building)


def _declared(cls: type, building: dict[Any, Mask]) -> Mask:
    """A TypedDict's or a dataclass's fields, like a model's."""
    known = building.get(cls)
    if known is not None:
        return known
    fields: dict[str, Mask] = {}
    mask = Mask(fields=fields)
    building[cls] = mask
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # an annotation that does not resolve: nothing is known about it
        return _HIDDEN
    for name, annotation in hints.items():
        fields[name] = _mask_of(annotation, building)
    return mask


def _merge(masks: list[Mask]) -> Mask:
    """What a union hides: whatever any of its members hides."""
    masks = [m for m in masks if m is not _NONE]
    if not masks:
        return _NONE
    if len(masks) == 1:
        return masks[0]
    if any(m.pii for m in masks):
        return _HIDDEN
    with_fields = [m.fields for m in masks if m.fields is not None]
    fields: Mapping[str, Mask] | None
    if len(with_fields) <= 1:
        fields = with_fields[0] if with_fields else None
    else:
        names = dict.fromkeys(name for found in with_fields for name in found)
        fields = {
            name: _merge([found[name] for found in with_fields if name in found]) for name in names
        }
    items = [m.items for m in masks if m.items is not None]
    values = [m.values for m in masks if m.values is not None]
    return Mask(
        fields=fields,
        items=_merge(items) if items else None,
        values=_merge(values) if values else None,
        scalar=any(m.scalar for m in masks),
        free=any(m.free for m in masks),
    )


def _inner(mask: Mask, name: str) -> Mask:
    """The mask of the value under ``name`` of an object or dict masked by ``mask``."""
    if mask.fields is not None and name in mask.fields:
        return mask.fields[name]
    if mask.values is not None:
        return mask.values
    return _FREE if mask.free and mask.fields is None else _HIDDEN


def masked_json(value: Any, mask: Mask, marker: str) -> Any:
    """A JSON value (decoded) with what ``mask`` hides replaced by ``marker``.

    Raises RecursionError on a value nested deeper than Python's stack.
    """
    if value is None:
        return None
    if mask.pii:
        return marker
    if isinstance(value, dict):
        if mask.fields is None and mask.values is None:
            return value if mask.free else marker
        return {
            name: masked_json(item, _inner(mask, str(name)), marker) for name, item in value.items()
        }
    if isinstance(value, list):
        if mask.items is not None:
            return [masked_json(item, mask.items, marker) for item in value]
        return value if mask.free else marker
    return value if mask.scalar or mask.free else marker


def masked_object(value: Any, mask: Mask, marker: str) -> Any:
    """A Python value (validated data) with what ``mask`` hides replaced by ``marker``, for a repr.

    A model or dataclass instance is masked by its own class's declarations, wherever it is.
    """
    if value is None:
        return None
    if mask.pii:
        return marker
    if isinstance(value, BaseModel):
        return _Shown(
            type(value).__name__, masked_items(value.__repr_args__(), type(value), marker)
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr]
        return _Shown(type(value).__name__, masked_items(shown, type(value), marker))
    if isinstance(value, dict):
        return {
            name: masked_object(item, _inner(mask, str(name)), marker)
            for name, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        inner = mask.items or (_FREE if mask.free else _HIDDEN)
        items = [masked_object(item, inner, marker) for item in value]
        if isinstance(value, list | tuple):
            return type(value)(items) if type(value) in (list, tuple) else tuple(items)
        try:
            return type(value)(items)
        except TypeError:  # a set subclass that takes other arguments
            return tuple(items)
    return value


def masked_items(
    items: Iterable[tuple[str | None, Any]], model: type, marker: str
) -> Iterator[tuple[str | None, Any]]:
    """A model's ``(name, value)`` repr items, masked by the model's declarations."""
    mask = model_mask(model)
    for name, value in items:
        inner = _HIDDEN if name is None else _inner(mask, name)
        yield name, masked_object(value, inner, marker)


class _Shown:
    """A masked nested model: repr'd as pydantic would, from masked items."""

    __slots__ = ("_text",)

    def __init__(self, name: str, items: Iterable[tuple[str | None, Any]]) -> None:
        shown = (repr(value) if key is None else f"{key}={value!r}" for key, value in items)
        self._text = f"{name}({', '.join(shown)})"

    def __repr__(self) -> str:
        return self._text
