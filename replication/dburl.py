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

import importlib.util
from typing import Any

from replication.dbtls import database_tls, with_tls

_POSTGRESQL_INSTALLED = "postgresql+<installed>"  # psycopg2, else psycopg 3 if only it is there
_SCHEMES: dict[str, tuple[str, str | None]] = {
    # scheme: (the project's dialect name, the SQLAlchemy driver it means; None: as written)
    "postgresql": ("postgresql", _POSTGRESQL_INSTALLED),
    "postgres": ("postgresql", _POSTGRESQL_INSTALLED),
    "postgresql+psycopg2": ("postgresql", None),
    "postgresql+psycopg": ("postgresql", None),
    "mysql": ("mysql", "mysql+pymysql"),
    "mysql+pymysql": ("mysql", None),
    "mariadb": ("mysql", "mariadb+pymysql"),
    "mariadb+pymysql": ("mysql", None),
    "sqlite": ("sqlite", None),
    "sqlite+pysqlite": ("sqlite", None),
}
_DBAPI_MODULES = {  # SQLAlchemy's driver name: the DB-API module
    "psycopg2": "psycopg2",
    "psycopg": "psycopg",
    "pymysql": "pymysql",
    "pysqlite": "sqlite3",
    "": "sqlite3",  # sqlite:// names no driver
}


def _installed(module: str) -> bool:
    # find_spec looks the module up without importing it (a driver costs a cold start).
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _postgresql_driver() -> str:
    """The driver plain ``postgresql://`` means: psycopg2, else psycopg 3 if only it is there."""
    if not _installed("psycopg2") and _installed("psycopg"):
        return "psycopg"
    return "psycopg2"


def _scheme(url: str) -> tuple[str, str, str]:
    scheme, sep, rest = url.partition("://")
    return scheme.lower(), sep, rest


def dialect_of(url: str) -> str | None:
    """``postgresql``, ``mysql`` (MariaDB too) or ``sqlite``; None for other schemes."""
    scheme, sep, _ = _scheme(url)
    known = _SCHEMES.get(scheme) if sep else None
    return known[0] if known else None


def _explicit_scheme(scheme: str) -> str | None:
    known = _SCHEMES.get(scheme)
    if known is None:
        return None
    driver = known[1]
    if driver == _POSTGRESQL_INSTALLED:
        return f"postgresql+{_postgresql_driver()}"
    return driver or scheme


def driver_of(url: str) -> str | None:
    """The DB-API module the project connects ``url`` with (``psycopg2``, ``psycopg``,
    ``pymysql``, ``sqlite3``); None for other schemes."""
    scheme, sep, _ = _scheme(url)
    explicit = _explicit_scheme(scheme) if sep else None
    if explicit is None:
        return None
    return _DBAPI_MODULES[explicit.partition("+")[2]]


def sqlalchemy_url(url: str) -> str:
    """``url`` with the project's driver named; other URLs unchanged."""
    scheme, sep, rest = _scheme(url)
    explicit = _explicit_scheme(scheme) if sep else None
    if explicit is None or explicit == scheme:
        return url
    result = f"{explicit}://{rest}"
    if explicit.endswith("pymysql") and "charset=" not in rest:
        result += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return result


def engine_url(url: str) -> str:
    """``url`` as the project's own engines open it: the driver named, TLS as configured.

    TLS follows ``REPLICATION_DATABASE_TLS`` (:func:`replication.dbtls.database_tls`);
    a URL's own TLS parameters win.
    """
    explicit = sqlalchemy_url(url)
    dialect = dialect_of(url)
    if dialect is None or dialect == "sqlite":
        return explicit
    return with_tls(explicit, dialect, database_tls())


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

    if not _installed("MySQLdb") and _installed("pymysql"):
        from sqlalchemy.dialects.mysql.mariadb import loader

        MariaDBDialect_pymysql = loader("pymysql")
        registry.register("mysql", "sqlalchemy.dialects.mysql.pymysql", "dialect")
        registry.register("mariadb", __name__, "MariaDBDialect_pymysql")
    if not _installed("psycopg") and _installed("psycopg2"):
        registry.register("postgresql", "sqlalchemy.dialects.postgresql.psycopg2", "dialect")
    _registered = True
