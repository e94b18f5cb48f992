"""Database URLs as users write them, made explicit about the driver the project uses.

``postgresql://`` means psycopg2 and ``mysql://`` / ``mariadb://`` mean PyMySQL
(utf8mb4) everywhere in the project, whatever SQLAlchemy's default driver for
the scheme is (SQLAlchemy 2.1 picks psycopg 3 for ``postgresql://``).
"""

from __future__ import annotations

__all__ = ["sqlalchemy_url", "with_search_path"]

_DRIVERS = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def sqlalchemy_url(url: str) -> str:
    """``url`` with the project's driver named; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    driver = _DRIVERS.get(scheme.lower())
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
