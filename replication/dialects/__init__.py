"""Everything that differs between the databases the project writes to, one object per database.

Each supported database has a module here holding a :class:`Dialect`
subclass and its one instance: :mod:`~replication.dialects.postgresql`,
:mod:`~replication.dialects.mysql` (MariaDB too) and
:mod:`~replication.dialects.sqlite`. The rest of the project looks a dialect
up in the registry (:func:`dialect_named`, :func:`dialect_for_driver`,
:func:`dialect_for_scheme`) and asks it, so adding a database is adding a
module and registering its dialect. Nothing here imports SQLAlchemy, boto3
or a driver on import: the apply function's hot path loads this package.
"""

from replication.dialects.base import Dialect, Endpoint, StageStatements
from replication.dialects.registry import (
    dialect_for_driver,
    dialect_for_scheme,
    dialect_named,
    register,
    registered,
    unregister,
)
from replication.dialects.verdicts import CONNECTION, DATA, TRANSIENT, Kind, Verdict

__all__ = [
    "CONNECTION",
    "DATA",
    "TRANSIENT",
    "Dialect",
    "Endpoint",
    "Kind",
    "StageStatements",
    "Verdict",
    "dialect_for_driver",
    "dialect_for_scheme",
    "dialect_named",
    "register",
    "registered",
    "unregister",
]
