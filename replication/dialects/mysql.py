"""MySQL and MariaDB, through PyMySQL.

What sets them apart: ``INSERT ... ON DUPLICATE KEY UPDATE`` with every
column guarded and no per-row outcome (the apply reads the written rows
back), naive UTC datetimes, error numbers, and MariaDB's own JSON text.
"""

from __future__ import annotations

__all__ = ["MYSQL", "MySQLDialect", "pymysql_ssl"]

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from replication.dialects.base import CanonicalValue, Dialect, Endpoint
from replication.dialects.converters import as_json, as_str, as_text, enum_value, utc_naive
from replication.dialects.verdicts import (
    CONNECTION,
    DATA,
    TRANSIENT,
    Verdict,
    first_line,
    missing_reason,
)

# Error numbers.
_CONNECTION = {2002, 2003, 2006, 2013, 2055, 1927, 4031}
_TRANSIENT = {1205, 1213, 1040, 1203, 1290}
_MISSING = {1054: "column", 1146: "table"}
_DATA = {1048, 1062, 1264, 1292, 1366, 1406, 3140, 4025}

_TRUE = ("true", "yes", "on", "y", "t", "1")  # what SQLAlchemy reads as true in a URL
_PYMYSQL_FILES = ("ca", "key", "cert", "capath", "cipher")  # the ssl_* SQLAlchemy passes on


_MARIADB_VERSION = re.compile(r"(\d+)\.(\d+)\.\d+-MariaDB")
"""A MariaDB server's version in its handshake (``5.5.5-10.11.6-MariaDB-...``)."""
_QUOTED_VALUE = re.compile(r"\b(entry|value:?)\s+'.*?'(?=\s+for\s|\s*$)", re.IGNORECASE)
"""A value MySQL quotes in a refusal: after ``entry`` or ``value``, never a column's name."""


class MySQLDialect(Dialect):
    """MySQL and MariaDB."""

    name = "mysql"
    aliases = ("mariadb",)
    drivers = ("pymysql", "MySQLdb")
    schemes = {
        "mysql": "mysql+pymysql",
        "mysql+pymysql": "",
        "mariadb": "mariadb+pymysql",
        "mariadb+pymysql": "",
    }
    dbapi_modules = {"pymysql": "pymysql"}
    rds_engines = ("mysql", "mariadb", "aurora-mysql")
    default_port = 3306
    parameter_budget = 30_000  # its default 16 MiB packet, for ordinary rows
    parameter_converters = {
        "str": as_str,
        "uuid": as_text,
        "enum": enum_value,
        "json": as_json,
        "datetime": utc_naive,
    }
    returns_written = False
    sqlalchemy_name = "mysql"
    package_extra = "mysql"

    def upsert_returns_touched(self, connection: Any) -> bool:
        """MariaDB from 10.5: ``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING`` lists each
        row with its values after the statement (MySQL has no RETURNING)."""
        info = getattr(connection, "get_server_info", None)
        if info is None:
            return False
        found = _MARIADB_VERSION.search(str(info()))
        return found is not None and (int(found[1]), int(found[2])) >= (10, 5)

    def driver_options(self, driver: str) -> dict[str, str]:
        """PyMySQL speaks utf8mb4 (4-byte characters included)."""
        return {"charset": "utf8mb4"} if driver == "pymysql" else {}

    def connect(
        self,
        endpoint: Endpoint,
        *,
        password: str = "",
        options: Mapping[str, str] | None = None,
        connect_timeout: int = 5,
    ) -> Any:
        """A PyMySQL connection; of the URL's query, only its TLS parameters are read (as
        SQLAlchemy reads them)."""
        import pymysql

        ssl = pymysql_ssl(options or {})
        return pymysql.connect(
            host=endpoint.host,
            port=endpoint.port or self.default_port,
            user=endpoint.user,
            password=password,
            database=endpoint.database or None,
            charset="utf8mb4",
            connect_timeout=connect_timeout,
            autocommit=False,
            **({"ssl": ssl} if ssl else {}),
        )

    def tls_parameters(self, given: Mapping[str, str], mode: str, ca_file: str) -> dict[str, str]:
        """``ssl_ca`` and a host name check, unless the URL names any ``ssl_`` parameter."""
        if any(k.startswith("ssl") for k in given):
            return {}
        if mode == "require":
            return {"ssl_check_hostname": "false"}
        return {"ssl_ca": ca_file, "ssl_check_hostname": "true"}

    def in_autocommit(self, connection: Any) -> bool:
        """PyMySQL's ``autocommit_mode``."""
        return bool(getattr(connection, "autocommit_mode", False))

    def sqlalchemy_options(self, name: str = "") -> dict[str, Any]:
        """SQLAlchemy's MariaDB flavour when asked for ``mariadb``."""
        return {"is_mariadb": True} if name in self.aliases else {}

    def guarded_upsert(
        self,
        table: str,
        key: Sequence[str],
        updated: Sequence[str],
        version: str,
        returned: Sequence[str],
    ) -> str:
        """Each assignment guarded by the version; nothing returned."""
        # MySQL evaluates assignments left to right, each seeing the ones before:
        # the version must be assigned last so every guard sees the old version.
        guard = f"{table}.{version} < VALUES({version})"
        sets = ", ".join(f"{c} = IF({guard}, VALUES({c}), {c})" for c in [*updated, version])
        return f" ON DUPLICATE KEY UPDATE {sets}"

    def upsert(self, key: Sequence[str], updated: Sequence[str]) -> str:
        """``ON DUPLICATE KEY UPDATE`` (the key is the table's)."""
        updates = ", ".join(f"{c} = VALUES({c})" for c in updated)
        return f" ON DUPLICATE KEY UPDATE {updates}"

    def classify(self, exc: BaseException, service: str) -> Verdict:
        """From the error number, the first of the exception's arguments."""
        message = first_line(exc)
        name = type(exc).__name__
        number = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = str(exc.args[1]) if len(exc.args) > 1 else message
        if name == "InterfaceError" or number in _CONNECTION:
            return Verdict(CONNECTION, f"database connection lost ({number}): {text}")
        if number in _MISSING:
            return Verdict(TRANSIENT, missing_reason(_MISSING[number], text, service))
        if number in _TRANSIENT:
            return Verdict(TRANSIENT, f"database busy ({number}): {text}")
        if number in _DATA or name in ("DataError", "IntegrityError"):
            # MySQL quotes the refused value ("Duplicate entry 'ada@example.com' for key ..."):
            # the reason goes to logs, the DLQ and the failures table, so the value is masked.
            text = _QUOTED_VALUE.sub(r"\1 '***'", text)
            return Verdict(DATA, f"database refused a value ({number}): {text}")
        return Verdict(TRANSIENT, f"database error ({number or name}): {text}")

    def variant(self, engine_dialect: Any) -> str:
        """``mariadb`` or ``mysql``: their JSON text differs."""
        return "mariadb" if getattr(engine_dialect, "is_mariadb", False) else self.name

    def canonical_sql(
        self, value: str, kind: str, scale: int, *, uuid_typed: bool, engine_dialect: Any
    ) -> str:
        """Casts and ``DATE_FORMAT``; JSON normalised (``JSON_NORMALIZE`` on MariaDB)."""
        x = value
        if kind in ("str", "enum"):
            return f"CAST({x} AS CHAR CHARACTER SET utf8mb4)"
        if kind in ("int", "float"):
            return f"CAST({x} AS CHAR)"
        if kind == "uuid":
            # SQLAlchemy's Uuid is CHAR(32) here (hex without hyphens); mirrors hold 36 characters.
            hyphenated = (
                f"CONCAT_WS('-', SUBSTRING({x}, 1, 8), SUBSTRING({x}, 9, 4), "
                f"SUBSTRING({x}, 13, 4), SUBSTRING({x}, 17, 4), SUBSTRING({x}, 21))"
            )
            return f"LOWER(IF(CHAR_LENGTH({x}) = 32, {hyphenated}, {x}))"
        if kind == "bool":
            return f"CASE WHEN {x} THEN '1' WHEN NOT {x} THEN '0' END"
        if kind == "decimal":
            return f"CAST(ROUND({x}, {int(scale)}) AS CHAR)"
        if kind == "datetime":
            return f"DATE_FORMAT({x}, '%%Y-%%m-%%dT%%H:%%i:%%s.%%f')"
        if kind == "date":
            return f"DATE_FORMAT({x}, '%%Y-%%m-%%d')"
        if kind == "json":
            if self.variant(engine_dialect) == "mariadb":
                return f"JSON_NORMALIZE({x})"
            return f"CAST(CAST({x} AS JSON) AS CHAR)"
        raise ValueError(f"no canonical text for kind {kind}")

    def hash_sql(self, text: str, digits: int, *, portable: bool) -> str:
        """MD5's hex digits; within MySQL, ``CRC32`` for short ones."""
        # Hashes see the bytes of the text's own character set: UTF-8 it first, as PostgreSQL's.
        utf8 = f"CONVERT({text} USING utf8mb4)"
        if not portable and digits <= 8:
            return f"CRC32({utf8})"
        return f"CAST(CONV(SUBSTRING(MD5({utf8}), 1, {digits}), 16, 10) AS UNSIGNED)"

    def binary_text_sql(self, text: str) -> str:
        """UTF-8's binary collation."""
        return f"(CONVERT({text} USING utf8mb4) COLLATE utf8mb4_bin)"

    def json_object_sql(self, pairs: str) -> str:
        """``JSON_OBJECT``."""
        return f"JSON_OBJECT({pairs})"

    def json_value_sql(self, document: str, member: str) -> str:
        """``JSON_VALUE``."""
        return f"JSON_VALUE({document}, '$.{member}')"

    @contextmanager
    def comparing(self, connection: Any, canonical_value: CanonicalValue) -> Iterator[None]:
        """The session reads and formats ``TIMESTAMP`` in UTC until the connection is handed
        back, when its time zone is restored."""
        connection.exec_driver_sql("SET @replication_time_zone = @@session.time_zone")
        connection.exec_driver_sql("SET time_zone = '+00:00'")
        try:
            yield
        finally:
            connection.rollback()
            connection.exec_driver_sql("SET time_zone = @replication_time_zone")


def pymysql_ssl(parameters: Mapping[str, str]) -> dict[str, Any] | None:
    """PyMySQL's ``ssl`` argument from URL parameters, read as SQLAlchemy reads them.

    ``ssl_ca``, ``ssl_capath``, ``ssl_cert``, ``ssl_key``, ``ssl_cipher`` and
    ``ssl_check_hostname``; None without any. Given any, PyMySQL (1.2 and later)
    refuses a server that does not offer TLS.
    """
    found: dict[str, Any] = {
        key: parameters[f"ssl_{key}"] for key in _PYMYSQL_FILES if f"ssl_{key}" in parameters
    }
    if "ssl_check_hostname" in parameters:
        found["check_hostname"] = parameters["ssl_check_hostname"].strip().lower() in _TRUE
    return found or None


MYSQL = MySQLDialect()
