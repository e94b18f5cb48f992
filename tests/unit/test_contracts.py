"""Contract declarations: refused at once when a mirror could not hold them; the registry.

Contracts declared only to be refused use ``register=False`` (or a private
registry), so the default registry keeps exactly the contracts of the project.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

import pytest
from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    FutureDatetime,
    HttpUrl,
    NaiveDatetime,
    PastDate,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    condecimal,
    create_model,
)

from contracts import Customer, Product
from replication.contracts import Contract, ContractRegistry, FieldSpec, Pii, registry
from replication.errors import ConfigurationError, ContractDefinitionError, UnknownContractError
from replication.portable import unportable_reason


def declare(
    fields: dict[str, Any],
    *,
    entity: Any = "testkit.widget",
    version: Any = 1,
    key: Any = "id",
    register: bool = False,
) -> type[Contract]:
    """Declare a contract class ``Widget`` as a ``class`` statement would, from annotations."""
    definitions: dict[str, Any] = {name: (annotation, ...) for name, annotation in fields.items()}
    keywords = {"entity": entity, "version": version, "key": key, "register": register}
    return create_model("Widget", __base__=Contract, __cls_kwargs__=keywords, **definitions)


def refusal(fields: dict[str, Any], **keywords: Any) -> str:
    """Why declaring this contract is refused (it must be)."""
    with pytest.raises(ContractDefinitionError) as caught:
        declare(fields, **keywords)
    return str(caught.value)


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Empty(enum.StrEnum):
    pass


class Dimensions(BaseModel):
    width: int
    height: int


# --- declarations refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "entity",
    [
        "Crm.Customer",
        "crm",
        "crm.customer.extra",
        "crm.",
        ".customer",
        "1crm.customer",
        "crm.1customer",
        "crm-x.customer",
        "crm.customer ",
        "a" * 32 + ".customer",
        "",
        None,
        42,
    ],
)
def test_an_entity_name_must_be_owner_dot_entity(entity: Any) -> None:
    message = refusal({"id": str}, entity=entity)

    assert message == (
        "Widget: entity must look like '<owner>.<entity>' in lower case "
        f"(letters, digits, underscores), got {entity!r}"
    )


@pytest.mark.parametrize("version", [0, -1, True, False, "1", 1.0, None])
def test_a_version_must_be_a_positive_integer(version: Any) -> None:
    message = refusal({"id": str}, version=version)

    assert message == f"Widget: version must be a positive integer, got {version!r}"


@pytest.mark.parametrize("key", [None, (), ["id"], ("id", 1), 1])
def test_a_key_must_name_fields(key: Any) -> None:
    message = refusal({"id": str}, key=key)

    assert message == f"Widget: key must name one field or a tuple of fields, got {key!r}"


def test_a_key_cannot_name_a_field_twice() -> None:
    assert refusal({"id": str}, key=("id", "id")) == (
        "Widget: key names a field twice: ('id', 'id')"
    )


def test_a_key_must_name_an_existing_field() -> None:
    message = refusal({"id": str, "name": str}, key=("id", "line"))

    assert message == "Widget: key field 'line' is not a field (fields: id, name)"


@pytest.mark.parametrize(
    ("annotation", "kind"),
    [
        (bool, "bool"),
        (Annotated[Decimal, Field(max_digits=12, decimal_places=2)], "decimal"),
        (float, "float"),
        (dt.datetime, "datetime"),
        (dt.date, "date"),
        (Colour, "enum"),
        (list[str], "json"),
        (Dimensions, "json"),
    ],
)
def test_a_key_must_be_str_int_or_uuid(annotation: Any, kind: str) -> None:
    message = refusal({"id": annotation})

    assert message == f"Widget.id: a key field must be str, int or UUID, not {kind}"


@pytest.mark.parametrize("annotation", [str | None, int | None, Annotated[uuid.UUID | None, "x"]])
def test_a_key_cannot_be_optional(annotation: Any) -> None:
    assert refusal({"id": annotation}) == "Widget.id: a key field cannot be optional"


def test_a_key_cannot_be_pii() -> None:
    message = refusal({"id": Annotated[str, Pii]})

    assert message.startswith(
        "Widget.id: a key field cannot be pii: keys appear in event subjects and logs"
    )


@pytest.mark.parametrize("annotation", [complex, bytes, Any, object, type[int]])
def test_a_field_type_a_mirror_cannot_hold_is_refused(annotation: Any) -> None:
    message = refusal({"id": str, "blob": annotation})

    assert message.startswith(f"Widget.blob: type {annotation!r} cannot be mirrored; use str")


@pytest.mark.parametrize("name", ["fieldName", "Name", "x" * 60, "n" * 70, "naïve"])
def test_a_field_name_must_be_a_safe_column_name(name: str) -> None:
    message = refusal({"id": str, name: str})

    assert message.startswith(f"Widget.{name}: field names must be lower case letters, digits")
    assert message.endswith("(they become SQL column names)")


def test_a_59_character_field_name_is_accepted() -> None:
    model = declare({"id": str, "x" * 59: str})

    assert "x" * 59 in model.__contract__.fields


@pytest.mark.parametrize(
    "annotation", [NaiveDatetime, NaiveDatetime | None, Annotated[NaiveDatetime, Pii]]
)
def test_a_naive_datetime_field_is_refused(annotation: Any) -> None:
    message = refusal({"id": str, "seen_at": annotation})

    assert message == (
        "Widget.seen_at: naive datetimes are ambiguous; use AwareDatetime or datetime"
    )


def test_an_enum_of_non_strings_is_refused() -> None:
    message = refusal({"id": str, "priority": Priority})

    assert message == (
        "Widget.priority: enum values must be strings (they are stored as text in mirrors)"
    )


def test_an_enum_without_members_is_refused() -> None:
    message = refusal({"id": str, "colour": Empty})

    assert message == "Widget.colour: an enum field needs at least one member"


DECIMAL_WITHOUT_PRECISION_AND_SCALE = (
    "Widget.amount: a Decimal field must declare max_digits and decimal_places, "
    "e.g. Field(max_digits=12, decimal_places=2): mirrors store it as NUMERIC(p, s), "
    "which would otherwise round or overflow silently"
)


@pytest.mark.parametrize(
    "annotation",
    [
        Decimal,
        Decimal | None,
        Annotated[Decimal, Pii],
        Annotated[Decimal, Field(max_digits=12)],
        Annotated[Decimal, Field(decimal_places=2)],
        Annotated[Decimal, Field(max_digits=12)] | None,
        Annotated[Decimal, Field(ge=0)],
        condecimal(max_digits=12),
    ],
)
def test_a_decimal_field_must_declare_its_precision_and_scale(annotation: Any) -> None:
    assert refusal({"id": str, "amount": annotation}) == DECIMAL_WITHOUT_PRECISION_AND_SCALE


class Credentials(BaseModel):
    user: str
    password: SecretStr


class Account(BaseModel):
    name: str
    credentials: Credentials | None = None


@pytest.mark.parametrize(
    ("annotation", "secret"),
    [
        (SecretStr, "SecretStr"),
        (SecretBytes, "SecretBytes"),
        (SecretStr | None, "SecretStr"),
        (Annotated[SecretStr, Pii], "SecretStr"),
        (Annotated[SecretStr, Field(min_length=8)] | None, "SecretStr"),
        (SecretStr | int, "SecretStr"),
        (list[SecretStr], "SecretStr"),
        (dict[str, SecretBytes], "SecretBytes"),
        (Secret[int], "Secret"),
        (Credentials, "SecretStr"),
        (list[Account], "SecretStr"),
    ],
)
def test_a_secret_field_is_refused(annotation: Any, secret: str) -> None:
    message = refusal({"id": str, "token": annotation})

    assert message == (
        f"Widget.token: holds a {secret}, and secrets do not belong in replicated data "
        "(every consumer would keep a copy); replicate a reference to the secret instead"
    )


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (float, float("nan")),
        (float, float("inf")),
        (float, "-Infinity"),
        (float | None, "NaN"),
        (list[float], [1.5, float("inf")]),
        (dict[str, Any], {"a": Decimal("NaN")}),
        (dict[str, Any], {"a": [Decimal("-Infinity")]}),
    ],
)
def test_a_contract_instance_refuses_non_finite_numbers(annotation: Any, value: Any) -> None:
    model = declare({"id": str, "x": annotation})

    with pytest.raises(ValidationError, match=re.escape("is not a finite number")) as caught:
        model.model_validate({"id": "w-1", "x": value})
    [error] = caught.value.errors()
    assert error["loc"] == ("x",)
    assert "NaN and Infinity have no JSON form" in error["msg"]


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(float, 1e308), (float, -0.0), (dict[str, Any], {"a": Decimal("1E+400")})],
)
def test_a_contract_instance_keeps_finite_numbers(annotation: Any, value: Any) -> None:
    model = declare({"id": str, "x": annotation})

    assert model.model_validate({"id": "w-1", "x": value}).model_dump()["x"] == value


def test_a_refused_declaration_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("cannot be mirrored")):
        declare({"id": str, "blob": bytes})


# --- registration -------------------------------------------------------------------------------


def _declare_a_second_customer_v1() -> None:
    class Customer(Contract, entity="crm.customer", version=1, key="id"):
        id: uuid.UUID


def test_two_classes_cannot_declare_the_same_entity_and_version() -> None:
    with pytest.raises(ContractDefinitionError) as caught:
        _declare_a_second_customer_v1()

    assert str(caught.value) == (
        "crm.customer v1 is declared twice: by contracts.crm.Customer and by "
        f"{__name__}._declare_a_second_customer_v1.<locals>.Customer"
    )
    assert registry.get("crm.customer", 1).model is Customer


def test_a_private_registry_refuses_a_second_class_for_one_slot() -> None:
    first = declare({"id": str})
    second = create_model(
        "Gadget",
        __base__=Contract,
        __cls_kwargs__={"entity": "testkit.widget", "version": 1, "key": "id", "register": False},
        id=(str, ...),
    )
    contracts = ContractRegistry()
    contracts.register(first)
    contracts.register(first)  # the same class again (a module imported twice) is harmless

    with pytest.raises(ContractDefinitionError, match=re.escape("testkit.widget v1 is declared")):
        contracts.register(second)
    assert contracts.get("testkit.widget", 1).model is first
    assert len(contracts) == 1


def test_register_false_keeps_the_default_registry_clean() -> None:
    declare({"id": str}, entity="testkit.unregistered")

    assert registry.find("testkit.unregistered", 1) is None


def test_an_intermediate_base_declares_nothing() -> None:
    class Base(Contract):
        id: str

    class Widget(Base, entity="testkit.based", version=1, key="id", register=False):
        name: str

    assert not hasattr(Base, "__contract__")
    assert tuple(Widget.__contract__.fields) == ("id", "name")


# --- field specs -----------------------------------------------------------------------------


def test_the_customer_contract_field_specs() -> None:
    fields = Customer.__contract__.fields

    assert fields == {
        "id": FieldSpec("id", "uuid", nullable=False),
        "name": FieldSpec("name", "str", nullable=False, max_length=200),
        "email": FieldSpec("email", "str", nullable=False, pii=True),
        "tier": FieldSpec(
            "tier",
            "enum",
            nullable=False,
            max_length=8,
            enum_values=("bronze", "silver", "gold", "platinum"),
        ),
        "credit_limit": FieldSpec("credit_limit", "decimal", nullable=False, precision=12, scale=2),
        "created_at": FieldSpec("created_at", "datetime", nullable=False),
        "tags": FieldSpec("tags", "json", nullable=False),
        "address": FieldSpec("address", "json", nullable=False),
        "phone": FieldSpec("phone", "str", nullable=True, pii=True),
    }


def test_the_customer_contract_info() -> None:
    info = Customer.__contract__

    assert (info.entity, info.version, info.key) == ("crm.customer", 1, ("id",))
    assert info.owner == "crm"
    assert info.contract_id == "contract:crm.customer/v1"
    assert info.label == "crm.customer v1"
    assert info.pii_fields == frozenset({"email", "phone"})
    assert info.key_specs == (info.fields["id"],)
    assert info.model is Customer


def test_the_product_contract_field_specs() -> None:
    fields = Product.__contract__.fields

    assert fields["sku"] == FieldSpec("sku", "str", nullable=False, max_length=64)
    assert fields["price"] == FieldSpec("price", "decimal", nullable=False, precision=10, scale=2)
    assert fields["active"] == FieldSpec("active", "bool", nullable=False)
    assert fields["stock"] == FieldSpec("stock", "int", nullable=False)
    assert Product.__contract__.pii_fields == frozenset()


@pytest.mark.parametrize(
    ("annotation", "spec"),
    [
        (AwareDatetime, FieldSpec("x", "datetime", nullable=False)),
        (FutureDatetime, FieldSpec("x", "datetime", nullable=False)),
        (PastDate, FieldSpec("x", "date", nullable=False)),
        (int | None, FieldSpec("x", "int", nullable=True)),
        (int | str, FieldSpec("x", "json", nullable=False)),
        (int | str | None, FieldSpec("x", "json", nullable=True)),
        (dict[str, int], FieldSpec("x", "json", nullable=False)),
        (Dimensions | None, FieldSpec("x", "json", nullable=True)),
        (
            Colour | None,
            FieldSpec("x", "enum", nullable=True, max_length=5, enum_values=("red", "green")),
        ),
        (Annotated[str, Field(max_length=7)], FieldSpec("x", "str", nullable=False, max_length=7)),
        (Annotated[str | None, Pii], FieldSpec("x", "str", nullable=True, pii=True)),
        (Annotated[str, Pii] | None, FieldSpec("x", "str", nullable=True, pii=True)),
        (Annotated[int, Pii] | str, FieldSpec("x", "json", nullable=False, pii=True)),
        (
            Annotated[Decimal, Field(max_digits=5, decimal_places=2)],
            FieldSpec("x", "decimal", nullable=False, precision=5, scale=2),
        ),
        (
            Annotated[Decimal, Field(max_digits=5, decimal_places=2)] | None,
            FieldSpec("x", "decimal", nullable=True, precision=5, scale=2),
        ),
        (
            Annotated[Decimal | None, Field(max_digits=5, decimal_places=0)],
            FieldSpec("x", "decimal", nullable=True, precision=5, scale=0),
        ),
        (
            condecimal(max_digits=7, decimal_places=3),
            FieldSpec("x", "decimal", nullable=False, precision=7, scale=3),
        ),
        (
            Annotated[str, Field(max_length=7)] | None,
            FieldSpec("x", "str", nullable=True, max_length=7),
        ),
        (list[Decimal], FieldSpec("x", "json", nullable=False)),
        (HttpUrl, FieldSpec("x", "str", nullable=False)),
    ],
)
def test_a_field_annotation_maps_to_its_spec(annotation: Any, spec: FieldSpec) -> None:
    model = declare({"id": str, "x": annotation})

    assert model.__contract__.fields["x"] == spec


# --- registry lookups -------------------------------------------------------------------------


def test_the_default_registry_finds_the_example_contracts() -> None:
    assert registry.get("crm.customer", 1) is Customer.__contract__
    assert registry.get("catalog.product", 1) is Product.__contract__
    assert registry.find("crm.customer", 1) is Customer.__contract__
    assert registry.find("crm.customer", 2) is None
    assert registry.find("crm.nothing", 1) is None
    assert registry.versions("crm.customer") == [1]
    assert registry.versions("crm.nothing") == []
    assert {"catalog.product v1", "crm.customer v1"} <= set(registry.labels())


def test_an_unknown_contract_names_what_is_registered() -> None:
    with pytest.raises(UnknownContractError) as caught:
        registry.get("crm.customer", 9)

    error = caught.value
    assert str(error).startswith("unknown contract crm.customer v9 (registered: ")
    assert "catalog.product v1" in str(error)
    assert "crm.customer v1" in str(error)
    assert (error.entity, error.version) == ("crm.customer", 9)
    assert isinstance(error, ConfigurationError)


def test_a_private_registry_lists_exactly_its_contracts() -> None:
    contracts = ContractRegistry()
    contracts.register(Product)
    contracts.register(Customer)
    second = declare({"id": str}, entity="crm.customer", version=2)
    contracts.register(second)

    assert contracts.labels() == ["catalog.product v1", "crm.customer v1", "crm.customer v2"]
    assert contracts.versions("crm.customer") == [1, 2]
    assert [info.label for info in contracts] == contracts.labels()
    assert len(contracts) == 3
    assert contracts.get("crm.customer", 2).model is second
    with pytest.raises(UnknownContractError) as caught:
        contracts.get("crm.nothing", 1)
    assert str(caught.value) == (
        "unknown contract crm.nothing v1 "
        "(registered: catalog.product v1, crm.customer v1, crm.customer v2)"
    )
    assert caught.value.known == contracts.labels()


def test_an_empty_registry_says_so() -> None:
    with pytest.raises(UnknownContractError) as caught:
        ContractRegistry().get("crm.customer", 1)

    assert str(caught.value) == "unknown contract crm.customer v1 (registered: none)"


# -- values every database stores ----------------------------------------------------------


class Shade(enum.StrEnum):
    DARK = "da\x00rk"


class Count(enum.IntEnum):
    HUGE = 2**63


class Point(BaseModel):
    label: str
    at: dt.datetime


class MyList(list[Any]):
    """A subclass: checked as its base is."""


EAST = dt.timezone(dt.timedelta(hours=14))
WEST = dt.timezone(dt.timedelta(hours=-12))
UNPORTABLE = [
    pytest.param("a\x00b", "contains a NUL character", id="nul"),
    pytest.param("é\ud800", "contains a lone surrogate", id="surrogate"),
    pytest.param(Shade.DARK, "contains a NUL character", id="str-enum-member"),
    pytest.param(2**63, "outside the 64-bit integer range", id="int-above"),
    pytest.param(-(2**63) - 1, "outside the 64-bit integer range", id="int-below"),
    pytest.param(Count.HUGE, "outside the 64-bit integer range", id="int-enum-member"),
    pytest.param(float("nan"), "not a finite number", id="float-nan"),
    pytest.param(float("-inf"), "not a finite number", id="float-inf"),
    pytest.param(Decimal("NaN"), "not a finite number", id="decimal-nan"),
    pytest.param(Decimal("Infinity"), "not a finite number", id="decimal-inf"),
    pytest.param(dt.datetime(2024, 1, 1), "naive datetime", id="naive"),
    pytest.param(dt.datetime(1, 1, 1, 5, tzinfo=EAST), "out of range once", id="year-1-east"),
    pytest.param(
        dt.datetime(9999, 12, 31, 20, tzinfo=WEST), "out of range once", id="year-9999-west"
    ),
    pytest.param([1, ["x", "\x00"]], "contains a NUL character", id="nested-list"),
    pytest.param(MyList([2**64]), "outside the 64-bit", id="list-subclass"),
    pytest.param(("ok", float("inf")), "not a finite number", id="tuple"),
    pytest.param(frozenset({"\x00"}), "contains a NUL character", id="frozenset"),
    pytest.param({"k\x00": 1}, "contains a NUL character", id="dict-key"),
    pytest.param({"k": {"deep": Decimal("sNaN")}}, "not a finite number", id="dict-value"),
    pytest.param(
        Point(label="ok", at=dt.datetime(2024, 1, 1)), "naive datetime", id="nested-model"
    ),
]
PORTABLE = [
    pytest.param(None, id="none"),
    pytest.param(True, id="bool"),
    pytest.param("plain é 🧪", id="text"),
    pytest.param(2**63 - 1, id="int-max"),
    pytest.param(-(2**63), id="int-min"),
    pytest.param(1e308, id="float"),
    pytest.param(Decimal("-0.00"), id="decimal"),
    pytest.param(uuid.UUID(int=7), id="uuid"),
    pytest.param(dt.date(1, 1, 1), id="date"),
    pytest.param(dt.datetime(1, 1, 1, 5, tzinfo=WEST), id="year-1-west"),
    pytest.param(dt.datetime(9999, 12, 31, 5, tzinfo=EAST), id="year-9999-east"),
    pytest.param(dt.datetime(2024, 2, 29, tzinfo=dt.UTC), id="datetime"),
    pytest.param({"a": [1, 2.5, None, {"b": "c"}]}, id="json"),
    pytest.param(Point(label="ok", at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)), id="model"),
    pytest.param(b"bytes", id="other"),
]


@pytest.mark.parametrize(("value", "reason"), UNPORTABLE)
def test_a_value_some_database_cannot_store_is_named(value: Any, reason: str) -> None:
    problem = unportable_reason(value)
    again = unportable_reason(value)  # the second time from the per-type table

    assert problem is not None
    assert reason in problem
    assert again == problem


@pytest.mark.parametrize("value", PORTABLE)
def test_a_value_every_database_stores_passes(value: Any) -> None:
    assert unportable_reason(value) is None
    assert unportable_reason(value) is None
