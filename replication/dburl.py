"""Database URLs as users write them, made explicit about the driver the project uses.

``postgresql://`` means psycopg2 and ``mysql://`` / ``mariadb://`` mean PyMySQL
(utf8mb4) everywhere in the project, whatever SQLAlchemy's default driver for
the scheme is (SQLAlchemy 2.1 picks psycopg 3 for ``postgresql://``).
"""

from __future__ import annotations

__all__ = ["dialect_of", "sqlalchemy_url", "with_search_path"]

_SCHEMES: dict[str, tuple[str, str | None]] = {
    # scheme: (the project's dialect name, the SQLAlchemy driver it means; None: as written)
    "postgresql": ("postgresql", "postgresql+psycopg2"),
    "postgres": ("postgresql", "postgresql+psycopg2"),
    "postgresql+psycopg2": ("postgresql", None),
    "mysql": ("mysql", "mysql+pymysql"),
    "mysql+pymysql": ("mysql", None),
    "mariadb": ("mysql", "mariadb+pymysql"),
    "mariadb+pymysql": ("mysql", None),
    "sqlite": ("sqlite", None),
    "sqlite+pysqlite": ("sqlite", None),
}


def dialect_of(url: str) -> str | None:
    """``postgresql``, ``mysql`` (MariaDB too) or ``sqlite``; None for other schemes."""
    scheme, sep, _ = url.partition("://")
    known = _SCHEMES.get(scheme.lower()) if sep else None
    return known[0] if known else None


def sqlalchemy_url(url: str) -> str:
    """``url`` with the project's driver named; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    known = _SCHEMES.get(scheme.lower())
    driver = known[1] if known else None
    if not sep or driver is None:
        return url
    result = f"{driver}://{rest}"
    if driver.endswith("pymysql") and "charset=" not in rest:
        result += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return result


def with_search_path(url: str, schema: str) -> str:
    """A PostgreSQL ``url`` whose connections use ``schema`` (libpq ``options``)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"
