"""Dead letters as JSON Lines: export without loss, import back into a queue.

One JSON object per line: the DLQ it was read from, its message id, the body
exactly, every message attribute with its data type (binary values in
base64), the SQS system attributes, and what on-call needs to read the file
alone (source queue, entity, reason). Importing sends each line's body and
attributes unchanged, in file order, FIFO group ids kept.

Export files hold message bodies unmasked (personal data included), so they are
created readable by their owner only (0600). Lines are written straight to the
file descriptor and confirmed with fsync; a message may leave its DLQ only once
its line is confirmed (see :class:`ExportFile`).
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "ArchiveError",
    "ArchiveWriteError",
    "ArchivedMessage",
    "ExportFile",
    "describe_os_error",
    "read_archive",
    "to_line",
]

import base64
import binascii
import datetime as dt
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from replication.consumer.dead_letters import DEAD_LETTER_ATTRIBUTES
from replication.dlq.messages import MOVED_BY_SQS, Described
from replication.errors import ConfigurationError

FORMAT = "replication.dlq/1"


class ArchiveError(ConfigurationError):
    """An export file cannot be read; carries every bad line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s), nothing imported:\n{shown}{more}")


def _attributes_out(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in attributes.items():
        kept = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        out[name] = kept
    return out


def to_line(item: Described, *, exported_at: dt.datetime | None = None) -> str:
    """One export line for a dead letter (ends with a newline)."""
    letter = item.letter
    document = {
        "format": FORMAT,
        "queue": letter.dlq,
        "message_id": letter.message_id,
        "body": letter.body,
        "attributes": _attributes_out(letter.attributes),
        "system": letter.system,
        "source_queue": item.source_queue,
        "entity": item.info.label,
        "reason": item.reason,
        "kind": item.kind,
        "exported_at": (exported_at or dt.datetime.now(dt.UTC)).isoformat(),
    }
    return json.dumps(document, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ArchivedMessage:
    """One line of an export file."""

    line: int
    queue: str
    message_id: str
    body: str
    attributes: dict[str, dict[str, Any]]
    """In SendMessage's shape (binary values as bytes)."""
    group_id: str | None
    source_queue: str | None
    raw: str
    """The line as it is in the file."""


def _attributes_in(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ValueError("attributes must be an object")
    out: dict[str, dict[str, Any]] = {}
    for name, attribute in value.items():
        if not isinstance(attribute, dict) or not isinstance(attribute.get("DataType"), str):
            raise ValueError(f"attribute {name!r} has no DataType")
        kept: dict[str, Any] = {"DataType": attribute["DataType"]}
        if isinstance(attribute.get("StringValue"), str):
            kept["StringValue"] = attribute["StringValue"]
        elif isinstance(attribute.get("BinaryValue"), str):
            try:
                kept["BinaryValue"] = base64.b64decode(attribute["BinaryValue"], validate=True)
            except binascii.Error:
                raise ValueError(f"attribute {name!r}: BinaryValue is not base64") from None
        else:
            raise ValueError(f"attribute {name!r} has neither StringValue nor BinaryValue")
        out[name] = kept
    return out


def _parse(number: int, text: str) -> ArchivedMessage:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("format") != FORMAT:
        raise ValueError(f"format is {document.get('format')!r}, expected {FORMAT!r}")
    for name in ("queue", "message_id", "body"):
        if not isinstance(document.get(name), str):
            raise ValueError(f"{name} must be a string")
    system = document.get("system") or {}
    if not isinstance(system, dict):
        raise ValueError("system must be an object")
    source = document.get("source_queue")
    attributes = _attributes_in(document.get("attributes") or {})
    if MOVED_BY_SQS in system:
        # SQS moved it: its dead-letter attributes are its sender's. Imported, it would
        # be a new message without that mark, and they would read as the consumer's.
        attributes = {k: v for k, v in attributes.items() if k not in DEAD_LETTER_ATTRIBUTES}
    return ArchivedMessage(
        line=number,
        queue=document["queue"],
        message_id=document["message_id"],
        body=document["body"],
        attributes=attributes,
        group_id=system.get("MessageGroupId"),
        source_queue=source if isinstance(source, str) else None,
        raw=text,
    )


def read_archive(path: Path) -> list[ArchivedMessage]:
    """Every message of an export file; ArchiveError listing every bad line."""
    if not path.exists():
        raise ConfigurationError(f"no such file: {path}")
    messages: list[ArchivedMessage] = []
    problems: list[str] = []
    for number, text in enumerate(_lines(path), start=1):
        if not text.strip():
            continue
        try:
            messages.append(_parse(number, text))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise ArchiveError(path, problems)
    return messages


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for text in handle:
            yield text.rstrip("\n")


# -- writing ---------------------------------------------------------------------------

PRIVATE = 0o600
"""Export files hold unmasked bodies: readable and writable by their owner only."""

# fsync answers EINVAL or ENOTSUP/EOPNOTSUPP when the file (a pipe, a socket, a
# character device) or its file system has no sync operation at all: nothing was
# attempted, so the answer says nothing about the data, which write() accepted. These
# alone are tolerated, and the command notes that durability could not be confirmed;
# refusing them would make export --remove impossible there. Any other errno may mean
# written data was dropped: EIO and ENOSPC/EDQUOT (write-back failed), EROFS (ext4
# answers it once the file system aborted after an error). After a failed fsync Linux
# may mark the lost pages clean, so a second fsync can succeed falsely: a failure is
# final, never retried.
_NO_SYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def describe_os_error(error: OSError) -> str:
    """An OS error as on-call searches for it: ``No space left on device (ENOSPC)``."""
    if error.errno is None:
        return str(error) or type(error).__name__
    text = error.strerror or os.strerror(error.errno)
    return f"{text} ({errno.errorcode.get(error.errno, error.errno)})"


class ArchiveWriteError(ConfigurationError):
    """An export file could not be written; the lines confirmed before stay valid."""

    def __init__(self, path: Path, step: str, error: OSError, *, lines: int, trimmed: bool) -> None:
        self.path = path
        self.step = step
        self.error = error
        self.lines = lines
        """Lines of the file confirmed on disk before the failure."""
        self.trimmed = trimmed
        """Whether the unconfirmed tail was cut off (else the file may end in a partial line)."""
        if lines:
            held = f"the file holds the {lines} line(s) confirmed on disk before"
            tail = f"; what follows line {lines} may be incomplete: cut it off before importing"
        else:
            held = "no line of the file was confirmed on disk"
            tail = "; it may hold an incomplete line: do not import it"
        super().__init__(
            f"{path}: {step} failed: {describe_os_error(error)}; {held}{'' if trimmed else tail}"
        )


class ExportFile:
    """An export file being written: lines are appended, then confirmed on disk together.

    Writes go straight to the file descriptor (no buffer to flush, so a failing write
    is seen at once). The first failure is final: the file is cut back to its confirmed
    lines and every later call raises the same :class:`ArchiveWriteError`.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._written = 0
        self._confirmed = 0
        self._pending = 0
        self.lines = 0
        """Lines confirmed on disk."""
        self.unsynced: str | None = None
        """Why fsync could not confirm the lines (the file cannot be synced), if so."""
        self.failure: ArchiveWriteError | None = None

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> ExportFile:
        """A new private (0600) file; FileExistsError when it exists and not ``overwrite``."""
        # Never through a symbolic link: one planted in a shared folder would have its
        # target truncated and filled with message bodies.
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if overwrite else os.O_EXCL)
        fd = os.open(path, flags, PRIVATE)
        try:
            status = os.fstat(fd)
            if stat.S_ISREG(status.st_mode):
                # The umask may have taken bits off, and a replaced file keeps its mode.
                # Private first: a file that cannot be made private keeps its content.
                if stat.S_IMODE(status.st_mode) != PRIVATE:
                    os.fchmod(fd, PRIVATE)
                if overwrite:
                    os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def write(self, lines: Iterable[str]) -> None:
        """Append ``lines`` and confirm them on disk; ArchiveWriteError when they may be lost."""
        self.append(lines)
        self.confirm()

    def append(self, lines: Iterable[str]) -> None:
        """Write ``lines`` (each ending with a newline), not yet confirmed."""
        fd = self._usable()
        chunk = list(lines)
        data = memoryview("".join(chunk).encode())
        try:
            while data:
                count = os.write(fd, data)
                if count == 0:  # never for a working file; do not loop forever
                    raise OSError(errno.EIO, "the file took no bytes")
                self._written += count
                data = data[count:]
        except OSError as exc:
            self._fail("write", exc)
        self._pending += len(chunk)

    def confirm(self) -> None:
        """Make every appended line durable (fsync) before anything relies on it."""
        fd = self._usable()
        if self.unsynced is None:
            try:
                os.fsync(fd)
            except OSError as exc:
                if exc.errno not in _NO_SYNC:
                    self._fail("fsync", exc)
                self.unsynced = describe_os_error(exc)
        self._confirmed = self._written
        self.lines += self._pending
        self._pending = 0

    def close(self) -> None:
        """Close the file; ArchiveWriteError when the close reports lost data."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        except OSError as exc:
            if self.failure is None:  # a file system that reports write-back errors here
                self.failure = ArchiveWriteError(
                    self.path, "close", exc, lines=self.lines, trimmed=False
                )
                raise self.failure from exc

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except ArchiveWriteError:
            if kind is None:  # else the error on its way out says more
                raise

    def _usable(self) -> int:
        if self.failure is not None:
            raise self.failure
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        return self._fd

    def _fail(self, step: str, error: OSError) -> NoReturn:
        assert self._fd is not None
        try:  # the unconfirmed tail belongs to messages that stay in their DLQ
            os.ftruncate(self._fd, self._confirmed)
            trimmed = True
        except OSError:
            trimmed = False
        self._pending = 0
        self.failure = ArchiveWriteError(self.path, step, error, lines=self.lines, trimmed=trimmed)
        raise self.failure from error
