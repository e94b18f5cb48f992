"""Each exit code, with its one meaning, met by a real command run as a process.

The codes are :class:`replication.cli.exits.ExitCode`; docs/cli.md tables them
and a test here holds the table to the enumeration.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from replication.cli import ExitCode, build_parser
from replication.dburl import with_search_path
from tests.aws import MotoServer, moto_server
from tests.e2e_support import closed_port, replication
from tests.owners import engine_for
from tests.paths import ROOT


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def prefix() -> str:
    return f"x{uuid.uuid4().hex[:6]}"


# -- the table -------------------------------------------------------------------------


def documented_codes() -> list[tuple[int, str, str]]:
    text = (ROOT / "docs" / "cli.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (.+) \|$", section, re.M)
    return [(int(code), name, meaning) for code, name, meaning in rows]


def test_the_documented_table_is_the_enumeration() -> None:
    assert documented_codes() == [(c.value, c.name, c.meaning) for c in ExitCode]


def test_the_usage_code_is_the_one_argparse_exits_with() -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["no-such-command"])
    assert exc.value.code == ExitCode.USAGE


# -- one command per code --------------------------------------------------------------


def test_0_a_valid_manifest() -> None:
    done = replication("manifests", "validate", "examples")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "ok  examples/orders/replication.yaml: service orders" in done.stdout


def test_1_an_invalid_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "replication.yaml"
    bad.write_text(
        (ROOT / "examples" / "orders" / "replication.yaml")
        .read_text()
        .replace("fields: [id, name", "fields: [id, shoe_size, name", 1)
    )
    done = replication("manifests", "validate", str(bad))
    assert done.returncode == ExitCode.INVALID, done.stdout + done.stderr
    assert "has no field 'shoe_size'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("no-such-command",),
        ("mirrors", "ddl", "--dialect", "oracle"),
        ("migrations", "upgrade", "--service", "orders", "--sql", "--json"),
        ("topology", "plan", "--exit-code=yes"),
    ],
    ids=["unknown command", "bad choice", "exclusive options", "option takes no value"],
)
def test_2_wrong_usage(argv: tuple[str, ...]) -> None:
    done = replication(*argv)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert "usage: replication" in done.stderr


def test_3_a_database_that_does_not_answer(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    done = replication(
        *("migrations", "current", "--service", "orders", "--manifests", "examples"),
        *("--url", url, "--versions", str(tmp_path)),
    )
    assert done.returncode == ExitCode.UNREACHABLE, done.stdout + done.stderr
    assert "error: the database does not answer or refuses the credentials" in done.stderr


def test_3_an_aws_endpoint_that_does_not_answer(moto: MotoServer) -> None:
    env = {**moto.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    done = replication("topology", "plan", "--manifests", "examples", env=env)
    assert done.returncode == ExitCode.UNREACHABLE, done.stdout + done.stderr
    assert "http://127.0.0.1:9 does not answer" in done.stderr


def test_4_a_destroy_that_keeps_a_dlq_holding_messages(moto: MotoServer) -> None:
    common = ("--manifests", "examples", "--prefix", prefix())
    assert replication("topology", "apply", *common, env=moto.env()).returncode == ExitCode.OK
    plan = json.loads(replication("topology", "plan", *common, "--json", env=moto.env()).stdout)
    dlqs = sorted(c["name"] for c in plan["changes"] if c["kind"] == "dlq")
    sqs = moto.client("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=dlqs[0])["QueueUrl"], MessageBody="x")

    done = replication("topology", "destroy", *common, "--yes", "--json", env=moto.env())

    assert done.returncode == ExitCode.PARTIAL, done.stdout + done.stderr
    report = json.loads(done.stdout)
    kept = [(r["kind"], r["name"], r["reason"]) for r in report["removals"] if not r["deleted"]]
    assert kept == [("dlq", dlqs[0], "holds 1 message(s); export or replay them first")]
    assert (report["kept"], report["deleted"] > 0) == (1, True)
    again = replication(
        "topology", "destroy", *common, "--yes", "--delete-messages", env=moto.env()
    )
    assert again.returncode == ExitCode.OK, again.stdout + again.stderr
    assert again.stdout.endswith("1 deleted, 0 kept\n")


def test_5_a_plan_with_changes_pending_then_0_once_applied(moto: MotoServer) -> None:
    common = ("--manifests", "examples", "--prefix", prefix())

    pending = replication("topology", "plan", *common, "--exit-code", env=moto.env())
    without_flag = replication("topology", "plan", *common, env=moto.env())
    as_json = replication("topology", "plan", *common, "--exit-code", "--json", env=moto.env())

    assert pending.returncode == ExitCode.DIFFERS, pending.stdout + pending.stderr
    assert "(create)" in pending.stdout
    assert without_flag.returncode == ExitCode.OK, without_flag.stderr
    assert without_flag.stdout == pending.stdout
    assert as_json.returncode == ExitCode.DIFFERS
    planned = json.loads(as_json.stdout)
    assert planned["pending"] == len(planned["changes"]) > 0
    assert replication("topology", "apply", *common, env=moto.env()).returncode == ExitCode.OK
    converged = replication("topology", "plan", *common, "--exit-code", env=moto.env())
    assert converged.returncode == ExitCode.OK, converged.stdout + converged.stderr
    assert "No changes" in converged.stdout


@pytest.fixture
def schema_url(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL URL whose connections work in a new, empty schema."""
    admin = engine_for("postgresql", tmp_path)
    name = f"exit_codes_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield with_search_path(admin.url.render_as_string(False), name)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def test_5_a_database_that_differs_from_its_declarations(schema_url: str, tmp_path: Path) -> None:
    services = tmp_path / "services"
    shutil.copytree(ROOT / "examples", services, ignore=shutil.ignore_patterns("*.py"))
    common = (
        *("--service", "orders", "--manifests", str(services)),
        *("--url", schema_url, "--versions", str(tmp_path / "versions")),
    )
    assert replication("migrations", "generate", *common, "-m", "create").returncode == 0
    assert replication("migrations", "upgrade", *common).returncode == 0
    assert replication("migrations", "check", *common).returncode == ExitCode.OK
    orders = services / "orders" / "replication.yaml"
    orders.write_text(orders.read_text().replace("fields: [sku, title", "fields: [sku", 1))

    done = replication("migrations", "check", *common)
    as_json = replication("migrations", "check", *common, "--json")

    assert done.returncode == ExitCode.DIFFERS, done.stdout + done.stderr
    assert "orders: the database differs from the declarations" in done.stdout
    assert "column product_mirror.title exists but is no longer declared" in done.stdout
    assert done.stderr == ""
    assert as_json.returncode == ExitCode.DIFFERS
    assert json.loads(as_json.stdout) == {
        "service": "orders",
        "matches": False,
        "differences": ["column product_mirror.title exists but is no longer declared"],
    }


# -- --json ----------------------------------------------------------------------------

REPORTING = {
    ("contracts", "list"),
    ("contracts", "lock"),
    ("contracts", "check"),
    ("manifests", "validate"),
    ("topology", "plan"),
    ("topology", "apply"),
    ("topology", "destroy"),
    ("migrations", "check"),
    ("migrations", "current"),
    ("migrations", "history"),
    ("migrations", "upgrade"),
    ("migrations", "downgrade"),
    ("migrations", "stamp"),
    ("backfill",),
    ("reconcile",),
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "replay"),
    ("dlq", "export"),
    ("dlq", "import"),
    ("dlq", "purge"),
}
"""The commands that report on state or on what they did: the list docs/cli.md gives."""


def commands_with_json() -> set[tuple[str, ...]]:
    import argparse

    found: set[tuple[str, ...]] = set()

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
                return
        if "--json" in parser._option_string_actions:
            found.add(words)

    walk(build_parser(), ())
    return found


def test_every_command_that_reports_takes_json() -> None:
    assert commands_with_json() == REPORTING


def test_a_json_report_is_one_document_on_stdout() -> None:
    done = replication("manifests", "validate", "examples", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    services = {m["service"]: m for m in json.loads(done.stdout)["manifests"]}
    assert services["orders"]["mirrors"][0] == {
        "entity": "crm.customer",
        "version": 1,
        "table": "customer_mirror",
    }
    listed = json.loads(replication("contracts", "list", "--json").stdout)["contracts"]
    customer = next(c for c in listed if c["entity"] == "crm.customer")
    assert {"name": "email", "kind": "str", "pii": True, "optional": False} in customer["fields"]
