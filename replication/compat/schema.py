"""JSON Schema of a contract, and what changed between two of them.

The schema is pydantic's validation-mode JSON Schema, with the two decimal
constraints JSON Schema has no word for added as ``maxDigits`` and
``decimalPlaces`` (mirror columns are sized from them). Comparing two schemas
of one field yields :class:`Difference` items, each saying whether the set of
accepted values grew (``widened``), shrank (``narrowed``) or moved
(``changed``: neither contains the other).
"""

from __future__ import annotations

__all__ = ["Difference", "contract_schema", "field_differences", "same_shape"]

from dataclasses import dataclass
from typing import Any, Literal

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from replication.contracts import ContractInfo

Direction = Literal["widened", "narrowed", "changed"]

_IGNORED = frozenset({"title", "description", "examples", "default", "deprecated", "$comment"})
# Keywords bounding a value from above: a larger bound accepts more values.
_UPPER = frozenset(
    {"maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxDigits", "decimalPlaces"}
)
_LOWER = frozenset({"minLength", "minimum", "exclusiveMinimum", "minItems"})
# Keywords that only restrict: adding one narrows, removing one widens.
_RESTRICTING = frozenset({"pattern", "format", "const", "multipleOf", "uniqueItems"})


class _ContractJsonSchema(GenerateJsonSchema):
    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        json_schema = super().decimal_schema(schema)
        if schema.get("max_digits") is not None:
            json_schema["maxDigits"] = schema["max_digits"]
        if schema.get("decimal_places") is not None:
            json_schema["decimalPlaces"] = schema["decimal_places"]
        return json_schema


def contract_schema(info: ContractInfo) -> dict[str, Any]:
    """The JSON Schema of a contract version, as the lock file keeps it."""
    return info.model.model_json_schema(schema_generator=_ContractJsonSchema)


@dataclass(frozen=True)
class Difference:
    """One way a field's accepted values changed."""

    path: str
    """Where, from the field: ``name``, ``address.city``, ``tags[]``."""
    rule: str
    """The rule, e.g. ``type narrowed``, ``enum values removed``, ``no longer nullable``."""
    direction: Direction
    detail: str


def field_differences(
    path: str,
    old: dict[str, Any],
    new: dict[str, Any],
    old_defs: dict[str, Any],
    new_defs: dict[str, Any],
) -> list[Difference]:
    """How the schema of one field changed from ``old`` to ``new`` (empty: it did not)."""
    return _Comparison(old_defs, new_defs).compare(path, old, new)


def same_shape(
    old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any]
) -> bool:
    """Whether two field schemas accept the same values (titles and defaults aside)."""
    return not field_differences("", old, new, old_defs, new_defs)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            break
        seen.add(name)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**defs[name], **rest}
    return schema


def _normal(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema with references resolved, null split out of anyOf, and noise dropped."""
    schema = _resolve(schema, defs)
    shape = {k: v for k, v in schema.items() if k not in _IGNORED}
    nullable = shape.get("type") == "null"
    branches = shape.pop("anyOf", None)
    if branches is not None:
        others = [_resolve(b, defs) for b in branches if _resolve(b, defs).get("type") != "null"]
        nullable = len(others) < len(branches)
        if len(others) == 1:
            shape = {**{k: v for k, v in others[0].items() if k not in _IGNORED}, **shape}
        else:
            shape["anyOf"] = others
    shape["nullable"] = nullable
    return shape


class _Comparison:
    def __init__(self, old_defs: dict[str, Any], new_defs: dict[str, Any]) -> None:
        self.old_defs = old_defs
        self.new_defs = new_defs

    def compare(self, path: str, old: dict[str, Any], new: dict[str, Any]) -> list[Difference]:
        a = _normal(old, self.old_defs)
        b = _normal(new, self.new_defs)
        found: list[Difference] = []

        def note(rule: str, direction: Direction, detail: str) -> None:
            found.append(Difference(path, rule, direction, detail))

        if a.get("type") != b.get("type"):
            widening = (a.get("type"), b.get("type")) == ("integer", "number")
            narrowing = (a.get("type"), b.get("type")) == ("number", "integer")
            direction: Direction = "widened" if widening else "narrowed" if narrowing else "changed"
            rule = "type changed" if direction == "changed" else f"type {direction}"
            note(rule, direction, f"type {a.get('type')} -> {b.get('type')}")
            return found  # the other keywords no longer compare like for like
        if a["nullable"] != b["nullable"]:
            if b["nullable"]:
                note("now nullable", "widened", "null is now accepted")
            else:
                note("no longer nullable", "narrowed", "null is no longer accepted")
        for keyword in sorted((set(a) | set(b)) - {"nullable", "type"}):
            before, after = a.get(keyword), b.get(keyword)
            if before == after:
                continue
            if keyword == "enum":
                self._enum(before or [], after or [], note)
            elif keyword == "items":
                found += self.compare(f"{path}[]", before or {}, after or {})
            elif keyword == "properties":
                found += self._properties(path, a, b)
            elif keyword == "required" or keyword == "additionalProperties":
                continue  # compared with the properties
            elif keyword in _UPPER or keyword in _LOWER:
                self._bound(keyword, before, after, note)
            elif keyword in _RESTRICTING:
                if before is None:
                    note("type narrowed", "narrowed", f"{keyword} {after!r} added")
                elif after is None:
                    note("type widened", "widened", f"{keyword} {before!r} removed")
                else:
                    note("type changed", "changed", f"{keyword} {before!r} -> {after!r}")
            else:
                note("type changed", "changed", f"{keyword} changed")
        return found

    @staticmethod
    def _enum(before: list[Any], after: list[Any], note: Any) -> None:
        added = [v for v in after if v not in before]
        removed = [v for v in before if v not in after]
        if added:
            note("enum values added", "widened", "added " + ", ".join(map(repr, added)))
        if removed:
            note("enum values removed", "narrowed", "removed " + ", ".join(map(repr, removed)))

    @staticmethod
    def _bound(keyword: str, before: Any, after: Any, note: Any) -> None:
        if before is None or after is None:
            grows = before is not None  # a bound removed accepts more
        else:
            grows = after > before if keyword in _UPPER else after < before
        direction: Direction = "widened" if grows else "narrowed"
        shown = f"{keyword} {'none' if before is None else before} -> "
        shown += "none" if after is None else str(after)
        note(f"type {direction}", direction, shown)

    def _properties(self, path: str, a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
        found: list[Difference] = []
        old_props, new_props = a.get("properties", {}), b.get("properties", {})
        old_required, new_required = set(a.get("required", [])), set(b.get("required", []))
        for name in sorted(set(old_props) | set(new_props)):
            where = f"{path}.{name}"
            if name not in new_props:
                found.append(Difference(where, "field removed", "changed", "no longer declared"))
            elif name not in old_props:
                if name in new_required:
                    found.append(
                        Difference(where, "required field added", "narrowed", "new, required")
                    )
                else:
                    found.append(
                        Difference(where, "optional field added", "widened", "new, optional")
                    )
            else:
                found += self.compare(where, old_props[name], new_props[name])
                if (name in old_required) != (name in new_required):
                    now = "required" if name in new_required else "optional"
                    direction: Direction = "narrowed" if now == "required" else "widened"
                    found.append(Difference(where, f"now {now}", direction, f"now {now}"))
        return found
