"""How the library logs: the Powertools Logger of the Lambda functions, everywhere.

The apply function logs each record through :func:`service_logger`. The
long-running commands (``replication relay``, ``replication consume``) say what
they do through a :class:`ProcessLog`: JSON lines through that same logger (one
object per line with ``level``, ``location``, ``message``, ``timestamp``,
``service`` and the line's own fields), or, when standard output is a terminal,
the same lines as plain sentences for a person. ``REPLICATION_LOG_FORMAT``
(``json`` or ``text``) overrides the guess. Either way the level is
``REPLICATION_LOG_LEVEL``, else ``POWERTOOLS_LOG_LEVEL``, else ``INFO``.
"""

from __future__ import annotations

__all__ = ["LOG_FORMAT", "ProcessLog", "json_wanted", "log_level", "service_logger"]

import logging
import os
import sys
from typing import IO, Any, TextIO

from aws_lambda_powertools import Logger

from replication.errors import ConfigurationError

LOG_FORMAT = "REPLICATION_LOG_FORMAT"
_FORMATS = ("json", "text")


def log_level(default: str = "INFO") -> str:
    """The level ``REPLICATION_LOG_LEVEL`` or ``POWERTOOLS_LOG_LEVEL`` sets, else ``default``."""
    return (
        os.environ.get("REPLICATION_LOG_LEVEL") or os.environ.get("POWERTOOLS_LOG_LEVEL") or default
    )


def json_wanted(stdout: IO[str] | None = None) -> bool:
    """Whether a command logs JSON: as ``REPLICATION_LOG_FORMAT`` says, else off a terminal."""
    chosen = os.environ.get(LOG_FORMAT, "").strip().lower()
    if chosen:
        if chosen not in _FORMATS:
            raise ConfigurationError(f"{LOG_FORMAT} is {chosen!r}: use json or text")
        return chosen == "json"
    stream = stdout or sys.stdout
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return True


def service_logger(service: str, *, level: str | int, stream: IO[str] | None = None) -> Logger:
    """The Powertools Logger of ``service``, writing JSON lines to ``stream`` (stdout)."""
    target = stream or sys.stdout
    logger = Logger(service=service, level=level, stream=target)
    # Powertools configures one logging.Logger per service name, once; a later call for
    # the same service (a test, a re-built consumer) still writes where and as it was told.
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(target)
    logger.setLevel(level)
    return logger


class ProcessLog:
    """What a long-running command says: JSON log lines, or sentences for a person.

    Each line has a short ``message`` that stays the same from run to run and
    fields; ``text`` is the sentence a person reads instead (default: the message).
    """

    def __init__(
        self, *, logger: Logger | None = None, out: TextIO | None = None, level: str | int = "INFO"
    ) -> None:
        self._logger = logger
        self._out = out
        number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if not isinstance(number, int):
            raise ConfigurationError(f"log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
        self._level = number

    @classmethod
    def for_command(
        cls, service: str, *, text_to: TextIO, level: str | int | None = None
    ) -> ProcessLog:
        """JSON lines on stdout through ``service``'s logger, or sentences to ``text_to`` on a
        terminal; at ``level`` (default: :func:`log_level`)."""
        level = level or log_level()
        if json_wanted():
            return cls(logger=service_logger(service, level=level), level=level)
        return cls(out=text_to, level=level)

    @property
    def json(self) -> bool:
        """Whether the lines are JSON."""
        return self._logger is not None

    def info(self, message: str, text: str | None = None, **fields: Any) -> None:
        """Say what happened."""
        self._say(logging.INFO, message, text, fields)

    def warning(self, message: str, text: str | None = None, **fields: Any) -> None:
        """Say what went wrong and is retried."""
        self._say(logging.WARNING, message, text, fields)

    def error(self, message: str, text: str | None = None, **fields: Any) -> None:
        """Say what went wrong and is not retried."""
        self._say(logging.ERROR, message, text, fields)

    def _say(self, level: int, message: str, text: str | None, fields: dict[str, Any]) -> None:
        if level < self._level:
            return
        if self._logger is not None:
            log = {logging.INFO: self._logger.info, logging.WARNING: self._logger.warning}.get(
                level, self._logger.error
            )
            # ``location`` names the line that called info(), warning() or error().
            log(message, extra=fields, stacklevel=4)
        elif self._out is not None:
            print(text or message, file=self._out, flush=True)
