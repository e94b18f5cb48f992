"""A service's revisions as data, for ``migrations history --json`` and ``current --json``."""

from __future__ import annotations

__all__ = ["Revision", "described", "revision_log"]

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from replication.errors import ConfigurationError


@dataclass(frozen=True)
class Revision:
    """One revision of a service's chain."""

    revision: str
    down_revisions: tuple[str, ...]
    message: str
    head: bool
    path: str
    current: bool | None = None
    """Whether the database is at it; None when the database was not read."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "revision": self.revision,
            "down_revisions": list(self.down_revisions),
            "message": self.message,
            "head": self.head,
            "current": self.current,
            "path": self.path,
        }


def _revision(script: Script, current: Collection[str] | None) -> Revision:
    down = script.down_revision
    downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    return Revision(
        revision=script.revision,
        down_revisions=downs,
        message=script.doc,
        head=script.is_head,
        path=script.path,
        current=None if current is None else script.revision in current,
    )


def revision_log(
    config: Config, rev_range: str | None = None, current: Collection[str] | None = None
) -> list[Revision]:
    """The revisions in ``rev_range`` (``start:end``, Alembic's syntax), newest first.

    ``current``: the revisions the database is at, to mark them; None leaves them unmarked.
    """
    base, head = "base", "heads"
    if rev_range is not None:
        if ":" not in rev_range:
            raise ConfigurationError("a range is [start]:[end], [start]: or :[end]")
        start, end = rev_range.strip().split(":")
        base, head = start or base, end or head
    scripts = ScriptDirectory.from_config(config)
    return [_revision(s, current) for s in scripts.walk_revisions(base=base, head=head)]


def described(config: Config, revisions: Collection[str]) -> list[Revision]:
    """The revisions named, each from its script; ConfigurationError for an unknown one."""
    scripts = ScriptDirectory.from_config(config)
    found = []
    for name in revisions:
        try:
            script = scripts.get_revision(name)
        except CommandError as exc:
            raise ConfigurationError(str(exc)) from exc
        if script is None:
            raise ConfigurationError(f"no script for revision {name}")
        found.append(_revision(script, revisions))
    return found
