"""Database URLs as users write them, made explicit about the driver the project uses.

``postgresql://`` means psycopg2 (psycopg 3 when psycopg2 is not installed),
``postgresql+psycopg://`` psycopg 3, and ``mysql://`` / ``mariadb://`` PyMySQL
(utf8mb4), for every engine and connection the project opens itself, whatever
SQLAlchemy's default driver for the scheme is (SQLAlchemy 2.1 picks psycopg 3
for ``postgresql://`` and mysqlclient for ``mysql://``).

:func:`register_drivers` makes the same plain schemes work in an owner's own
``sqlalchemy.create_engine``. It imports SQLAlchemy, so it runs on import of
:mod:`replication.outbox`, never on import of this module: the apply
function's hot path reads URLs here without SQLAlchemy.

:func:`engine_url` is the URL every engine of the project opens: the driver
named, and TLS as ``REPLICATION_DATABASE_TLS`` asks (:mod:`replication.dbtls`).
"""

from __future__ import annotations

__all__ = [
    "dialect_of",
    "driver_of",
    "engine_url",
    "register_drivers",
    "sqlalchemy_url",
    "with_search_path",
]

from typing import Any

from replication.dbtls import database_tls, with_tls
from replication.dialects import Dialect, dialect_for_scheme
from replication.dialects.base import installed


def _scheme(url: str) -> tuple[str, str, str]:
    scheme, sep, rest = url.partition("://")
    return scheme.lower(), sep, rest


def _dialect(url: str) -> tuple[Dialect | None, str, str]:
    """The dialect of ``url``'s scheme (None when it has none the project knows), the
    scheme and the rest of the URL."""
    scheme, sep, rest = _scheme(url)
    return (dialect_for_scheme(scheme) if sep else None), scheme, rest


def dialect_of(url: str) -> str | None:
    """``postgresql``, ``mysql`` (MariaDB too) or ``sqlite``; None for other schemes."""
    dialect, _, _ = _dialect(url)
    return dialect.name if dialect else None


def driver_of(url: str) -> str | None:
    """The DB-API module the project connects ``url`` with (``psycopg2``, ``psycopg``,
    ``pymysql``, ``sqlite3``); None for other schemes."""
    dialect, scheme, _ = _dialect(url)
    if dialect is None:
        return None
    return dialect.dbapi_modules[dialect.explicit_scheme(scheme).partition("+")[2]]


def sqlalchemy_url(url: str) -> str:
    """``url`` with the project's driver named; other URLs unchanged."""
    dialect, scheme, rest = _dialect(url)
    if dialect is None:
        return url
    explicit = dialect.explicit_scheme(scheme)
    if explicit == scheme:
        return url
    result = f"{explicit}://{rest}"
    for name, value in dialect.driver_options(explicit.partition("+")[2]).items():
        if f"{name}=" not in rest:
            result += ("&" if "?" in result else "?") + f"{name}={value}"
    return result


def engine_url(url: str) -> str:
    """``url`` as the project's own engines open it: the driver named, TLS as configured.

    TLS follows ``REPLICATION_DATABASE_TLS`` (:func:`replication.dbtls.database_tls`);
    a URL's own TLS parameters win.
    """
    explicit = sqlalchemy_url(url)
    dialect, _, _ = _dialect(url)
    if dialect is None or not dialect.has_server:
        return explicit
    return with_tls(explicit, dialect.name, database_tls())


def with_search_path(url: str, schema: str) -> str:
    """A PostgreSQL ``url`` whose connections use ``schema`` (libpq ``options``)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


MariaDBDialect_pymysql: Any = None
"""SQLAlchemy's MariaDB dialect over PyMySQL, set by :func:`register_drivers`.

SQLAlchemy's registry loads a dialect from a module attribute, and its MariaDB
dialects are classes built on demand: this attribute holds the one for PyMySQL.
"""

_registered = False


def register_drivers() -> None:
    """Make plain ``mysql://``, ``mariadb://`` and ``postgresql://`` mean installed drivers.

    In SQLAlchemy's dialect registry: PyMySQL for ``mysql://`` and ``mariadb://``
    when mysqlclient is not installed, psycopg2 for ``postgresql://`` when
    psycopg 3 is not installed. Drivers that are installed keep SQLAlchemy's
    defaults. Idempotent.
    """
    global MariaDBDialect_pymysql, _registered
    if _registered:
        return
    from sqlalchemy.dialects import registry

    if not installed("MySQLdb") and installed("pymysql"):
        from sqlalchemy.dialects.mysql.mariadb import loader

        MariaDBDialect_pymysql = loader("pymysql")
        registry.register("mysql", "sqlalchemy.dialects.mysql.pymysql", "dialect")
        registry.register("mariadb", __name__, "MariaDBDialect_pymysql")
    if not installed("psycopg") and installed("psycopg2"):
        registry.register("postgresql", "sqlalchemy.dialects.postgresql.psycopg2", "dialect")
    _registered = True
