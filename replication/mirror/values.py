"""Converting contract values to what each database driver is given.

Pure functions, chosen once per column (by field kind and dialect, see
:attr:`replication.dialects.Dialect.parameter_converters`) and then called
per row. Three kinds of target: a dialect's bind parameters, PostgreSQL's
COPY text format (its bulk path) and the values of a JSON document of rows
(the dialect's document upsert).
"""

from __future__ import annotations

__all__ = ["COPY", "DOCUMENT", "Converter", "converters"]

from functools import cache

from replication.dialects import dialect_named
from replication.dialects.converters import Converter, document_converters
from replication.dialects.postgresql import copy_converters

COPY = "copy"
"""Pseudo-dialect: PostgreSQL's COPY text format."""
DOCUMENT = "document"
"""Pseudo-dialect: the values of a JSON document of rows."""


@cache
def converters(kinds: tuple[str, ...], target: str) -> tuple[Converter, ...]:
    """One converter per column, for a dialect's bind parameters (any of its names), for
    ``COPY`` or for a ``DOCUMENT``."""
    if target == COPY:
        return copy_converters(kinds)
    if target == DOCUMENT:
        return document_converters(kinds)
    return dialect_named(target).converters(kinds)
