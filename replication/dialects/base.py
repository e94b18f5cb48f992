"""The shape of a dialect: everything the project does differently on each database.

One subclass per database (:mod:`~replication.dialects.postgresql`,
:mod:`~replication.dialects.mysql`, :mod:`~replication.dialects.sqlite`) and
one instance of each in the registry (:mod:`replication.dialects.registry`),
which the rest of the project asks instead of comparing names. The base class
holds what most databases share (standard SQL's ``INSERT ... ON CONFLICT``,
``%s`` placeholders, no bulk path, no comparison SQL); a database overrides
where it differs. Who reads what:

- naming and URLs (:mod:`replication.dburl`, the consumer's connection spec):
  ``name``, ``aliases``, ``drivers``, ``schemes``, ``dbapi_modules``,
  ``rds_engines``, :meth:`explicit_scheme`, :meth:`driver_options`;
- connecting (:mod:`replication.consumer.database`, :mod:`replication.dbtls`):
  ``has_server``, ``default_port``, :meth:`connect`, :meth:`tls_parameters`;
- rendering and applying (:mod:`replication.mirror.render`,
  :mod:`replication.mirror.apply`): ``marker``, ``parameter_budget``,
  ``parameter_converters``, ``sqlalchemy_name``, :meth:`sqlalchemy_options`,
  :meth:`guarded_upsert`, ``returns_written``, ``bulk_threshold``,
  :meth:`stage_statements`, :meth:`can_bulk_load`, :meth:`bulk_load`,
  :meth:`document_upsert`, :meth:`document_converters`, :meth:`document`,
  :meth:`in_autocommit`, :meth:`upsert_returns_touched`;
- the failures table (:mod:`replication.consumer.failures`): :meth:`upsert`;
- error verdicts (:mod:`replication.consumer.classify`): :meth:`classify`;
- reconcile's hashing (:mod:`replication.sync.sql`): ``portable_hashes``,
  :meth:`variant`, :meth:`canonical_sql`, :meth:`hash_sql`,
  :meth:`binary_text_sql`, :meth:`json_object_sql`, :meth:`json_value_sql`,
  :meth:`comparing`, :meth:`prepare_grouping`;
- packaging a function (:mod:`replication.package`): ``package_extra``,
  ``unpackaged``;
- the owner's outbox and relay (:mod:`replication.outbox`,
  :mod:`replication.migrations`): ``skip_locked``, ``aware_timestamps``,
  ``outbox_driver_sql``, ``notifies``, :meth:`pipelines`, :meth:`commit_pipelined`.

The apply function's hot path loads every dialect: nothing here imports
SQLAlchemy or boto3, even lazily, and a driver only when connecting.
"""

from __future__ import annotations

__all__ = ["CanonicalValue", "Dialect", "Endpoint", "StageStatements", "installed"]

import importlib.util
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple, Protocol

from replication.dialects.converters import Converter, document_converters, same
from replication.dialects.verdicts import TRANSIENT, Verdict, first_line

CanonicalValue = Callable[[str, int, Any], "str | None"]
"""The canonical text of a Python value of a field kind (``kind, scale, value``)."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (a driver costs a cold
    start)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Endpoint(Protocol):
    """Where and as whom to connect (:class:`replication.consumer.database.ConnectionSpec`)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def user(self) -> str: ...
    @property
    def database(self) -> str: ...
    @property
    def driver(self) -> str: ...


class StageStatements(NamedTuple):
    """The bulk path's SQL: a stage table filled in one load, then merged by one guarded upsert."""

    setup: str
    load: str
    merge: str
    clear: str


class Dialect:
    """Everything that differs on one database; the defaults are standard SQL's."""

    name: ClassVar[str] = ""
    """The dialect's name: in rendered statements, file names, ``--dialect``."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names of it (SQLAlchemy's, such as ``mariadb``)."""
    drivers: ClassVar[tuple[str, ...]] = ()
    """DB-API modules (their top-level package) whose connections reach it."""
    schemes: ClassVar[Mapping[str, str]] = {}
    """URL schemes users write for it, each with the SQLAlchemy scheme the project opens it
    with (empty: as written, or as :meth:`explicit_scheme` decides)."""
    dbapi_modules: ClassVar[Mapping[str, str]] = {}
    """SQLAlchemy's driver name (after ``+``; empty when the scheme names none): its module."""
    rds_engines: ClassVar[tuple[str, ...]] = ()
    """The ``engine`` an RDS secret names for it."""

    has_server: ClassVar[bool] = True
    """Reached over the network (host, port, credentials, TLS); False: a local file."""
    default_port: ClassVar[int] = 0
    """The server's port unless one is given (0: no server)."""

    marker: ClassVar[str] = "%s"
    """The driver's placeholder for a bind parameter."""
    parameter_budget: ClassVar[int] = 30_000
    """Bind parameters one statement may carry, with room to spare."""
    parameter_converters: ClassVar[Mapping[str, Converter]] = {}
    """By field kind, how a contract value becomes the driver's parameter (others as they are)."""
    returns_written: ClassVar[bool] = True
    """The guarded upsert returns the rows it wrote; False: the apply reads them back."""
    bulk_threshold: ClassVar[int] = 0
    """From this many rows after reduction, the apply takes the bulk path; 0: never."""

    portable_hashes: ClassVar[bool] = True
    """Its comparison hashes equal the other databases' (reconcile across dialects)."""

    skip_locked: ClassVar[bool] = True
    """``SELECT ... FOR UPDATE SKIP LOCKED``: relays claim outbox rows side by side."""
    aware_timestamps: ClassVar[bool] = False
    """Timestamp columns keep their offset; False: they hold UTC without one."""
    outbox_driver_sql: ClassVar[bool] = True
    """The owner's outbox INSERT goes to the driver as SQL with named pyformat parameters
    (when the driver takes that style), bypassing SQLAlchemy's compilation."""
    notifies: ClassVar[bool] = False
    """``LISTEN``/``NOTIFY``: a trigger on the outbox wakes a following relay at once."""

    sqlalchemy_name: ClassVar[str] = ""
    """SQLAlchemy's name for it: the tables' DDL and the quoting of names (its dialect is
    built where SQLAlchemy is imported anyway, never here)."""

    package_extra: ClassVar[str] = ""
    """The library's extra that installs its driver in a function; empty: functions cannot
    reach it."""
    unpackaged: ClassVar[tuple[str, ...]] = ()
    """Requirements of that extra (by prefix) that a function never imports."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- names and URLs ---------------------------------------------------------------------

    def explicit_scheme(self, scheme: str) -> str:
        """``scheme`` (one of :attr:`schemes`) with the driver the project opens it with named."""
        return self.schemes[scheme] or scheme

    def driver_options(self, driver: str) -> dict[str, str]:
        """URL parameters the project always gives ``driver`` unless the URL names them."""
        return {}

    # -- connecting -------------------------------------------------------------------------

    def connect(
        self,
        endpoint: Endpoint,
        *,
        password: str = "",
        options: Mapping[str, str] | None = None,
        connect_timeout: int = 5,
    ) -> Any:
        """A new DB-API connection to ``endpoint``, not in autocommit mode.

        ``options`` are the URL's query parameters, TLS's included.
        """
        raise NotImplementedError(f"the {self.name} dialect does not connect")

    def tls_parameters(self, given: Mapping[str, str], mode: str, ca_file: str) -> dict[str, str]:
        """The URL parameters TLS ``mode`` (``verify``, ``require``) adds to ``given``."""
        return {}

    def in_autocommit(self, connection: Any) -> bool:
        """Whether the DB-API ``connection`` commits each statement on its own."""
        return getattr(connection, "autocommit", False) is True

    def upsert_returns_touched(self, connection: Any) -> bool:
        """Whether, on the DB-API ``connection``'s server, the guarded upsert can end in
        ``RETURNING`` and list every row it touched, written or kept (where it cannot return
        only the rows it wrote)."""
        return False

    def pipelines(self, connection: Any) -> bool:
        """Whether statements can go to the server with the COMMIT, in one round trip, on the
        DB-API ``connection`` (in a transaction)."""
        return False

    def commit_pipelined(
        self, connection: Any, statements: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Run ``statements`` (driver SQL, named parameters) and COMMIT, waiting once."""
        raise NotImplementedError(f"the {self.name} dialect does not pipeline")

    # -- the apply's SQL --------------------------------------------------------------------

    def sqlalchemy_options(self, name: str = "") -> dict[str, Any]:
        """Arguments of SQLAlchemy's dialect class (``name``: the alias asked for, if one)."""
        return {}

    def converters(self, kinds: Iterable[str]) -> tuple[Converter, ...]:
        """One parameter converter per field kind."""
        table = self.parameter_converters
        return tuple(table.get(kind, same) for kind in kinds)

    def guarded_upsert(
        self,
        table: str,
        key: Sequence[str],
        updated: Sequence[str],
        version: str,
        returned: Sequence[str],
    ) -> str:
        """What follows ``INSERT INTO table (...) VALUES ...`` to write a row only over an older
        version (quoted names).

        ``updated``: the columns taken from the new row, the version apart; ``returned``:
        what each written row gives back (when :attr:`returns_written`).
        """
        sets = ", ".join(f"{c} = excluded.{c}" for c in [*updated, version])
        return (
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
            f" WHERE {table}.{version} < excluded.{version} RETURNING {', '.join(returned)}"
        )

    def upsert(self, key: Sequence[str], updated: Sequence[str]) -> str:
        """What follows ``INSERT ... VALUES (...)`` to overwrite ``updated`` of an existing key."""
        sets = ", ".join(f"{c} = excluded.{c}" for c in updated)
        return f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"

    def stage_statements(
        self, quote: Callable[[str], str], table: str, columns: Sequence[str], guarded: str
    ) -> StageStatements | None:
        """The bulk path's SQL for ``table`` (``columns`` quoted, ``guarded`` the guarded
        upsert); None without one."""
        return None

    def document_upsert(self, table: str, columns: Sequence[str], guarded: str) -> str:
        """The guarded upsert of rows given as one JSON document (one parameter, built by
        :meth:`document`), ``columns`` quoted; empty where the database cannot read rows
        from a document (the apply then binds every value)."""
        return ""

    def document_converters(self, kinds: Sequence[str]) -> tuple[Converter, ...]:
        """One converter per column, into the values :meth:`document` is given: JSON's own
        types where the column reads them, text elsewhere."""
        return document_converters(tuple(kinds))

    def document(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
        """The JSON text of ``rows``: an array of objects keyed by column name."""
        return json.dumps(
            [dict(zip(columns, row, strict=True)) for row in rows],
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )

    def can_bulk_load(self, cursor: Any) -> bool:
        """Whether ``cursor``'s driver can take the bulk path."""
        return False

    def bulk_load(
        self, cursor: Any, sql: str, kinds: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Load ``rows`` (values of field ``kinds``) with the stage's load statement ``sql``."""
        raise NotImplementedError(f"the {self.name} dialect has no bulk path")

    # -- errors -----------------------------------------------------------------------------

    def classify(self, exc: BaseException, service: str) -> Verdict:
        """The verdict on ``exc``, raised by one of :attr:`drivers` while applying for
        ``service``."""
        return Verdict(TRANSIENT, f"database error: {first_line(exc)}")

    # -- reconcile's hashing ----------------------------------------------------------------

    def variant(self, engine_dialect: Any) -> str:
        """The name of the database behind SQLAlchemy's ``engine_dialect``, where its SQL
        differs from the dialect's other databases'."""
        return self.name

    def canonical_sql(
        self, value: str, kind: str, scale: int, *, uuid_typed: bool, engine_dialect: Any
    ) -> str:
        """SQL for the canonical text (see :mod:`replication.sync.sql`) of ``value``, a field of
        ``kind``; ``uuid_typed``: its column is a UUID type rather than text."""
        raise NotImplementedError(f"the {self.name} dialect cannot compare tables")

    def hash_sql(self, text: str, digits: int, *, portable: bool) -> str:
        """SQL for an integer hash of ``text``: the first ``digits`` hex digits of its MD5
        when ``portable``, else any hash of about that size."""
        raise NotImplementedError(f"the {self.name} dialect cannot compare tables")

    def binary_text_sql(self, text: str) -> str:
        """SQL for ``text`` ordered by its UTF-8 bytes."""
        return text

    def json_object_sql(self, pairs: str) -> str:
        """SQL for a JSON object of ``pairs`` (``'name', value, ...``)."""
        return f"json_object({pairs})"

    def json_value_sql(self, document: str, member: str) -> str:
        """SQL for the unescaped text of ``member`` of a JSON object."""
        raise NotImplementedError(f"the {self.name} dialect cannot compare tables")

    @contextmanager
    def comparing(self, connection: Any, canonical_value: CanonicalValue) -> Iterator[None]:
        """``connection`` (SQLAlchemy's) set up for a comparison, then restored."""
        yield

    def prepare_grouping(self, connection: Any, memory: str) -> None:
        """Give the transaction of ``connection`` ``memory`` to group a table's rows in."""
