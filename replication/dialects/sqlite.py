"""SQLite, through the standard library's sqlite3: the demo's and the quick start's database.

What sets it apart: a local file (no server, credentials or TLS), ``?``
placeholders, text for datetimes, dates and decimals, and comparison
functions computed in Python, so its tables are compared with SQLite's only.
"""

from __future__ import annotations

__all__ = ["SQLITE", "SQLiteDialect"]

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from replication.dialects.base import CanonicalValue, Dialect, Endpoint
from replication.dialects.converters import (
    as_json,
    as_str,
    as_text,
    bool_int,
    enum_value,
    iso,
    utc_iso,
)
from replication.dialects.verdicts import (
    CONNECTION,
    DATA,
    TRANSIENT,
    Verdict,
    first_line,
    missing_reason,
)


class SQLiteDialect(Dialect):
    """SQLite."""

    name = "sqlite"
    aliases = ()
    drivers = ("sqlite3",)
    schemes = {"sqlite": "", "sqlite+pysqlite": ""}
    dbapi_modules = {"pysqlite": "sqlite3", "": "sqlite3"}
    has_server = False
    marker = "?"
    parameter_budget = 30_000  # below its 32,766 bind parameters
    parameter_converters = {
        "str": as_str,
        "uuid": as_text,
        "enum": enum_value,
        "json": as_json,
        "datetime": utc_iso,
        "date": iso,
        "decimal": as_text,
        "bool": bool_int,
    }
    sqlalchemy_name = "sqlite"
    portable_hashes = False
    skip_locked = False
    outbox_driver_sql = False

    def connect(
        self,
        endpoint: Endpoint,
        *,
        password: str = "",
        options: Mapping[str, str] | None = None,
        connect_timeout: int = 5,
    ) -> Any:
        """The file ``endpoint.database``, in WAL mode."""
        import sqlite3

        connection = sqlite3.connect(endpoint.database, timeout=30)
        # Python's default isolation level opens a transaction before each write.
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def in_autocommit(self, connection: Any) -> bool:
        """No isolation level: sqlite3 opens no transaction."""
        return connection.isolation_level is None

    def classify(self, exc: BaseException, service: str) -> Verdict:
        """From the message: sqlite3 gives no error codes the project can rely on."""
        message = first_line(exc)
        name = type(exc).__name__
        lowered = message.lower()
        if "no such column" in lowered or "has no column" in lowered:
            return Verdict(TRANSIENT, missing_reason("column", message, service))
        if "no such table" in lowered:
            return Verdict(TRANSIENT, missing_reason("table", message, service))
        if name in ("IntegrityError", "DataError"):
            return Verdict(DATA, f"database refused a value: {message}")
        if name == "ProgrammingError" and "closed" in lowered:
            return Verdict(CONNECTION, f"database connection closed: {message}")
        return Verdict(TRANSIENT, f"database error: {message}")

    # The comparison's functions are Python ones, which comparing() defines on the connection.

    def canonical_sql(
        self, value: str, kind: str, scale: int, *, uuid_typed: bool, engine_dialect: Any
    ) -> str:
        """``replication_canonical``, the Python function given to :meth:`comparing`."""
        return f"replication_canonical('{kind}', {int(scale)}, {value})"

    def hash_sql(self, text: str, digits: int, *, portable: bool) -> str:
        """``replication_hash``: MD5's hex digits, cut to 40 bits for row hashes."""
        return f"replication_hash({text}, {digits})"

    def json_value_sql(self, document: str, member: str) -> str:
        """``json_extract``."""
        return f"json_extract({document}, '$.{member}')"

    @contextmanager
    def comparing(self, connection: Any, canonical_value: CanonicalValue) -> Iterator[None]:
        """The comparison's functions defined on the connection (SQLite compares text byte by
        byte already)."""
        raw = connection.connection.dbapi_connection
        raw.create_function("replication_canonical", 3, canonical_value, deterministic=True)
        raw.create_function("replication_hash", 2, _hash, deterministic=True)
        raw.create_function("concat_ws", -1, _concat_ws, deterministic=True)
        yield


def _hash(text: str | None, digits: int) -> int | None:
    if text is None:
        return None
    value = int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:digits], 16)
    # SQLite sums in 64-bit integers: 40-bit row hashes leave room for 8 million rows a bucket.
    return value & (2**40 - 1) if digits > 10 else value


def _concat_ws(separator: str, *parts: Any) -> str:
    return separator.join(str(p) for p in parts if p is not None)


SQLITE = SQLiteDialect()
