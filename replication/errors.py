"""The error tree, split by what the caller should do about an error.

- ``ConfigurationError``: a declaration is wrong (contract, manifest, mirror);
  fix it and redeploy. Retrying changes nothing.
- ``InvalidEventError``: one change event can never be applied (bad JSON,
  unknown entity, contract violation). Send it to the dead-letter queue with
  its reason; apply the rest of the batch.
- ``TransientError``: the failure may pass (database down, deadlock). Retry.
  ``UnreachableError``, one of them: an endpoint (AWS, a database) does not
  answer or refuses the credentials; check it is up and configured.

"Stale" and "duplicate" events are results of the apply, never errors.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ContractDefinitionError",
    "InvalidEventError",
    "ManifestError",
    "ManifestIssue",
    "ReplicationError",
    "TransientError",
    "UnknownContractError",
    "UnreachableError",
]

from dataclasses import dataclass


class ReplicationError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(ReplicationError):
    """A declaration is wrong; fix it, retrying will not help."""


class ContractDefinitionError(ConfigurationError):
    """A contract class is declared in a way the project cannot replicate."""


class UnknownContractError(ConfigurationError):
    """No contract is registered for an entity and major version."""

    def __init__(self, entity: str, version: int | None, known: list[str]) -> None:
        self.entity = entity
        self.version = version
        self.known = known
        what = entity if version is None else f"{entity} v{version}"
        hint = ", ".join(known) if known else "none"
        super().__init__(f"unknown contract {what} (registered: {hint})")


@dataclass(frozen=True)
class ManifestIssue:
    """One problem found in a service manifest, located as precisely as possible."""

    file: str
    path: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        at = f" at {self.path}" if self.path else ""
        return f"{where}{at}: {self.problem}"


class ManifestError(ConfigurationError):
    """A service manifest is invalid; carries every problem found, each located."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class InvalidEventError(ReplicationError):
    """A change event can never be applied; dead-letter it with this reason."""

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        self.reason = reason
        self.event_id = event_id
        prefix = f"event {event_id}: " if event_id else ""
        super().__init__(f"{prefix}{reason}")


class TransientError(ReplicationError):
    """The failure may pass on its own (database unreachable, deadlock); retry later."""


class UnreachableError(TransientError):
    """An endpoint (AWS, a database) does not answer or rejects the credentials."""
