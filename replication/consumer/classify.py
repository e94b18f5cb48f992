"""What a database error means for the records being applied.

Three answers, each with a different remedy (:mod:`replication.dialects.verdicts`):
``CONNECTION`` (reconnect; the records are fine), ``TRANSIENT`` (retry later;
SQS redelivers) and ``DATA`` (some record in the batch is poison; isolate it).

The dialect whose driver raised the error decides, from its SQLSTATE, error
number or message (:meth:`replication.dialects.Dialect.classify`); errors
raised outside a driver are judged by their Python type. No driver is imported.
"""

from __future__ import annotations

__all__ = ["CONNECTION", "DATA", "TRANSIENT", "Verdict", "classify", "describe"]

from replication.dialects import CONNECTION, DATA, TRANSIENT, Verdict, dialect_for_driver
from replication.dialects.verdicts import first_line


def classify(exc: BaseException, service: str = "<consumer>") -> Verdict:
    """The verdict on ``exc``, raised by psycopg2, psycopg 3, PyMySQL or sqlite3 during an apply.

    ``service`` is the consumer whose mirror was written: a pending migration's
    reason names the command that applies it.
    """
    dialect = dialect_for_driver(type(exc).__module__.split(".", 1)[0])
    if dialect is not None:
        return dialect.classify(exc, service)
    message = first_line(exc)
    if isinstance(exc, (ValueError, TypeError, OverflowError)):
        # Raised while adapting a value for the driver (psycopg2 refuses NUL in text).
        return Verdict(DATA, f"database refused a value: {message}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Verdict(CONNECTION, f"database unreachable: {message}")
    return Verdict(TRANSIENT, f"{type(exc).__name__}: {message}")


def describe(exc: BaseException) -> str:
    """The one-line reason of ``exc`` as :func:`classify` words it."""
    return classify(exc).reason
