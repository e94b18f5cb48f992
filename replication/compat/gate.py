"""The contract lock, and the gate that classifies each change by who it breaks.

``replication contracts lock`` writes the JSON Schema and key of every
registered contract version to a lock file; ``replication contracts check``
compares the registered contracts with it and with the consumers' manifests.

Consumers read tolerantly (only the fields they mirror, see
``ContractInfo.reader``), so a change reaches a consumer only through a field
it mirrors. Each change is therefore one of:

- **compatible**: safe for every consumer, whatever it mirrors (a new optional
  field, a new contract version);
- **breaking** for the consumers that mirror the field (or, for a key change
  or a removed version, every consumer of that version), named with the
  fields they mirror;
- **breaking for nobody**: it would break a consumer mirroring the field, and
  none does.

Both directions count, because owners and consumers deploy independently and
queues and dead-letter queues hold events written before the change: a
widened type sends values an older consumer refuses (or its column cannot
hold); a narrowed one refuses events already written.
"""

from __future__ import annotations

__all__ = [
    "LOCK_FORMAT",
    "Change",
    "ConsumerUse",
    "Report",
    "compare",
    "lock_document",
    "read_lock",
]

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replication.compat.schema import Difference, contract_schema, field_differences, same_shape
from replication.contracts import ContractRegistry
from replication.errors import ConfigurationError

LOCK_FORMAT = "replication.contracts-lock/1"


@dataclass(frozen=True)
class ConsumerUse:
    """A consumer's mirror of one contract version: which fields it reads."""

    service: str
    entity: str
    version: int
    fields: frozenset[str]


@dataclass(frozen=True)
class Change:
    """One change of a contract version and whom it breaks."""

    contract: str
    """``entity vN``."""
    field: str | None
    """The top-level field it reaches (None: the whole contract, e.g. its key)."""
    rule: str
    detail: str
    breaking: bool
    """False: compatible for everyone."""
    consumers: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """For a breaking change: each consumer it breaks, with the fields it mirrors."""

    @property
    def verdict(self) -> str:
        """``compatible``, ``breaking`` (for named consumers) or ``breaking for nobody``."""
        if not self.breaking:
            return "compatible"
        return "breaking" if self.consumers else "breaking for nobody"

    def as_json(self) -> dict[str, Any]:
        """The change as a JSON object for ``--json``."""
        return {
            "contract": self.contract,
            "field": self.field,
            "rule": self.rule,
            "detail": self.detail,
            "verdict": self.verdict,
            "consumers": {name: list(fields) for name, fields in self.consumers.items()},
        }


@dataclass(frozen=True)
class Report:
    """Every change between the lock and the registered contracts."""

    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The changes that break a named consumer."""
        return tuple(c for c in self.changes if c.verdict == "breaking")


def lock_document(contracts: ContractRegistry) -> dict[str, Any]:
    """The lock file's content for every registered contract version."""
    return {
        "format": LOCK_FORMAT,
        "contracts": {
            info.label: {"key": list(info.key), "schema": contract_schema(info)}
            for info in contracts
        },
    }


def read_lock(path: Path) -> dict[str, Any]:
    """The lock file at ``path``; ConfigurationError when missing or not a lock."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(
            f"no contract lock at {path}: write it with `replication contracts lock` and commit it"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read the contract lock {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != LOCK_FORMAT:
        raise ConfigurationError(f"{path} is not a contract lock (format {LOCK_FORMAT})")
    return document


def compare(
    locked: dict[str, Any], contracts: ContractRegistry, consumers: Iterable[ConsumerUse]
) -> Report:
    """Classify every difference between the ``locked`` document and ``contracts``."""
    uses = list(consumers)
    current = lock_document(contracts)["contracts"]
    before = locked["contracts"]
    changes: list[Change] = []
    for label in sorted(set(before) | set(current)):
        readers = [u for u in uses if f"{u.entity} v{u.version}" == label]
        if label not in current:
            changes.append(_whole(label, "contract version removed", "no longer declared", readers))
        elif label not in before:
            changes.append(Change(label, None, "contract version added", "new", False))
        else:
            changes += _contract_changes(label, before[label], current[label], readers)
    return Report(tuple(changes))


def _whole(label: str, rule: str, detail: str, readers: list[ConsumerUse]) -> Change:
    named = {u.service: tuple(sorted(u.fields)) for u in readers}
    return Change(label, None, rule, detail, True, named)


def _contract_changes(
    label: str, old: dict[str, Any], new: dict[str, Any], readers: list[ConsumerUse]
) -> list[Change]:
    changes: list[Change] = []
    if old["key"] != new["key"]:
        detail = f"key {', '.join(old['key'])} -> {', '.join(new['key'])}"
        changes.append(_whole(label, "key changed", detail, readers))
    old_schema, new_schema = old["schema"], new["schema"]
    old_defs, new_defs = old_schema.get("$defs", {}), new_schema.get("$defs", {})
    old_props, new_props = old_schema.get("properties", {}), new_schema.get("properties", {})
    required = set(new_schema.get("required", []))
    removed = [name for name in old_props if name not in new_props]
    added = [name for name in new_props if name not in old_props]
    renamed: dict[str, str] = {}
    for gone in removed:
        twins = [
            a
            for a in added
            if same_shape(old_props[gone], new_props[a], old_defs, new_defs)
            and a not in renamed.values()
        ]
        if len(twins) == 1:
            renamed[gone] = twins[0]

    def change(name: str, rule: str, detail: str, *, breaking: bool, names: set[str]) -> None:
        named = {u.service: tuple(sorted(u.fields & names)) for u in readers if u.fields & names}
        changes.append(Change(label, name, rule, detail, breaking, named if breaking else {}))

    for gone, to in renamed.items():
        change(gone, "field renamed", f"{gone} -> {to}", breaking=True, names={gone, to})
    for gone in removed:
        if gone not in renamed:
            change(gone, "field removed", "no longer declared", breaking=True, names={gone})
    for name in added:
        if name in renamed.values():
            continue
        if name in required:
            change(
                name,
                "required field added",
                "events written before it lack it",
                breaking=True,
                names={name},
            )
        else:
            change(name, "optional field added", "new, optional", breaking=False, names={name})
    for name in new_props:
        if name not in old_props:
            continue
        differences = field_differences(name, old_props[name], new_props[name], old_defs, new_defs)
        for difference in differences:
            change(name, difference.rule, _detail(difference), breaking=True, names={name})
    return changes


def _detail(difference: Difference) -> str:
    return f"{difference.path}: {difference.detail}"
