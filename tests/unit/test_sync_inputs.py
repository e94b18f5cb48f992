"""backfill and reconcile refuse bad input clearly, before touching a database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from contracts import Customer, Product
from replication.errors import ConfigurationError
from replication.sync.where import parse_condition
from tests.e2e_support import run_cli
from tests.paths import ROOT
from tests.sync_support import BACKFILL, RECONCILE

CUSTOMER = Customer.__contract__
PRODUCT = Product.__contract__


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tier", "write 'field=value'"),
        ("rank=3", "has no field 'rank'"),
        ("address=x", "holds JSON"),
        ("tier=golden", "not a value of tier"),
        ("tier<gold", "takes = != or in"),
        ("tier in gold,", "a value is empty"),
        ("credit_limit>lots", "not a value of credit_limit"),
    ],
)
def test_a_bad_condition_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_condition(text, CUSTOMER)


def test_conditions_are_typed_by_the_contract() -> None:
    tiers = parse_condition("tier in gold, platinum", CUSTOMER)
    assert (tiers.op, [t.value for t in tiers.values]) == ("in", ["gold", "platinum"])
    stock = parse_condition("stock >= 10", PRODUCT)
    assert (stock.field, stock.op, stock.values) == ("stock", ">=", (10,))
    sql = stock.sql(sa.column("stock", sa.Integer), "postgresql")
    assert str(sql.compile(compile_kwargs={"literal_binds": True})) == "stock >= 10"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["reconcile", "--entity", "crm.customer", "--consumer", "nobody"],
            1,
            "unknown service 'nobody'",
        ),
        (
            ["reconcile", "--entity", "crm.customer", "--consumer", "crm"],
            1,
            "crm does not mirror crm.customer",
        ),
        (
            ["backfill", "--entity", "hr.person", "--consumer", "orders"],
            1,
            "orders does not mirror hr.person",
        ),
        (
            [
                *RECONCILE,
                "--where",
                "tier=golden",
            ],
            1,
            "not a value of tier",
        ),
        (
            [*RECONCILE, "--buckets", "0"],
            2,
            "must be positive",
        ),
        (
            [*BACKFILL, "--rate", "0"],
            2,
            "must be positive",
        ),
        (
            [
                *RECONCILE,
                "--manifests",
                "nowhere",
            ],
            1,
            "no such file or folder: nowhere",
        ),
    ],
)
def test_bad_input_is_refused_with_its_reason(
    args: list[str], code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("ORDERS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    found, _, err = run_cli(*args)
    assert found == code
    assert message in err


def test_an_owner_without_a_source_is_told_how_to_declare_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("crm", "orders"):
        folder = tmp_path / service
        folder.mkdir()
        text = (ROOT / "examples" / service / "replication.yaml").read_text()
        (folder / "replication.yaml").write_text(
            "\n".join(line for line in text.splitlines() if "source:" not in line) + "\n"
        )
    code, _, err = run_cli(
        "reconcile",
        "--entity",
        "crm.customer",
        "--consumer",
        "orders",
        "--manifests",
        str(tmp_path),
    )
    assert code == 1
    assert "crm's manifest names no source for crm.customer v1" in err


@pytest.mark.parametrize("command", ["backfill", "reconcile"])
def test_help_has_an_example(command: str) -> None:
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert f"Example: replication {command}" in out


def test_mariadb_urls_convert_values_as_mysql() -> None:
    from replication.mirror.values import converters

    kinds = ("uuid", "datetime", "json", "enum")
    assert converters(kinds, "mariadb") == converters(kinds, "mysql")
