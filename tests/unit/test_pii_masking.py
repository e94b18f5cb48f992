"""Personal data stays out of reprs, logs and DLQ output, at any depth and in fields the
reader does not know; a key is never personal data."""

from __future__ import annotations

import dataclasses
import json
import logging
import textwrap
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from replication.contracts import Contract, ContractInfo, ContractRegistry, Pii
from replication.dlq.messages import masked_document
from replication.errors import ContractDefinitionError, InvalidEventError, ManifestError
from replication.events import decode_event, encode_event, upserted
from replication.manifest import load_manifests

SECRET = "pii.alice"
"""Every personal value in these tests contains it: no output may."""
KEY = "7d3c1a5e-0f1b-4a8e-9c2d-5b6a7e8f9a0b"


class Contact(BaseModel):
    """A way to reach someone: the value is personal, its label is not."""

    model_config = ConfigDict(frozen=True)

    label: str
    value: Annotated[str, Pii]


class Person(BaseModel):
    """Nested twice: a name and contacts."""

    model_config = ConfigDict(frozen=True)

    name: Annotated[str, Pii]
    contacts: list[Contact] = []
    manager: Person | None = None


class Account(Contract, entity="pii.account", version=1, key="id", register=False):
    """Personal data only below the top level, in every container shape."""

    id: uuid.UUID
    plan: str
    holder: Person
    contacts: list[Contact]
    by_label: dict[str, Contact]
    aliases: list[list[Annotated[str, Pii]]]
    previous: list[Annotated[str, Pii]] | None = None
    notes: dict[str, Any] = {}


def account(**changes: Any) -> Account:
    values: dict[str, Any] = {
        "id": KEY,
        "plan": "gold",
        "holder": Person(
            name=f"{SECRET} name",
            contacts=[Contact(label="home", value=f"{SECRET}@example.com")],
            manager=Person(name=f"{SECRET} manager"),
        ),
        "contacts": [Contact(label="work", value=f"{SECRET}.work@example.com")],
        "by_label": {"mobile": Contact(label="mobile", value=f"+33 6 {SECRET}")},
        "aliases": [[f"{SECRET} alias"]],
        "previous": [f"{SECRET} previous"],
        "notes": {"source": "import"},
    }
    values.update(changes)
    return Account(**values)


def document(data: Any, info: ContractInfo = Account.__contract__) -> str:
    """A change event's wire form carrying ``data`` as it is (valid or not)."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "00000000-0000-4000-8000-000000000001",
            "source": info.owner,
            "type": f"{info.entity}.upserted",
            "subject": KEY,
            "time": "2026-11-27T10:00:00Z",
            "dataschema": info.contract_id,
            "datacontenttype": "application/json",
            "entityversion": 1,
            "data": data,
        }
    )


def account_data() -> dict[str, Any]:
    return account().model_dump(mode="json")


def shown(body: str, info: ContractInfo = Account.__contract__, **kwargs: Any) -> dict[str, Any]:
    masked = masked_document(body, info, show_pii=False, **kwargs)
    assert masked is not None
    return masked


# -- nested pii ---------------------------------------------------------------------------


def test_a_contract_repr_masks_pii_in_nested_models_lists_and_dicts() -> None:
    state = account()
    for text in (repr(state), str(state), f"{state}", repr([state]), repr({"s": state})):
        assert SECRET not in text
    text = repr(state)
    assert f"id=UUID('{KEY}')" in text
    assert "plan='gold'" in text
    assert "holder=Person(name='<pii>', contacts=[Contact(label='home', value='<pii>')]" in text
    assert "manager=Person(name='<pii>', contacts=[], manager=None)" in text
    assert "by_label={'mobile': Contact(label='mobile', value='<pii>')}" in text
    assert "aliases=[['<pii>']]" in text
    assert "previous=['<pii>']" in text
    assert "notes={'source': 'import'}" in text


def test_a_model_marks_its_pii_wherever_it_is_put_even_in_a_free_form_field() -> None:
    state = account(notes={"contact": Contact(label="fax", value=f"{SECRET} fax")})
    assert SECRET not in repr(state)
    assert "notes={'contact': Contact(label='fax', value='<pii>')}" in repr(state)


def test_a_dataclass_or_typed_dict_inside_a_contract_masks_its_pii() -> None:
    @dataclasses.dataclass(frozen=True)
    class Visit:
        visitor: Annotated[str, Pii]
        room: str

    class Entry(TypedDict):
        badge: Annotated[str, Pii]
        door: str

    class Log(Contract, entity="pii.log", version=1, key="id", register=False):
        id: int
        visits: list[Visit]
        entries: list[Entry]

    state = Log(id=1, visits=[Visit(SECRET, "r1")], entries=[{"badge": SECRET, "door": "d1"}])
    assert repr(state) == (
        "Log(id=1, visits=[Visit(visitor='<pii>', room='r1')], "
        "entries=[{'badge': '<pii>', 'door': 'd1'}])"
    )
    body = document(state.model_dump(mode="json"), Log.__contract__)
    assert shown(body, Log.__contract__)["data"] == {
        "id": 1,
        "visits": [{"visitor": "***", "room": "r1"}],
        "entries": [{"badge": "***", "door": "d1"}],
    }


def test_a_change_event_and_its_decoded_state_never_show_nested_pii() -> None:
    registry = ContractRegistry()
    registry.register(Account)
    event = decode_event(encode_event(upserted(account(), 1)), registry)
    assert event.data is not None
    assert SECRET not in repr(event.data)
    assert SECRET not in repr(event)


def test_the_dlq_output_masks_pii_in_nested_models_lists_and_dicts() -> None:
    data = shown(document(account_data()))["data"]
    assert SECRET not in json.dumps(data)
    assert data["id"] == KEY
    assert data["plan"] == "gold"
    assert data["holder"] == {
        "name": "***",
        "contacts": [{"label": "home", "value": "***"}],
        "manager": {"name": "***", "contacts": [], "manager": None},
    }
    assert data["by_label"] == {"mobile": {"label": "mobile", "value": "***"}}
    assert data["aliases"] == [["***"]]
    assert data["previous"] == ["***"]
    assert data["notes"] == {"source": "import"}  # declared free-form and not pii


def test_show_pii_shows_the_body_as_it_is() -> None:
    body = document({**account_data(), "added_later": SECRET})
    assert masked_document(body, Account.__contract__, show_pii=True) == json.loads(body)


# -- fields the reader does not know -------------------------------------------------------


def test_a_field_the_readers_contract_does_not_declare_is_masked_at_any_depth() -> None:
    data = account_data()
    data["added_later"] = f"{SECRET} newer contract"
    data["holder"]["pronouns"] = f"{SECRET} nested newer"
    data["contacts"][0]["verified_by"] = {"name": SECRET}
    data["empty_new_field"] = None
    masked = shown(document(data))
    assert SECRET not in json.dumps(masked)
    assert masked["data"]["added_later"] == "***"
    assert masked["data"]["holder"]["pronouns"] == "***"
    assert masked["data"]["contacts"][0] == {"label": "work", "value": "***", "verified_by": "***"}
    assert masked["data"]["empty_new_field"] is None  # null tells nothing


def test_a_value_of_another_shape_than_declared_is_masked() -> None:
    data = account_data()
    data["plan"] = {"name": SECRET}  # an object where a string is declared
    data["holder"] = [SECRET]  # a list where a model is declared
    masked = shown(document(data))
    assert (masked["data"]["plan"], masked["data"]["holder"]) == ("***", "***")
    assert shown(document(SECRET))["data"] == "***"  # a string where an object is declared


def test_the_data_of_an_unknown_contract_is_masked_field_by_field_the_key_shown() -> None:
    body = json.dumps(
        {
            **json.loads(document({})),
            "type": "hr.employee.upserted",
            "dataschema": "contract:hr.employee/v3",
            "data": {"id": "e-17", "name": SECRET, "team": {"lead": SECRET}, "left": None},
        }
    )
    masked = shown(body)
    assert masked["data"] == {"id": "***", "name": "***", "team": "***", "left": None}
    assert masked["subject"] == KEY
    assert masked["dataschema"] == "contract:hr.employee/v3"


def test_an_event_of_another_known_contract_is_masked_by_that_contract() -> None:
    class Badge(Contract, entity="pii.badge", version=2, key="code", register=False):
        code: str
        holder: Annotated[str, Pii]
        colour: str

    registry = ContractRegistry()
    registry.register(Badge)
    body = document({"code": "B-1", "holder": SECRET, "colour": "red"}, Badge.__contract__)
    masked = shown(body, contracts=registry)
    assert masked["data"] == {"code": "B-1", "holder": "***", "colour": "red"}


def test_an_attribute_that_is_not_a_change_event_attribute_is_masked() -> None:
    body = json.dumps({**json.loads(document(account_data())), "email": SECRET})
    masked = shown(body)
    assert masked["email"] == "***"
    assert masked["type"] == "pii.account.upserted"


def test_data_nested_deeper_than_the_stack_is_masked_whole_not_a_crash() -> None:
    # A manager's manager's manager...: the model refers to itself, the masking follows.
    deep = '{"name": "x", "manager": ' * 700 + json.dumps({"name": SECRET}) + "}" * 700
    data = {**account_data(), "holder": None}
    body = document(data).replace('"holder": null', f'"holder": {deep}', 1)
    assert SECRET in body
    masked = shown(body)
    assert masked["data"] == "***"
    assert masked["subject"] == KEY


# -- the key ------------------------------------------------------------------------------


def test_a_key_marked_pii_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(ContractDefinitionError) as refused:

        class Member(Contract, entity="pii.member", version=1, key="email", register=False):
            email: Annotated[str, Pii]

    message = str(refused.value)
    assert message.startswith("test_a_key_marked_pii_is_refused_with_what_to_do_instead.<locals>")
    assert ".Member.email: a key field cannot be pii" in message
    assert "on-call finds a record by its key" in message
    assert "key the entity by an id that is not personal data" in message


def test_a_manifest_whose_contract_keys_on_pii_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "pii_keyed_contracts.py").write_text(
        textwrap.dedent(
            """\
            from typing import Annotated
            from replication.contracts import Contract, Pii

            class Member(Contract, entity="pii.member", version=1, key="email"):
                email: Annotated[str, Pii]
                plan: str
            """
        )
    )
    (tmp_path / "replication.yaml").write_text(
        "service: pii\ncontracts: [pii_keyed_contracts]\npython_path: [.]\n"
        "database:\n  url_env: PII_DATABASE_URL\n"
        "owns:\n  - entity: pii.member\n    version: 1\n"
    )
    with pytest.raises(ManifestError) as refused:
        load_manifests([tmp_path])
    message = str(refused.value)
    assert "replication.yaml:2 at contracts[0]" in message
    assert "Member.email: a key field cannot be pii" in message


def test_the_key_is_shown_in_clear_though_a_nested_field_of_the_same_name_is_pii() -> None:
    class Badge(BaseModel):
        id: Annotated[str, Pii]

    class Door(Contract, entity="pii.door", version=1, key="id", register=False):
        id: str
        badges: list[Badge]

    body = document({"id": "door-1", "badges": [{"id": SECRET}]}, Door.__contract__)
    assert shown(body, Door.__contract__)["data"] == {"id": "door-1", "badges": [{"id": "***"}]}
    state = Door(id="door-1", badges=[Badge(id=SECRET)])
    assert repr(state) == "Door(id='door-1', badges=[Badge(id='<pii>')])"


# -- logs ---------------------------------------------------------------------------------


def test_a_state_logged_through_a_format_string_shows_no_nested_pii(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("replication.test").info("applying %s / %r", account(), account())
    assert "holder=Person(name='<pii>'" in caplog.text
    assert SECRET not in caplog.text


def test_the_reason_an_event_is_refused_names_nested_fields_never_their_values() -> None:
    # The reason is what the consumer logs and writes on the DLQ message.
    registry = ContractRegistry()
    registry.register(Account)
    data = account_data()
    data["holder"]["manager"] = {"name": 17, "contacts": [{"label": SECRET}]}
    data["contacts"][0]["verified_by"] = SECRET
    data["added_later"] = SECRET
    with pytest.raises(InvalidEventError) as refused:
        decode_event(document(data), registry)
    reason = str(refused.value)
    assert SECRET not in reason
    assert "holder.manager.name: Input should be a valid string" in reason
    assert "holder.manager.contacts.0.value: Field required" in reason
    assert "added_later: Extra inputs are not permitted" in reason
