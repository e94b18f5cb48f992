"""Service manifests: every problem is reported at once, with its file, line and path.

Manifests are checked against a registry holding only the example contracts,
so that the messages listing known entities do not depend on which other test
modules declared contracts.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from contracts import Customer, Product
from replication.contracts import ContractRegistry, registry
from replication.errors import ConfigurationError, ManifestError, ManifestIssue
from replication.manifest import load_manifest, load_manifests
from tests.paths import ROOT


def write(folder: Path, text: str, name: str = "replication.yaml") -> Path:
    """Write a manifest (dedented) and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(path: Path, contracts: ContractRegistry) -> list[ManifestIssue]:
    """The issues loading ``path`` reports (it must fail)."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, contracts)
    return caught.value.issues


def only_issue(path: Path, contracts: ContractRegistry) -> ManifestIssue:
    """The single issue loading ``path`` reports."""
    issues = issues_of(path, contracts)
    assert len(issues) == 1, issues
    return issues[0]


def orders(mirror: str) -> str:
    """An orders manifest whose single mirror item is ``mirror`` (indented as a list item)."""
    return (
        "service: orders\n"
        "database:\n"
        "  url_env: ORDERS_DATABASE_URL\n"
        "mirrors:\n" + textwrap.indent(textwrap.dedent(mirror).strip("\n"), "  ") + "\n"
    )


CUSTOMER_MIRROR = """\
- entity: crm.customer
  version: 1
  table: customer_mirror
  fields:
    - id
    - name
"""


def test_a_valid_manifest_loads(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR))

    manifest = load_manifest(path, examples)

    assert manifest.service == "orders"
    assert manifest.database_url_env == "ORDERS_DATABASE_URL"
    assert manifest.mirror("crm.customer").fields == ("id", "name")


def test_mirrored_fields_follow_contract_order_and_keep_the_key(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    path = write(
        tmp_path,
        orders("""
        - entity: crm.customer
          version: 1
          table: customer_mirror
          fields: [phone, tier, id, name]
        """),
    )

    declaration = load_manifest(path, examples).mirror("crm.customer")

    assert declaration.fields == ("id", "name", "tier", "phone")
    assert declaration.contract is Customer.__contract__
    with pytest.raises(KeyError, match=re.escape("does not mirror catalog.product")):
        load_manifest(path, examples).mirror("catalog.product")


def test_an_unknown_entity_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("crm.customer", "crm.nothing")))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path),
        "mirrors[0].entity",
        5,
        "unknown entity 'crm.nothing' (known entities: catalog.product, crm.customer)",
    )


def test_an_unknown_version_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("version: 1", "version: 9")))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path), "mirrors[0].version", 6, "crm.customer has no contract v9 (known: v1)"
    )


def test_a_field_not_in_the_contract_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("- name", "- nmae")))

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "mirrors[0].fields[1]", 10)
    assert issue.problem.startswith("crm.customer v1 has no field 'nmae' (fields: id, name, ")


def test_a_key_field_left_out_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("- id", "- email")))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path),
        "mirrors[0].fields",
        8,
        "the key field(s) id of crm.customer v1 must be mirrored",
    )


def test_a_field_listed_twice_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR + "    - name\n"))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path), "mirrors[0].fields[2]", 11, "field 'name' is listed twice"
    )


def test_a_duplicate_table_name_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(
        tmp_path,
        orders("""
        - entity: crm.customer
          version: 1
          table: mirror
          fields: [id]
        - entity: catalog.product
          version: 1
          table: mirror
          fields: [sku]
        """),
    )

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path), "mirrors[1].table", 11, "table 'mirror' is already used by mirrors[0]"
    )


def test_an_owner_cannot_mirror_its_own_entity(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(
        tmp_path,
        """\
        service: crm
        database:
          url_env: CRM_DATABASE_URL
        owns:
          - entity: crm.customer
            version: 1
        mirrors:
          - entity: crm.customer
            version: 1
            table: customer_copy
            fields: [id]
        """,
    )

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "mirrors[0].entity", 8)
    assert issue.problem.startswith("service 'crm' owns crm.customer; an owner reads its own")


def test_a_service_cannot_own_another_services_entity(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    path = write(
        tmp_path,
        """\
        service: crm
        database:
          url_env: CRM_DATABASE_URL
        owns:
          - entity: crm.customer
            version: 1
          - entity: catalog.product
            version: 1
        """,
    )

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(
        str(path), "owns[1].entity", 7, "catalog.product belongs to service 'catalog', not 'crm'"
    )


@pytest.mark.parametrize(
    "table",
    [
        "orders; drop table x",
        'customer"mirror',
        "Orders",
        "customer-mirror",
        "1customer",
        "_customer",
        "customer mirror",
        "kundenspiegel_ü",
        "a" * 64,
        "a" * 70,
    ],
)
def test_a_table_name_that_could_break_sql_is_refused(
    tmp_path: Path, examples: ContractRegistry, table: str
) -> None:
    # JSON strings are YAML double-quoted scalars: the name arrives exactly as written.
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("customer_mirror", json.dumps(table))))

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "mirrors[0].table", 7)
    assert issue.problem.startswith(f"table name {table!r} is not a safe SQL identifier")


def test_a_63_character_table_name_is_accepted(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("customer_mirror", "a" * 63)))

    assert load_manifest(path, examples).mirror("crm.customer").table == "a" * 63


@pytest.mark.parametrize(
    "url_env",
    [
        "postgresql://orders:s3cret-pw@db.internal:5432/orders",
        "mysql://root:s3cret-pw@localhost/test",
        "orders_database_url",
    ],
)
def test_url_env_must_name_a_variable_not_hold_the_url(
    tmp_path: Path, examples: ContractRegistry, url_env: str
) -> None:
    path = write(
        tmp_path, orders(CUSTOMER_MIRROR).replace("ORDERS_DATABASE_URL", json.dumps(url_env))
    )

    with pytest.raises(ManifestError) as caught:
        load_manifest(path, examples)

    [issue] = caught.value.issues
    assert (issue.file, issue.path, issue.line) == (str(path), "database.url_env", 3)
    assert "never hold the URL itself" in issue.problem
    assert "s3cret-pw" not in str(caught.value)


def test_an_unknown_key_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR).replace("mirrors:", "mirrrors:"))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(str(path), "mirrrors", 4, "unknown key")


def test_a_misspelt_key_in_a_mirror_reports_both_sides(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("table:", "tabel:")))

    issues = issues_of(path, examples)

    assert sorted(issues, key=lambda i: i.path) == [
        ManifestIssue(str(path), "mirrors[0].tabel", 7, "unknown key"),
        ManifestIssue(str(path), "mirrors[0].table", 5, "required key is missing"),
    ]


def test_a_missing_required_key_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(
        tmp_path,
        """\
        # orders mirrors customers.
        service: orders
        mirrors: []
        """,
    )

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(str(path), "database", 1, "required key is missing")


def test_a_wrongly_typed_value_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("version: 1", "version: zero")))

    issue = only_issue(path, examples)

    assert (issue.path, issue.line) == ("mirrors[0].version", 6)
    assert "valid integer" in issue.problem


@pytest.mark.parametrize("version", ["true", "false", "yes", '"1"', "1.0"])
def test_a_mirror_version_must_be_a_real_integer(
    tmp_path: Path, examples: ContractRegistry, version: str
) -> None:
    # YAML reads true/yes as booleans: none of them may pass for version 1 (or 0).
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("version: 1", f"version: {version}")))

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "mirrors[0].version", 6)
    assert "Input should be a valid integer" in issue.problem


CRM_OWNS = """\
service: crm
database:
  url_env: CRM_DATABASE_URL
owns:
  - entity: crm.customer
    version: 1
    fifo: false
"""


@pytest.mark.parametrize("version", ["true", '"1"', "1.0"])
def test_an_owned_version_must_be_a_real_integer(
    tmp_path: Path, examples: ContractRegistry, version: str
) -> None:
    path = write(tmp_path, CRM_OWNS.replace("version: 1", f"version: {version}"))

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "owns[0].version", 6)
    assert "Input should be a valid integer" in issue.problem


@pytest.mark.parametrize("fifo", ['"yes"', '"true"', '"on"', "1", "0", '"false"'])
def test_fifo_must_be_a_real_boolean(tmp_path: Path, examples: ContractRegistry, fifo: str) -> None:
    path = write(tmp_path, CRM_OWNS.replace("fifo: false", f"fifo: {fifo}"))

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "owns[0].fifo", 7)
    assert "Input should be a valid boolean" in issue.problem


@pytest.mark.parametrize(("fifo", "expected"), [("true", True), ("false", False), ("yes", True)])
def test_fifo_accepts_a_yaml_boolean(
    tmp_path: Path, examples: ContractRegistry, fifo: str, expected: bool
) -> None:
    path = write(tmp_path, CRM_OWNS.replace("fifo: false", f"fifo: {fifo}"))

    [owned] = load_manifest(path, examples).owns

    assert (owned.entity, owned.version, owned.fifo) == ("crm.customer", 1, expected)


@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        pytest.param(
            orders(CUSTOMER_MIRROR.replace("table: customer_mirror", "table: customer: mirror")),
            7,
            "not valid YAML: mapping values are not allowed here",
            id="colon-in-plain-scalar",
        ),
        pytest.param(
            "service: orders\ndatabase:\n\turl_env: ORDERS_DATABASE_URL\n",
            3,
            "not valid YAML: found character '\\t' that cannot start any token",
            id="tab-indent",
        ),
        pytest.param(
            orders(CUSTOMER_MIRROR.replace("    - name\n", "    - [name\n")),
            11,
            "not valid YAML",
            id="unclosed-flow-sequence",
        ),
    ],
)
def test_invalid_yaml_is_located(
    tmp_path: Path, examples: ContractRegistry, text: str, line: int, phrase: str
) -> None:
    path = write(tmp_path, text)

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "", line)
    assert issue.problem.startswith(phrase)


def test_a_duplicate_yaml_key_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR + "  table: other_mirror\n"))

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(str(path), "mirrors[0].table", 11, "duplicate key")


def test_a_duplicate_top_level_key_is_located(tmp_path: Path, examples: ContractRegistry) -> None:
    path = write(tmp_path, orders(CUSTOMER_MIRROR) + "service: billing\n")

    issue = only_issue(path, examples)

    assert issue == ManifestIssue(str(path), "service", 11, "duplicate key")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing declared yet\n", "---\n"])
def test_an_empty_file_is_refused(tmp_path: Path, examples: ContractRegistry, text: str) -> None:
    path = write(tmp_path, text)

    assert only_issue(path, examples) == ManifestIssue(str(path), "", 1, "empty file")


@pytest.mark.parametrize("text", ["- service: orders\n", "orders\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_refused(
    tmp_path: Path, examples: ContractRegistry, text: str
) -> None:
    path = write(tmp_path, text)

    assert only_issue(path, examples) == ManifestIssue(
        str(path), "", 1, "the document must be a mapping"
    )


def test_a_missing_file_is_reported(tmp_path: Path, examples: ContractRegistry) -> None:
    path = tmp_path / "absent" / "replication.yaml"

    issue = only_issue(path, examples)

    assert (issue.file, issue.path, issue.line) == (str(path), "", None)
    assert issue.problem.startswith("cannot read: ")


def test_every_problem_of_a_file_is_reported_together(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    path = write(
        tmp_path,
        """\
        service: orders
        database:
          url_env: postgresql://orders@db/orders
        owns:
          - entity: crm.customer
            version: 1
        mirrors:
          - entity: crm.nothing
            version: 1
            table: first_mirror
            fields: [id]
          - entity: catalog.product
            version: 1
            table: Product
            fields: [sku, title, sku]
          - entity: catalog.product
            version: 1
            table: first_mirror
            fields: [title]
          - entity: crm.customer
            version: 2
            table: customer_mirror
            fields: [id, nmae]
        """,
    )

    with pytest.raises(ManifestError) as caught:
        load_manifest(path, examples)

    located = [(issue.path, issue.line) for issue in caught.value.issues]
    assert located == [
        ("database.url_env", 3),
        ("owns[0].entity", 5),
        ("mirrors[0].entity", 8),
        ("mirrors[1].table", 14),
        ("mirrors[1].fields[2]", 15),
        ("mirrors[2].table", 18),
        ("mirrors[2].fields", 19),
        ("mirrors[3].version", 21),
    ]
    assert all(issue.file == str(path) for issue in caught.value.issues)
    assert str(caught.value).splitlines()[0] == (
        f"{path}:3 at database.url_env: url_env must name an environment variable "
        "(upper case, e.g. ORDERS_DATABASE_URL), never hold the URL itself: "
        "secrets do not belong in manifests"
    )
    assert isinstance(caught.value, ConfigurationError)


def test_two_manifests_cannot_declare_the_same_service(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    first = write(tmp_path / "a", orders(CUSTOMER_MIRROR))
    second = write(
        tmp_path / "b",
        """\
        # A copy left behind by a refactoring.
        service: orders
        database:
          url_env: OTHER_DATABASE_URL
        """,
    )

    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path], examples)

    assert caught.value.issues == [
        ManifestIssue(str(second), "service", 2, f"service 'orders' is also declared in {first}")
    ]


def test_load_manifests_reports_the_problems_of_every_file(
    tmp_path: Path, examples: ContractRegistry
) -> None:
    first = write(tmp_path / "a", orders(CUSTOMER_MIRROR.replace("version: 1", "version: 9")))
    second = write(tmp_path / "b", "")

    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path], examples)

    assert [(i.file, i.path, i.line) for i in caught.value.issues] == [
        (str(first), "mirrors[0].version", 6),
        (str(second), "", 1),
    ]


def test_the_example_manifests_load() -> None:
    manifests = load_manifests([ROOT / "examples"])

    by_service = {manifest.service: manifest for manifest in manifests}
    assert sorted(by_service) == ["catalog", "crm", "orders"]
    assert [(o.entity, o.version) for o in by_service["crm"].owns] == [("crm.customer", 1)]
    assert [(o.entity, o.version) for o in by_service["catalog"].owns] == [("catalog.product", 1)]
    orders_manifest = by_service["orders"]
    assert orders_manifest.database_url_env == "ORDERS_DATABASE_URL"
    assert orders_manifest.owns == ()
    assert [(m.contract.entity, m.table) for m in orders_manifest.mirrors] == [
        ("crm.customer", "customer_mirror"),
        ("catalog.product", "product_mirror"),
    ]
    assert orders_manifest.mirror("crm.customer").fields == tuple(Customer.__contract__.fields)
    assert orders_manifest.mirror("catalog.product").fields == tuple(Product.__contract__.fields)


# -- contracts named by the manifest --------------------------------------------------------

PARCEL_MODULE = """
from replication.contracts import Contract

class Parcel(Contract, entity="{service}.parcel", version=1, key="id"):
    id: int
    label: str
"""


def shipping_manifest(contracts: str, python_path: str | None = None) -> str:
    lines = [
        "service: {service}",
        f"contracts: [{contracts}]",
        *([f"python_path: [{python_path}]"] if python_path else []),
        "database:",
        "  url_env: SHIPPING_DATABASE_URL",
        "owns:",
        "  - entity: {service}.parcel",
        "    version: 1",
    ]
    return "\n".join(lines) + "\n"


def fresh_service(tmp_path: Path) -> str:
    """A service (and module) name no other test registered, from the temporary folder's."""
    return "ship_" + re.sub(r"[^a-z0-9]", "", tmp_path.name.lower())[-12:]


def test_the_manifest_imports_the_contracts_it_names_from_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    service = fresh_service(tmp_path)
    module = f"{service}_contracts"
    folder = tmp_path / "repo"
    write(folder, PARCEL_MODULE.format(service=service), f"{module}.py")
    path = write(folder, shipping_manifest(module).format(service=service))

    manifest = load_manifest(path)

    assert [o.entity for o in manifest.owns] == [f"{service}.parcel"]
    assert manifest.contracts == (module,)
    assert manifest.python_path == (folder.resolve(),)
    assert manifest.migrations == (folder / "migrations").resolve()


def test_python_path_is_relative_to_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    service = fresh_service(tmp_path)
    module = f"{service}_shared"
    write(tmp_path / "shared", PARCEL_MODULE.format(service=service), f"{module}.py")
    path = write(
        tmp_path / "services" / "shipping",
        shipping_manifest(module, "../../shared").format(service=service),
    )

    manifest = load_manifest(path)

    assert manifest.python_path == ((tmp_path / "shared").resolve(),)
    assert manifest.owns[0].entity == f"{service}.parcel"


def test_a_contracts_module_that_cannot_be_imported_names_the_module_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    path = write(tmp_path, shipping_manifest("no_such_contracts_module").format(service="ghost"))

    issues = issues_of(path, ContractRegistry())

    first = issues[0]
    assert (first.line, first.path) == (2, "contracts[0]")
    assert "cannot import contracts module 'no_such_contracts_module'" in first.problem
    assert "No module named 'no_such_contracts_module'" in first.problem
    assert str(tmp_path.resolve()) in first.problem  # where it looked


def test_a_contracts_module_that_raises_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    module = f"{fresh_service(tmp_path)}_broken"
    write(tmp_path, "raise RuntimeError('half-written module')\n", f"{module}.py")
    path = write(tmp_path, shipping_manifest(module).format(service="ghost"))

    [issue, *_] = issues_of(path, ContractRegistry())

    assert "RuntimeError: half-written module" in issue.problem


def test_replication_contracts_overrides_the_manifests_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = fresh_service(tmp_path)
    module = f"{service}_override"
    write(tmp_path / "lib", PARCEL_MODULE.format(service=service), f"{module}.py")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setenv("REPLICATION_CONTRACTS", module)
    path = write(tmp_path, shipping_manifest("not_imported_at_all").format(service=service))

    manifest = load_manifest(path)

    assert manifest.owns[0].entity == f"{service}.parcel"


def test_the_search_for_manifests_skips_hidden_and_tool_folders(tmp_path: Path) -> None:
    from replication.manifest import manifest_files

    for folder in (
        "svc",
        ".venv/lib/x",
        "venv/lib/python3.11/site-packages/y",
        "build/f",
        "dist/g",
    ):
        write(tmp_path / folder, "service: x\n")

    assert manifest_files([tmp_path]) == [tmp_path / "svc" / "replication.yaml"]


def test_a_manifest_naming_no_contracts_modules_is_told_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    path = write(tmp_path, orders(CUSTOMER_MIRROR.replace("crm.customer", "nowhere.thing")))

    [issue] = issues_of(path, registry)

    assert "unknown entity 'nowhere.thing'" in issue.problem
    assert "this manifest names no contracts modules" in issue.problem


def test_a_contracts_module_that_exits_is_an_issue_not_the_commands_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    module = f"{fresh_service(tmp_path)}_exits"
    write(tmp_path, "import sys\nsys.exit(0)\n", f"{module}.py")
    path = write(tmp_path, shipping_manifest(module).format(service="ghost"))

    [issue, *_] = issues_of(path, ContractRegistry())

    assert "SystemExit: 0" in issue.problem


def test_two_services_modules_of_one_name_are_told_apart_not_mixed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    module = f"{fresh_service(tmp_path)}_shared_name"
    first, second = fresh_service(tmp_path) + "a", fresh_service(tmp_path) + "b"
    write(tmp_path / "a", PARCEL_MODULE.format(service=first), f"{module}.py")
    write(tmp_path / "b", PARCEL_MODULE.format(service=second), f"{module}.py")
    load_manifest(write(tmp_path / "a", shipping_manifest(module).format(service=first)))
    path = write(tmp_path / "b", shipping_manifest(module).format(service=second))

    [issue, *_] = issues_of(path, registry)

    assert f"contracts module {module!r} is already imported from" in issue.problem
    assert "share a name" in issue.problem


def test_folders_packages_are_installed_into_are_not_searched(tmp_path: Path) -> None:
    from replication.manifest import manifest_files

    write(tmp_path / "svc", "service: x\n")
    # pip install --target package (a Lambda package): its own manifest is read, the
    # installed library's copies are not.
    (tmp_path / "package" / "replication-0.1.0.dist-info").mkdir(parents=True)
    write(tmp_path / "package", "service: z\n")
    write(tmp_path / "package" / "replication" / "demo" / "lines" / "crm", "service: y\n")

    assert manifest_files([tmp_path, tmp_path / "svc"]) == [
        tmp_path / "package" / "replication.yaml",
        tmp_path / "svc" / "replication.yaml",
    ]


ALIAS_BOMB = "\n".join(
    ["service: x", "database:", "  url_env: X_URL", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)
"""Under 500 bytes that expand to 9**10 items: nine levels of nested aliases."""


def test_yaml_aliases_are_refused_at_once(tmp_path: Path) -> None:
    import time

    path = write(tmp_path, ALIAS_BOMB)

    started = time.monotonic()
    [issue] = issues_of(path, ContractRegistry())

    assert time.monotonic() - started < 2
    assert "anchors and aliases are not allowed" in issue.problem


def test_a_tag_safe_loading_refuses_is_an_issue_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "service: x\ndatabase:\n  url_env: X_URL\nmirrors: !!python/object:os.system [echo]\n",
    )

    [issue] = issues_of(path, ContractRegistry())

    assert issue.line == 4
    assert "could not determine a constructor" in issue.problem


def test_the_gate_reading_manifests_as_written_refuses_aliases_at_once(tmp_path: Path) -> None:
    import time

    from replication.manifest import mirrored_as_written

    write(tmp_path, ALIAS_BOMB)

    started = time.monotonic()
    with pytest.raises(ManifestError, match="anchors and aliases are not allowed"):
        mirrored_as_written([tmp_path])
    assert time.monotonic() - started < 2
