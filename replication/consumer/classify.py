"""What a database error means for the records being applied, per driver.

Three answers, each with a different remedy:

- ``CONNECTION``: the connection is gone (server restarted, backend killed,
  network). Reconnect; the records are fine.
- ``TRANSIENT``: the database refused for now (deadlock, serialization
  failure, lock timeout, a mirror column or table that a pending migration
  adds). Retry later; SQS redelivers.
- ``DATA``: the database refused a value (invalid byte sequence, NUL in text,
  out of range). Some record in the batch is poison; isolate it.

Decided from the exception's type and SQLSTATE/error number, without importing
any driver.
"""

from __future__ import annotations

__all__ = ["CONNECTION", "DATA", "TRANSIENT", "Verdict", "classify", "describe"]

import re
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["connection", "transient", "data"]
CONNECTION: Final = "connection"
TRANSIENT: Final = "transient"
DATA: Final = "data"

# PostgreSQL SQLSTATE classes and codes.
_PG_CONNECTION_CLASSES = ("08", "57")  # connection exception, operator intervention
_PG_TRANSIENT_CLASSES = ("40", "53", "55", "58")  # rollback, resources, state, system
_PG_MISSING = {"42703": "column", "42P01": "table"}
_PG_DATA_CLASSES = ("22", "23")  # data exception, integrity constraint violation

# MySQL/MariaDB error numbers.
_MY_CONNECTION = {2002, 2003, 2006, 2013, 2055, 1927, 4031}
_MY_TRANSIENT = {1205, 1213, 1040, 1203, 1290}
_MY_MISSING = {1054: "column", 1146: "table"}
_MY_DATA = {1048, 1062, 1264, 1292, 1366, 1406, 3140, 4025}


@dataclass(frozen=True)
class Verdict:
    """How to treat a database error, and why in words an operator can act on."""

    kind: Kind
    reason: str


def _driver(exc: BaseException) -> str:
    return type(exc).__module__.split(".", 1)[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _missing(what: str, message: str, service: str) -> str:
    name = re.search(r"[\"'`]([^\"'`]+)[\"'`]", message)
    subject = f"{what} {name.group(1)}" if name else f"a {what}"
    return (
        f"the mirror lacks {subject}: a migration is pending; apply it "
        f"(replication migrations upgrade --service {service}) and the retries will succeed "
        f"({message})"
    )


def classify(exc: BaseException, service: str = "<consumer>") -> Verdict:
    """The verdict on ``exc``, raised by psycopg2, psycopg 3, PyMySQL or sqlite3 during an apply.

    ``service`` is the consumer whose mirror was written: a pending migration's
    reason names the command that applies it.
    """
    driver = _driver(exc)
    message = _first_line(exc)
    name = type(exc).__name__
    if driver in ("psycopg2", "psycopg"):
        # psycopg2 names the SQLSTATE pgcode, psycopg 3 sqlstate.
        code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None) or ""
        if name in ("InterfaceError", "OperationalError") and not code:
            return Verdict(CONNECTION, f"database connection lost: {message}")
        if code[:2] in _PG_CONNECTION_CLASSES:
            return Verdict(CONNECTION, f"database connection lost ({code}): {message}")
        if code in _PG_MISSING:
            return Verdict(TRANSIENT, _missing(_PG_MISSING[code], message, service))
        if code[:2] in _PG_TRANSIENT_CLASSES:
            return Verdict(TRANSIENT, f"database busy ({code}): {message}")
        if code[:2] in _PG_DATA_CLASSES:
            return Verdict(DATA, f"database refused a value ({code}): {message}")
        if not code and name in ("DataError", "IntegrityError"):
            # psycopg 3 refusing a value before sending it (NUL in text).
            return Verdict(DATA, f"database refused a value: {message}")
        return Verdict(TRANSIENT, f"database error ({code or name}): {message}")
    if driver == "pymysql":
        number = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = str(exc.args[1]) if len(exc.args) > 1 else message
        if name == "InterfaceError" or number in _MY_CONNECTION:
            return Verdict(CONNECTION, f"database connection lost ({number}): {text}")
        if number in _MY_MISSING:
            return Verdict(TRANSIENT, _missing(_MY_MISSING[number], text, service))
        if number in _MY_TRANSIENT:
            return Verdict(TRANSIENT, f"database busy ({number}): {text}")
        if number in _MY_DATA or name in ("DataError", "IntegrityError"):
            return Verdict(DATA, f"database refused a value ({number}): {text}")
        return Verdict(TRANSIENT, f"database error ({number or name}): {text}")
    if driver == "sqlite3":
        lowered = message.lower()
        if "no such column" in lowered or "has no column" in lowered:
            return Verdict(TRANSIENT, _missing("column", message, service))
        if "no such table" in lowered:
            return Verdict(TRANSIENT, _missing("table", message, service))
        if name in ("IntegrityError", "DataError"):
            return Verdict(DATA, f"database refused a value: {message}")
        if name == "ProgrammingError" and "closed" in lowered:
            return Verdict(CONNECTION, f"database connection closed: {message}")
        return Verdict(TRANSIENT, f"database error: {message}")
    if isinstance(exc, (ValueError, TypeError, OverflowError)):
        # Raised while adapting a value for the driver (psycopg2 refuses NUL in text).
        return Verdict(DATA, f"database refused a value: {message}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Verdict(CONNECTION, f"database unreachable: {message}")
    return Verdict(TRANSIENT, f"{name}: {message}")


def describe(exc: BaseException) -> str:
    """The one-line reason of ``exc`` as :func:`classify` words it."""
    return classify(exc).reason
