"""``--where`` conditions: structured, typed by the contract, bound as parameters.

A condition is ``field OP value`` with OP one of ``= != < <= > >=``, or
``field in a,b,c``. The field must be a scalar field of the contract; the
value is validated as that field's type (so ``tier=golden`` is refused when
the enum has no such value) and reaches the database as a bound parameter,
never as SQL text.
"""

from __future__ import annotations

__all__ = ["Condition", "bind_value", "filters", "parse_condition"]

import operator
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.sql.expression import ColumnElement

from replication.contracts import ContractInfo
from replication.errors import ConfigurationError
from replication.events import describe_validation_error
from replication.mirror.values import converters

_SYNTAX = re.compile(
    r"^\s*(?P<field>[a-z][a-z0-9_]*)\s*(?:(?P<op>!=|<=|>=|=|<|>)|\s(?P<in>in)\s)\s*(?P<value>.*?)\s*$"
)
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Condition:
    """One parsed condition on a contract field."""

    field: str
    kind: str
    op: str
    values: tuple[Any, ...]
    text: str

    def sql(self, expression: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        """The condition on ``expression`` (that field's SQL on one side), values bound."""
        bound = [bind_value(expression, self.kind, v, dialect) for v in self.values]
        if self.op == "in":
            return expression.in_(bound)
        result: ColumnElement[bool] = _OPERATORS[self.op](expression, bound[0])
        return result


def filters(
    conditions: Sequence[Condition],
    column: Callable[[str], ColumnElement[Any]],
    dialect: str,
) -> list[ColumnElement[bool]]:
    """The conditions in SQL on one side, ``column`` giving each field's expression there."""
    return [c.sql(column(c.field), dialect) for c in conditions]


def bind_value(expression: ColumnElement[Any], kind: str, value: Any, dialect: str) -> Any:
    """``value`` (of a contract field of ``kind``) as a parameter compared with ``expression``."""
    if kind == "uuid" and isinstance(expression.type, sa.Uuid):
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    [convert] = converters((kind,), dialect)
    return convert(value)


def parse_condition(text: str, info: ContractInfo) -> Condition:
    """Parse ``text`` against ``info``; ConfigurationError saying what is wrong."""
    match = _SYNTAX.match(text)
    if match is None:
        raise ConfigurationError(
            f"--where {text!r}: write 'field=value' (also != < <= > >=) or 'field in a,b,c'"
        )
    name, value = match["field"], match["value"]
    op = "in" if match["in"] else match["op"]
    spec = info.fields.get(name)
    if spec is None:
        raise ConfigurationError(
            f"--where {text!r}: {info.label} has no field {name!r} "
            f"(fields: {', '.join(info.fields)})"
        )
    if spec.kind == "json":
        raise ConfigurationError(f"--where {text!r}: {name} holds JSON; filter on a scalar field")
    if op not in ("=", "!=", "in") and spec.kind in ("bool", "enum", "uuid"):
        raise ConfigurationError(f"--where {text!r}: {name} ({spec.kind}) takes = != or in")
    raw = [v.strip() for v in value.split(",")] if op == "in" else [value]
    if not all(raw):
        raise ConfigurationError(f"--where {text!r}: a value is empty")
    adapter: TypeAdapter[Any] = TypeAdapter(info.model.model_fields[name].annotation or Any)
    try:
        values = tuple(adapter.validate_python(v) for v in raw)
    except ValidationError as exc:
        raise ConfigurationError(
            f"--where {text!r}: not a value of {name}: {describe_validation_error(exc)}"
        ) from None
    return Condition(name, spec.kind, op, values, text.strip())
