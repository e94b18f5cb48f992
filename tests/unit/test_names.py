"""Every name rule matches the whole name: a trailing newline is not a name.

``re.match`` with ``$`` accepts ``"orders\\n"``: the queue name, the DDL and the
statements would then carry the newline. These are the names a manifest, a
contract, ``replication init`` and the environment give.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field

from replication.contracts import Contract, ContractRegistry
from replication.errors import ConfigurationError, ContractDefinitionError, ManifestError
from replication.manifest import load_manifest
from replication.mirror.render import statements_for
from replication.outbox.batching import group_id
from replication.scaffold import plan_service
from replication.topology.naming import check_prefix, queue_name

MANIFEST = """\
service: {service}
database:
  url_env: {url_env}
mirrors:
  - entity: crm.customer
    version: 1
    table: {table}
    fields: [id, name]
"""


def manifest(tmp_path: Path, **names: str) -> Path:
    values = {"service": "orders", "url_env": "ORDERS_DATABASE_URL", "table": "customer_mirror"}
    # JSON strings are YAML double-quoted scalars: "orders\n" arrives with its newline.
    values.update({k: json.dumps(v) for k, v in names.items()})
    path = tmp_path / "replication.yaml"
    path.write_text(MANIFEST.format(**values))
    return path


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ({"service": "orders\n"}, "service"),
        ({"table": "customer_mirror\n"}, "mirrors[0].table"),
        ({"url_env": "ORDERS_DATABASE_URL\n"}, "database.url_env"),
    ],
    ids=["service", "table", "url_env"],
)
def test_a_manifest_name_with_a_trailing_newline_is_refused(
    tmp_path: Path, examples: ContractRegistry, name: dict[str, str], where: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest(tmp_path, **name), examples)

    assert caught.value.issues[0].path == where


def test_the_same_names_without_the_newline_load(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    loaded = load_manifest(manifest(tmp_path), examples)
    assert (loaded.service, loaded.mirrors[0].table) == ("orders", "customer_mirror")


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:iam::123456789012:role/oncall\n",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::12345678901:role/oncall",
        "123456789012",
    ],
)
def test_operator_roles_are_named_role_arns(
    tmp_path: Path, examples: ContractRegistry, role: str
) -> None:
    path = manifest(tmp_path)
    path.write_text(path.read_text() + f"operator_roles: [{json.dumps(role)}]\n")

    with pytest.raises(ManifestError) as caught:
        load_manifest(path, examples)

    assert [issue.path for issue in caught.value.issues] == ["operator_roles[0]"]


def test_operator_roles_load_with_their_paths(tmp_path: Path, examples: ContractRegistry) -> None:
    path = manifest(tmp_path)
    role = "arn:aws:iam::123456789012:role/oncall/replication-operator"
    path.write_text(path.read_text() + f"operator_roles: [{role}]\n")

    assert load_manifest(path, examples).operator_roles == (role,)


def test_a_contract_entity_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ContractDefinitionError, match="entity must look like"):

        class Parcel(Contract, entity="shipping.parcel\n", version=1, key="id"):
            id: int = Field(ge=1)


@pytest.mark.parametrize("entity", ["shipping.parcel\n", "shipping.parcel:1\n"])
def test_init_refuses_an_entity_with_a_trailing_newline(tmp_path: Path, entity: str) -> None:
    with pytest.raises(ConfigurationError, match="an entity is"):
        plan_service(
            tmp_path,
            "shipping",
            owns=[entity] if ":" not in entity else [],
            mirrors=[] if ":" not in entity else [entity],
            contracts=[],
            python_path=[],
        )
    with pytest.raises(ConfigurationError, match="service name"):
        plan_service(
            tmp_path,
            "shipping\n",
            owns=["shipping.parcel"],
            mirrors=[],
            contracts=[],
            python_path=[],
        )


@pytest.mark.parametrize("prefix", ["dev\n", "Dev", "dev_eu", "-dev", "a" * 21])
def test_a_prefix_is_checked_before_any_name_is_built(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match=r"prefix .* is not valid"):
        queue_name("orders", "crm.customer", 1, prefix=prefix)
    with pytest.raises(ConfigurationError):
        check_prefix(prefix)


def test_a_subject_with_a_trailing_newline_is_not_a_message_group_as_it_is() -> None:
    assert group_id("customer-1") == "customer-1"
    assert group_id("customer-1\n") != "customer-1\n"
    assert len(group_id("customer-1\n")) == 64


def test_the_refresh_update_quotes_its_identifiers_as_the_upsert_does(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    """One place quotes identifiers: a mirror table named like an SQL keyword."""
    declaration = load_manifest(manifest(tmp_path, table="order"), examples).mirrors[0]

    postgresql = statements_for(declaration, "postgresql").refresh_update
    mysql = statements_for(declaration, "mysql").refresh_update

    assert postgresql.startswith('UPDATE "order" SET name = %s, ')
    assert postgresql.endswith("WHERE id = %s AND _version = %s AND _deleted = %s")
    assert mysql.startswith("UPDATE `order` SET name = %s, ")
    assert statements_for(declaration, "sqlite").refresh_update.count("?") == 7
