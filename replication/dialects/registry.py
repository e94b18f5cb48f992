"""The dialects the project knows, by name, alias, driver and URL scheme.

PostgreSQL, MySQL/MariaDB and SQLite are registered when this module loads;
:func:`register` adds another database without touching the rest of the
project, which only ever looks a dialect up here.
"""

from __future__ import annotations

__all__ = [
    "dialect_for_driver",
    "dialect_for_scheme",
    "dialect_named",
    "register",
    "registered",
    "unregister",
]

from replication.dialects.base import Dialect
from replication.dialects.mysql import MYSQL
from replication.dialects.postgresql import POSTGRESQL
from replication.dialects.sqlite import SQLITE
from replication.errors import ConfigurationError

_dialects: list[Dialect] = []
_by_name: dict[str, Dialect] = {}
_by_driver: dict[str, Dialect] = {}
_by_scheme: dict[str, Dialect] = {}


def register(dialect: Dialect) -> Dialect:
    """Make ``dialect`` known; refused when one of its names, drivers or schemes is taken."""
    names = (dialect.name, *dialect.aliases)
    for kind, index, keys in (
        ("name", _by_name, names),
        ("driver", _by_driver, dialect.drivers),
        ("URL scheme", _by_scheme, tuple(dialect.schemes)),
    ):
        taken = [k for k in keys if k in index]
        if taken:
            raise ConfigurationError(
                f"cannot register {dialect!r}: {kind} {', '.join(taken)} is {index[taken[0]]!r}'s"
            )
    _dialects.append(dialect)
    _by_name.update(dict.fromkeys(names, dialect))
    _by_driver.update(dict.fromkeys(dialect.drivers, dialect))
    _by_scheme.update(dict.fromkeys(dialect.schemes, dialect))
    return dialect


def unregister(dialect: Dialect) -> None:
    """Forget ``dialect`` (a registered one)."""
    _dialects.remove(dialect)
    for index in (_by_name, _by_driver, _by_scheme):
        for key in [k for k, v in index.items() if v is dialect]:
            del index[key]


def registered() -> tuple[Dialect, ...]:
    """Every dialect known, in the order they were registered."""
    return tuple(_dialects)


def dialect_named(name: str) -> Dialect:
    """The dialect called ``name`` (or one of its aliases); ConfigurationError if none is."""
    try:
        return _by_name[name]
    except KeyError:
        supported = ", ".join(d.name for d in _dialects)
        raise ConfigurationError(f"unsupported dialect {name!r} (supported: {supported})") from None


def dialect_for_driver(module: str) -> Dialect | None:
    """The dialect that the DB-API module ``module`` (its top-level package) reaches."""
    return _by_driver.get(module)


def dialect_for_scheme(scheme: str) -> Dialect | None:
    """The dialect of the database URL scheme ``scheme`` (lower case), if one."""
    return _by_scheme.get(scheme)


for _builtin in (POSTGRESQL, MYSQL, SQLITE):
    register(_builtin)
