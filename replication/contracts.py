"""Contracts: the pydantic model of an entity at one major version.

A contract is declared by subclassing :class:`Contract` with class keywords::

    class Customer(Contract, entity="crm.customer", version=1, key="id"):
        id: UUID
        email: Annotated[str, Pii]

Declaring it registers it in :data:`registry`. The declaration is checked at
once: key fields must exist and be of a key type, names must be safe as SQL
column names, and every field must have a type a mirror column can hold.
"""

from __future__ import annotations

__all__ = [
    "KEY_KINDS",
    "PII_MASK",
    "Contract",
    "ContractInfo",
    "ContractRegistry",
    "FieldKind",
    "FieldSpec",
    "Pii",
    "registry",
    "unportable_reason",
]

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model, field_validator

from replication.errors import ContractDefinitionError, UnknownContractError
from replication.fields import (
    KEY_KINDS,
    PII_MASK,
    FieldKind,
    FieldSpec,
    Pii,
    field_spec,
)
from replication.masking import Mask, masked_items, model_mask
from replication.portable import unportable_reason

ENTITY_RE = re.compile(r"[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,30}")
FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,58}")


@dataclass(frozen=True)
class ContractInfo:
    """The identity and shape of a contract class."""

    entity: str
    version: int
    key: tuple[str, ...]
    fields: dict[str, FieldSpec] = field(repr=False)
    model: type[Contract] = field(repr=False)

    @property
    def owner(self) -> str:
        """The owning service: the part of the entity name before the dot."""
        return self.entity.split(".", 1)[0]

    @property
    def contract_id(self) -> str:
        """The id used in the event's ``dataschema``: ``contract:<entity>/v<version>``."""
        return f"contract:{self.entity}/v{self.version}"

    @property
    def label(self) -> str:
        """Human form, e.g. ``crm.customer v1``."""
        return f"{self.entity} v{self.version}"

    @functools.cached_property
    def key_specs(self) -> tuple[FieldSpec, ...]:
        """The key fields' specs, in key order."""
        return tuple(self.fields[name] for name in self.key)

    @property
    def pii_fields(self) -> frozenset[str]:
        """Names of the fields marked :data:`Pii`."""
        return frozenset(name for name, spec in self.fields.items() if spec.pii)

    @property
    def mask(self) -> Mask:
        """What output hides of this contract's data: pii at any depth, undeclared fields."""
        return model_mask(self.model)

    def reader(self, fields: Iterable[str]) -> type[Contract]:
        """The model a consumer validates events with: only ``fields`` (and the key).

        A consumer is a tolerant reader: fields it does not mirror, and fields
        it does not know yet, are ignored, so an owner can add a field or
        change one nobody mirrors without breaking anyone. The kept fields keep
        their types, constraints and field validators; model validators
        (rules across fields) belong to the owner and do not run here.
        """
        # Asked once per event: the fields as given find the model without recomputing.
        asked = (self.model, tuple(fields))
        model = _readers.get(asked)
        if model is None:
            wanted = set(asked[1]) | set(self.key)
            names = tuple(name for name in self.fields if name in wanted)
            model = _readers.get((self.model, names)) or _reader_model(self, names)
            _readers[(self.model, names)] = _readers[asked] = model
        return model


class Contract(BaseModel):
    """Base of every contract; subclass with ``entity=``, ``version=`` and ``key=``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    __contract__: ClassVar[ContractInfo]

    def __init_subclass__(
        cls,
        *,
        entity: str | None = None,
        version: int | None = None,
        key: str | tuple[str, ...] | None = None,
        register: bool = True,
        **kwargs: Any,
    ) -> None:
        # Declared here so type checkers accept the class keywords; they are
        # consumed in __pydantic_init_subclass__, once the fields exist.
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        entity = kwargs.get("entity")
        version = kwargs.get("version")
        key = kwargs.get("key")
        if entity is None and version is None and key is None:
            return  # an abstract intermediate base
        cls.__contract__ = _build_info(cls, entity, version, key)
        if kwargs.get("register", True):
            registry.register(cls)

    @field_validator("*", mode="after")
    @classmethod
    def _reject_unportable_values(cls, value: Any) -> Any:
        problem = unportable_reason(value)
        if problem:
            raise ValueError(problem)
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # pii never reaches logs through a repr or an f-string, nested models included.
        return masked_items(super().__repr_args__(), type(self), PII_MASK)

    def key_values(self) -> tuple[Any, ...]:
        """The values of the key fields, in key order."""
        key = self.__contract__.key
        if len(key) == 1:
            return (getattr(self, key[0]),)
        return tuple(getattr(self, name) for name in key)


class _Reader(Contract):
    """Base of the consumer-side views of contracts: unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


_readers: dict[tuple[type[Contract], tuple[str, ...]], type[Contract]] = {}


def _reader_model(info: ContractInfo, names: tuple[str, ...]) -> type[Contract]:
    inherited = set(Contract.__pydantic_decorators__.field_validators)
    validators: dict[str, Any] = {}
    for name, decorator in info.model.__pydantic_decorators__.field_validators.items():
        targets = decorator.info.fields
        kept = targets if "*" in targets else tuple(f for f in targets if f in names)
        if name in inherited or not kept:
            continue
        function = getattr(decorator.func, "__func__", decorator.func)
        validators[name] = field_validator(*kept, mode=decorator.info.mode, check_fields=False)(
            function
        )
    definitions: dict[str, Any] = {
        name: (info.model.model_fields[name].annotation, info.model.model_fields[name])
        for name in names
    }
    model = create_model(
        f"{info.model.__name__}Reader",
        __base__=_Reader,
        __module__=info.model.__module__,
        __validators__=validators,
        **definitions,
    )
    model.__contract__ = info
    return model


def _build_info(cls: type[Contract], entity: Any, version: Any, key: Any) -> ContractInfo:
    name = cls.__qualname__
    if not isinstance(entity, str) or not ENTITY_RE.fullmatch(entity):
        raise ContractDefinitionError(
            f"{name}: entity must look like '<owner>.<entity>' in lower case "
            f"(letters, digits, underscores), got {entity!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ContractDefinitionError(
            f"{name}: version must be a positive integer, got {version!r}"
        )
    keys = (key,) if isinstance(key, str) else key
    if not isinstance(keys, tuple) or not keys or not all(isinstance(k, str) for k in keys):
        raise ContractDefinitionError(
            f"{name}: key must name one field or a tuple of fields, got {key!r}"
        )
    if len(set(keys)) != len(keys):
        raise ContractDefinitionError(f"{name}: key names a field twice: {keys!r}")
    fields: dict[str, FieldSpec] = {}
    for field_name, info in cls.model_fields.items():
        if not FIELD_NAME_RE.fullmatch(field_name):
            raise ContractDefinitionError(
                f"{name}.{field_name}: field names must be lower case letters, digits and "
                "underscores, start with a letter and be at most 59 characters "
                "(they become SQL column names)"
            )
        fields[field_name] = field_spec(name, field_name, info)
    for k in keys:
        if k not in fields:
            raise ContractDefinitionError(
                f"{name}: key field {k!r} is not a field (fields: {', '.join(fields)})"
            )
        spec = fields[k]
        if spec.kind not in KEY_KINDS:
            raise ContractDefinitionError(
                f"{name}.{k}: a key field must be str, int or UUID, not {spec.kind}"
            )
        if spec.nullable:
            raise ContractDefinitionError(f"{name}.{k}: a key field cannot be optional")
        if spec.pii:
            raise ContractDefinitionError(
                f"{name}.{k}: a key field cannot be pii: keys appear in event subjects and logs, "
                "and on-call finds a record by its key; key the entity by an id that is not "
                "personal data and keep the personal value in a non-key field marked Pii"
            )
    return ContractInfo(entity=entity, version=version, key=keys, fields=fields, model=cls)


class ContractRegistry:
    """Finds contracts by entity and major version."""

    def __init__(self) -> None:
        self._contracts: dict[tuple[str, int], type[Contract]] = {}
        self.memo: dict[Any, Any] = {}
        """What readers derive from the registered contracts (the event decoder's lookups),
        dropped whenever a contract registers."""

    def register(self, model: type[Contract]) -> None:
        """Add a contract class; a different class for the same entity and version is an error."""
        info = model.__contract__
        slot = (info.entity, info.version)
        existing = self._contracts.get(slot)
        if existing is not None and _origin(existing) != _origin(model):
            raise ContractDefinitionError(
                f"{info.label} is declared twice: by {_origin(existing)} and by {_origin(model)}"
            )
        self._contracts[slot] = model
        self.memo.clear()

    def get(self, entity: str, version: int) -> ContractInfo:
        """The contract of ``entity`` at major ``version``; raises UnknownContractError."""
        model = self._contracts.get((entity, version))
        if model is None:
            raise UnknownContractError(entity, version, self.labels())
        return model.__contract__

    def find(self, entity: str, version: int) -> ContractInfo | None:
        """Like :meth:`get`, but None when unknown."""
        model = self._contracts.get((entity, version))
        return None if model is None else model.__contract__

    def versions(self, entity: str) -> list[int]:
        """The registered major versions of ``entity``, ascending."""
        return sorted(v for e, v in self._contracts if e == entity)

    def labels(self) -> list[str]:
        """Every registered contract as ``entity vN``, sorted."""
        return [f"{e} v{v}" for e, v in sorted(self._contracts)]

    def __iter__(self) -> Iterator[ContractInfo]:
        return iter(self._contracts[slot].__contract__ for slot in sorted(self._contracts))

    def __len__(self) -> int:
        return len(self._contracts)


def _origin(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


registry = ContractRegistry()
"""The default registry: every contract class registers itself here when declared."""
