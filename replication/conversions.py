"""Two major versions of an entity published side by side.

A breaking change is made by publishing a new major version next to the old
one. The owner records the newest version only; each older version it still
publishes is derived by a declared conversion, in the same transaction, so
consumers pinned to the old version keep receiving every change until they
move::

    @conversion(CustomerV2, Customer)
    def customer_v2_to_v1(customer: CustomerV2) -> Customer:
        return Customer(id=customer.id, name=customer.display_name, ...)

A conversion keeps the entity and the key (a delete of key K at version V is
a delete of K at V in every version). The owner's manifest lists every
version it publishes; it is checked against the conversions when it loads.
"""

from __future__ import annotations

__all__ = ["Conversion", "ConversionRegistry", "conversion", "conversions", "with_older_versions"]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from replication.contracts import Contract, ContractInfo
from replication.errors import ContractDefinitionError
from replication.events import DELETED, ChangeEvent, deleted, upserted

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Conversion:
    """How a state of one major version becomes a state of an older one."""

    source: ContractInfo
    target: ContractInfo
    convert: Callable[[Any], Contract]


class ConversionRegistry:
    """The declared conversions, by source and by target contract."""

    def __init__(self) -> None:
        self._by_source: dict[tuple[str, int], list[Conversion]] = {}
        self._by_target: dict[tuple[str, int], Conversion] = {}

    def add(self, item: Conversion) -> None:
        """Declare ``item``; checked at once (same entity and key, to an older version)."""
        source, target = item.source, item.target
        where = f"conversion {source.label} -> {target.label}"
        if source.entity != target.entity:
            raise ContractDefinitionError(f"{where}: both must be versions of one entity")
        if target.version >= source.version:
            raise ContractDefinitionError(
                f"{where}: converts a newer version to an older one (the owner records the "
                "newest and derives the rest)"
            )
        if [(s.name, s.kind) for s in source.key_specs] != [
            (s.name, s.kind) for s in target.key_specs
        ]:
            raise ContractDefinitionError(
                f"{where}: the key must be the same in both versions (a delete carries only "
                "the key)"
            )
        existing = self._by_target.get((target.entity, target.version))
        if existing is not None and existing.source.version != source.version:
            raise ContractDefinitionError(
                f"{where}: {target.label} is already derived from {existing.source.label}"
            )
        self._by_target[(target.entity, target.version)] = item
        found = [
            c
            for c in self._by_source.get((source.entity, source.version), [])
            if c.target.version != target.version
        ]
        found.append(item)
        found.sort(key=lambda c: -c.target.version)
        self._by_source[(source.entity, source.version)] = found

    def from_version(self, info: ContractInfo) -> list[Conversion]:
        """The conversions out of ``info``, newest target first."""
        return self._by_source.get((info.entity, info.version), [])

    def into(self, info: ContractInfo) -> Conversion | None:
        """The conversion deriving ``info`` from a newer version, if one is declared."""
        return self._by_target.get((info.entity, info.version))

    def published_with(self, info: ContractInfo) -> list[int]:
        """The major versions written when ``info`` is recorded: itself and its targets."""
        return [info.version, *(c.target.version for c in self.from_version(info))]


conversions = ConversionRegistry()
"""The default registry: :func:`conversion` declares into it."""


def conversion(
    source: type[Contract], target: type[Contract], *, into: ConversionRegistry = conversions
) -> Callable[[_F], _F]:
    """Declare the decorated function as the conversion of ``source`` states to ``target``."""

    def declare(function: _F) -> _F:
        into.add(Conversion(source.__contract__, target.__contract__, function))
        return function

    return declare


def with_older_versions(
    event: ChangeEvent, registry: ConversionRegistry = conversions
) -> list[ChangeEvent]:
    """``event`` and the same change in every older version derived from its contract.

    Raises ValueError when ``event``'s version is itself derived from a newer
    one: recording it directly would leave the newer version's consumers behind.
    """
    newer = registry.into(event.contract)
    if newer is not None:
        raise ValueError(
            f"{event.contract.label} is derived from {newer.source.label} by its declared "
            f"conversion: record {newer.source.label} changes instead"
        )
    events = [event]
    for item in registry.from_version(event.contract):
        if event.op == DELETED:
            events.append(deleted(item.target, event.key, event.version, time=event.time))
            continue
        state = item.convert(event.data)
        if type(state) is not item.target.model:
            raise TypeError(
                f"conversion {item.source.label} -> {item.target.label} returned "
                f"{type(state).__name__}, not {item.target.model.__name__}"
            )
        if state.key_values() != event.key:
            raise ValueError(
                f"conversion {item.source.label} -> {item.target.label} changed the key "
                f"of {event.subject!r}"
            )
        events.append(upserted(state, event.version, time=event.time))
    return events
