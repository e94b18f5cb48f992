"""Converting contract values to what each database driver is given.

Pure functions, chosen once per column (by field kind and dialect, see
:attr:`replication.dialects.Dialect.parameter_converters`) and then called
per row. Two kinds of target: a dialect's bind parameters, and PostgreSQL's
COPY text format (its bulk path). A dialect's document of rows has its own
(:meth:`replication.dialects.Dialect.document_converters`).
"""

from __future__ import annotations

__all__ = ["COPY", "Converter", "converters"]

from functools import cache

from replication.dialects import dialect_named
from replication.dialects.converters import Converter
from replication.dialects.postgresql import copy_converters

COPY = "copy"
"""Pseudo-dialect: PostgreSQL's COPY text format."""


@cache
def converters(kinds: tuple[str, ...], target: str) -> tuple[Converter, ...]:
    """One converter per column, for a dialect's bind parameters (any of its names) or for
    ``COPY``."""
    if target == COPY:
        return copy_converters(kinds)
    return dialect_named(target).converters(kinds)
