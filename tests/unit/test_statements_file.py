"""A statements file rendered for one consumer is refused by another, with how to fix it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from replication.cli import ExitCode, main
from replication.consumer.wiring import load_statements
from replication.errors import ConfigurationError
from replication.manifest import Manifest, load_manifest
from tests.paths import ROOT

ORDERS = ROOT / "examples" / "orders" / "replication.yaml"


def second_consumer(folder: Path) -> Path:
    """A ``shop`` consumer shaped like the example ``orders``, mirroring catalog.product only."""
    document: dict[str, Any] = yaml.safe_load(ORDERS.read_text())
    here = ORDERS.parent
    document["service"] = "shop"
    document["database"] = {"url_env": "SHOP_DATABASE_URL"}
    document["mirrors"] = [m for m in document["mirrors"] if m["entity"] == "catalog.product"]
    # Paths in the manifest are relative to it: keep them pointing where orders' point.
    if "python_path" in document:
        document["python_path"] = [str((here / p).resolve()) for p in document["python_path"]]
    if "migrations" in document:
        document["migrations"] = str((here / document["migrations"]).resolve())
    path = folder / "shop" / "replication.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def shop_statements(tmp_path: Path) -> Path:
    """The statements file ``replication mirrors render`` writes for ``shop`` (SQLite)."""
    manifest = second_consumer(tmp_path / "shop-line")
    out = tmp_path / "shop-build"
    args = ["mirrors", "render", str(manifest), "--dialect", "sqlite", "--out", str(out)]
    assert main(args) == ExitCode.OK
    written = out / "shop" / "mirror-statements.sqlite.json"
    assert written.exists()
    return written


@pytest.fixture
def orders() -> Manifest:
    return load_manifest(ORDERS)


def refusal(manifest: Manifest, path: Path | None) -> str:
    with pytest.raises(ConfigurationError) as refused:
        load_statements(manifest, "sqlite", path)
    return str(refused.value)


def test_a_file_rendered_for_another_consumer_is_refused_naming_both(
    orders: Manifest, shop_statements: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATION_STATEMENTS", str(shop_statements))
    message = refusal(orders, shop_statements)
    assert message.startswith(
        f"statements file {shop_statements} (named by REPLICATION_STATEMENTS) "
        "was rendered for service shop, not orders: each consumer needs its own; "
        f"render it with: replication mirrors render {ORDERS} --service orders "
        f"--dialect sqlite --out {shop_statements.parent.parent}, "
    )
    expected = shop_statements.parent.parent / "orders" / "mirror-statements.sqlite.json"
    assert message.endswith(f", then set REPLICATION_STATEMENTS={expected}")


def test_the_command_in_the_refusal_renders_a_file_that_loads(
    orders: Manifest, shop_statements: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATION_STATEMENTS", str(shop_statements))
    message = refusal(orders, shop_statements)
    found = re.search(
        r"render it with: (replication .*), then set REPLICATION_STATEMENTS=(.*)$", message
    )
    assert found is not None
    argv = shlex.split(found.group(1))
    assert main(argv[1:]) == ExitCode.OK
    loaded = load_statements(orders, "sqlite", Path(found.group(2)))
    assert sorted(loaded) == ["catalog.product", "crm.customer"]


def test_a_file_given_by_option_is_named_as_such(
    orders: Manifest, shop_statements: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATION_STATEMENTS", raising=False)
    message = refusal(orders, shop_statements)
    assert f"{shop_statements} (named by replication consume --statements)" in message
    expected = shop_statements.parent.parent / "orders" / "mirror-statements.sqlite.json"
    assert message.endswith(f", then pass --statements {expected}")


def test_a_file_beside_the_manifest_for_another_service_is_refused(
    orders: Manifest, shop_statements: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "package" / "orders"
    folder.mkdir(parents=True)
    (folder / "replication.yaml").write_text(ORDERS.read_text())
    (folder / "mirror-statements.sqlite.json").write_text(shop_statements.read_text())
    packaged = load_manifest(folder / "replication.yaml")
    message = refusal(packaged, None)
    assert f"(the default beside {folder / 'replication.yaml'})" in message
    assert "was rendered for service shop, not orders" in message
    assert message.endswith(f"--out {tmp_path / 'package'}")  # rewrites it in place


def test_consume_refuses_another_consumers_file_before_touching_aws(
    shop_statements: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REPLICATION_"))}
    env.update(
        REPLICATION_STATEMENTS=str(shop_statements),
        ORDERS_DATABASE_URL=f"sqlite:///{tmp_path / 'orders.sqlite'}",
        AWS_ENDPOINT_URL="http://127.0.0.1:1",
        AWS_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    command = ["consume", "--service", "orders", "--manifests", "examples", "--drain"]
    done = subprocess.run(
        [sys.executable, "-m", "replication.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == ExitCode.INVALID, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"error: statements file {shop_statements} (named by REPLICATION_STATEMENTS) "
        "was rendered for service shop, not orders: each consumer needs its own; "
        "render it with: replication mirrors render examples/orders/replication.yaml "
        "--service orders --dialect sqlite"
    ), done.stderr
    assert not (tmp_path / "orders.sqlite").exists()
