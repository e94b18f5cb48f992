"""PostgreSQL, through psycopg2 or psycopg 3.

What sets it apart: ``INSERT ... ON CONFLICT ... RETURNING``, a bulk path
(``COPY`` into a session-local stage table, then one guarded merge), SQLSTATE
codes, and its own hash functions for comparisons within PostgreSQL.
"""

from __future__ import annotations

__all__ = ["POSTGRESQL", "PostgreSQLDialect", "copy_converters"]

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from replication.dialects.base import (
    CanonicalValue,
    Dialect,
    Endpoint,
    StageStatements,
    installed,
)
from replication.dialects.converters import Converter, as_json, as_str, as_text, enum_value
from replication.dialects.verdicts import (
    CONNECTION,
    DATA,
    TRANSIENT,
    Verdict,
    first_line,
    missing_reason,
)

# SQLSTATE classes and codes.
_CONNECTION_CLASSES = ("08", "57")  # connection exception, operator intervention
_TRANSIENT_CLASSES = ("40", "53", "55", "58")  # rollback, resources, state, system
_MISSING = {"42703": "column", "42P01": "table"}
_DATA_CLASSES = ("22", "23")  # data exception, integrity constraint violation

_MAX_IDENTIFIER = 63


class PostgreSQLDialect(Dialect):
    """PostgreSQL."""

    name = "postgresql"
    aliases = ()
    drivers = ("psycopg2", "psycopg")
    schemes = {
        "postgresql": "",
        "postgres": "",
        "postgresql+psycopg2": "",
        "postgresql+psycopg": "",
    }
    dbapi_modules = {"psycopg2": "psycopg2", "psycopg": "psycopg"}
    rds_engines = ("postgres", "aurora-postgresql")
    default_port = 5432
    parameter_budget = 60_000  # below its 65,535 bind parameters
    parameter_converters = {"str": as_str, "uuid": as_text, "enum": enum_value, "json": as_json}
    bulk_threshold = 500
    aware_timestamps = True
    notifies = True
    sqlalchemy_name = "postgresql"
    package_extra = "postgresql"
    # psycopg2 is what the apply and the relay open; psycopg 3 only serves owners' code.
    unpackaged = ("psycopg[",)

    def explicit_scheme(self, scheme: str) -> str:
        """A scheme naming its driver as written; plain ones mean :meth:`default_driver`."""
        return scheme if "+" in scheme else f"postgresql+{self.default_driver()}"

    def default_driver(self) -> str:
        """The driver plain ``postgresql://`` means: psycopg2, else psycopg 3 if only it is
        there."""
        if not installed("psycopg2") and installed("psycopg"):
            return "psycopg"
        return "psycopg2"

    def connect(
        self,
        endpoint: Endpoint,
        *,
        password: str = "",
        options: Mapping[str, str] | None = None,
        connect_timeout: int = 5,
    ) -> Any:
        """A psycopg2 connection, or psycopg 3's when the endpoint names that driver."""
        # The URL's query is libpq parameters (options=-csearch_path%3D..., sslmode...),
        # which both drivers pass on as they are.
        given = dict(options or {})
        given.setdefault("connect_timeout", str(connect_timeout))
        given.setdefault("application_name", "replication-consumer")
        params: dict[str, Any] = {
            "host": endpoint.host,
            "port": endpoint.port or self.default_port,
            "user": endpoint.user or None,
            "password": password or None,
            "dbname": endpoint.database or None,
            **given,
        }
        if endpoint.driver == "psycopg":
            import psycopg

            # No server-side prepared statements, as with psycopg2: poolers in
            # transaction mode (PgBouncer, RDS Proxy) do not keep them between
            # transactions.
            return psycopg.connect(prepare_threshold=None, **params)
        import psycopg2

        return psycopg2.connect(**params)

    def pipelines(self, connection: Any) -> bool:
        """psycopg 3 in a transaction, with libpq's pipeline mode (libpq 14 and later)."""
        if type(connection).__module__.split(".", 1)[0] != "psycopg" or connection.autocommit:
            return False
        import psycopg

        return bool(psycopg.capabilities.has_pipeline())

    def commit_pipelined(
        self, connection: Any, statements: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """The statements and the COMMIT in one pipeline: one Sync, one wait for the server.

        A failing statement aborts the rest (the COMMIT with it) and raises here, leaving
        the transaction failed, to be rolled back.
        """
        with connection.pipeline():
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
            connection.execute("COMMIT")

    def tls_parameters(self, given: Mapping[str, str], mode: str, ca_file: str) -> dict[str, str]:
        """``sslmode`` (and ``sslrootcert`` to verify), unless the URL names its ``sslmode``."""
        if "sslmode" in given:
            return {}
        if mode == "require":
            return {"sslmode": "require"}
        wanted = {"sslmode": "verify-full", "sslrootcert": ca_file}
        return {k: v for k, v in wanted.items() if k not in given}

    def stage_statements(
        self, quote: Callable[[str], str], table: str, columns: Sequence[str], guarded: str
    ) -> StageStatements:
        """``COPY`` into a temporary table emptied at commit, then one guarded merge."""
        t, stage, names = quote(table), quote(_stage_name(table)), ", ".join(columns)
        # The stage is read in the order the rows were copied, which is the batch's key
        # order (reduce_batch sorts it): concurrent appliers lock rows in one order
        # without paying for a sort here. A fresh temporary heap that is only appended
        # to is scanned in insertion order.
        return StageStatements(
            setup=(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
                f"(LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            ),
            load=f"COPY {stage} ({names}) FROM STDIN",
            merge=f"INSERT INTO {t} ({names}) SELECT {names} FROM {stage}" + guarded,
            clear=f"DELETE FROM {stage}",
        )

    def document_upsert(self, table: str, columns: Sequence[str], guarded: str) -> str:
        """``json_populate_recordset`` over the table's own row type: each value is read by
        its column type's input function, as a bound text parameter would be, and one
        parameter replaces thousands (which the driver would quote one by one and the server
        parse as one long statement)."""
        names = ", ".join(columns)
        return (
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{table}, CAST({self.marker} AS json))" + guarded
        )

    def can_bulk_load(self, cursor: Any) -> bool:
        """psycopg2's and psycopg 3's cursors both COPY."""
        return hasattr(cursor, "copy_expert") or hasattr(cursor, "copy")

    def bulk_load(
        self, cursor: Any, sql: str, kinds: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Run ``COPY ... FROM STDIN`` with ``rows`` in COPY's text format."""
        convert = copy_converters(tuple(kinds))
        buffer = io.StringIO()
        write = buffer.write
        for values in rows:
            write("\t".join([f(v) for f, v in zip(convert, values, strict=True)]))
            write("\n")
        buffer.seek(0)
        if hasattr(cursor, "copy_expert"):  # psycopg2
            cursor.copy_expert(sql, buffer)
            return
        with cursor.copy(sql) as copy:  # psycopg 3
            copy.write(buffer.getvalue())

    def classify(self, exc: BaseException, service: str) -> Verdict:
        """From the SQLSTATE: psycopg2 names it ``pgcode``, psycopg 3 ``sqlstate``."""
        message = first_line(exc)
        name = type(exc).__name__
        code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None) or ""
        if name in ("InterfaceError", "OperationalError") and not code:
            return Verdict(CONNECTION, f"database connection lost: {message}")
        if code[:2] in _CONNECTION_CLASSES:
            return Verdict(CONNECTION, f"database connection lost ({code}): {message}")
        if code in _MISSING:
            return Verdict(TRANSIENT, missing_reason(_MISSING[code], message, service))
        if code[:2] in _TRANSIENT_CLASSES:
            return Verdict(TRANSIENT, f"database busy ({code}): {message}")
        if code[:2] in _DATA_CLASSES:
            return Verdict(DATA, f"database refused a value ({code}): {message}")
        if not code and name in ("DataError", "IntegrityError"):
            # psycopg 3 refusing a value before sending it (NUL in text).
            return Verdict(DATA, f"database refused a value: {message}")
        return Verdict(TRANSIENT, f"database error ({code or name}): {message}")

    def canonical_sql(
        self, value: str, kind: str, scale: int, *, uuid_typed: bool, engine_dialect: Any
    ) -> str:
        """Casts and ``to_char``; JSON as ``jsonb``'s text."""
        x = value
        if kind in ("str", "enum", "int", "float"):
            return f"CAST({x} AS TEXT)"
        if kind == "uuid":
            if uuid_typed:
                return f"CAST({x} AS TEXT)"  # PostgreSQL writes UUIDs in lower case
            # Text holding a UUID, hyphenated or as 32 hex digits, in either case (lower-casing
            # the usual hyphenated form is cheaper than parsing it).
            return (
                f'CASE WHEN char_length({x}) = 36 THEN lower(CAST({x} AS TEXT) COLLATE "C") '
                f"ELSE CAST(CAST({x} AS UUID) AS TEXT) END"
            )
        if kind == "bool":
            return f"CASE WHEN {x} THEN '1' WHEN NOT {x} THEN '0' END"
        if kind == "decimal":
            return f"CAST(round(CAST({x} AS NUMERIC), {int(scale)}) AS TEXT)"
        if kind == "datetime":
            return f"to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        if kind == "date":
            return f"to_char({x}, 'YYYY-MM-DD')"
        if kind == "json":
            return f"CAST(CAST({x} AS JSONB) AS TEXT)"
        raise ValueError(f"no canonical text for kind {kind}")

    def hash_sql(self, text: str, digits: int, *, portable: bool) -> str:
        """MD5's hex digits as bits; within PostgreSQL, ``hashtext``/``hashtextextended``."""
        if not portable:
            if digits <= 8:
                return f"(CAST(hashtext({text}) AS BIGINT) & 2147483647)"
            return f"hashtextextended({text}, 0)"
        bits = digits * 4
        return f"CAST(CAST(('x' || substr(md5({text}), 1, {digits})) AS bit({bits})) AS BIGINT)"

    def binary_text_sql(self, text: str) -> str:
        """The C collation."""
        return f'({text} COLLATE "C")'

    def json_object_sql(self, pairs: str) -> str:
        """``jsonb_build_object``."""
        return f"jsonb_build_object({pairs})"

    def json_value_sql(self, document: str, member: str) -> str:
        """``->>`` on the document as ``jsonb``."""
        return f"(CAST({document} AS JSONB) ->> '{member}')"

    @contextmanager
    def comparing(self, connection: Any, canonical_value: CanonicalValue) -> Iterator[None]:
        """The session formats timestamps in UTC, for this transaction."""
        connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        yield

    def prepare_grouping(self, connection: Any, memory: str) -> None:
        """Room to group the buckets in memory (the planner cannot tell there are only a
        few thousand, and would otherwise sort every row to disk)."""
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{memory}'")


def _stage_name(table: str) -> str:
    # Identifiers stop at 63 characters: a long table name gets a hashed suffix
    # instead of being cut to a prefix another mirror may share.
    name = f"_stage_{table}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:10]
    return f"_stage_{table[:45]}_{digest}"


# -- COPY's text format --------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPES)


def _copy_plain(value: Any) -> str:
    # Numbers, UUIDs and dates never contain characters COPY escapes.
    return "\\N" if value is None else str(value)


def _copy_bool(value: Any) -> str:
    if value is None:
        return "\\N"
    return "t" if value else "f"


def _copy_datetime(value: Any) -> str:
    return "\\N" if value is None else value.isoformat()


def _copy_enum(value: Any) -> str:
    return _copy_text(enum_value(value))


def _copy_json(value: Any) -> str:
    return "\\N" if value is None else _copy_text(as_json(value))


_COPY: dict[str, Converter] = {
    "str": _copy_text,
    "int": _copy_plain,
    "float": lambda v: "\\N" if v is None else repr(float(v)),
    "decimal": _copy_plain,
    "uuid": _copy_plain,
    "date": _copy_plain,
    "bool": _copy_bool,
    "datetime": _copy_datetime,
    "enum": _copy_enum,
    "json": _copy_json,
}


@cache
def copy_converters(kinds: tuple[str, ...]) -> tuple[Converter, ...]:
    """One converter per field kind into ``COPY``'s text format."""
    return tuple(_COPY[kind] for kind in kinds)


POSTGRESQL = PostgreSQLDialect()
