"""``replication package``: a function's zip, built from binary wheels for Lambda's platform."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from replication.errors import ConfigurationError
from replication.package import PackageSettings, requirements_for
from tests.paths import ROOT

PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replication.cli", "package", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_an_owner_and_a_consumer_are_packaged_with_what_their_functions_import(
    tmp_path: Path,
) -> None:
    bundle = tmp_path.parent / f"{tmp_path.name}-global-bundle.pem"
    bundle.write_text(PEM)
    for service, extra in (("orders", ["--database-ca-bundle", str(bundle)]), ("crm", [])):
        done = run(
            *("--service", service, "--arch", "arm64", "--python", "3.12", "--out", str(tmp_path)),
            *extra,
        )
        assert done.returncode == 0, done.stderr
        assert "MB zipped" in done.stdout
    [apply] = tmp_path.glob("orders-apply-arm64-py3.12.zip")
    [relay] = tmp_path.glob("crm-relay-arm64-py3.12.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([apply.name, relay.name])
    with zipfile.ZipFile(apply) as archive:
        names = set(archive.namelist())
        manifest = yaml.safe_load(archive.read("orders/replication.yaml"))
        aarch64 = [n for n in names if n.startswith("pydantic_core/") and n.endswith(".so")]
        # Where the template's DatabaseCaBundle looks by default (the function's root).
        assert archive.read("database-ca-bundle.pem").decode() == PEM
    assert manifest["python_path"] == ["."]  # the contracts beside it, whatever the repository
    assert "migrations" not in manifest
    assert {
        "orders/contracts/crm.py",
        "orders/mirror-statements.postgresql.json",
        "replication/consumer/handler.py",
        "psycopg2/__init__.py",
    } <= names
    assert aarch64
    assert all("aarch64" in n for n in aarch64)
    assert not [n for n in names if n.startswith(("replication/demo/", "pymysql/"))]
    assert not [n for n in names if "__pycache__" in n]
    with zipfile.ZipFile(relay) as archive:
        names = set(archive.namelist())
    assert "crm/contracts/crm.py" in names
    assert not [n for n in names if "mirror-statements" in n]
    assert "database-ca-bundle.pem" not in names


def test_a_ca_bundle_that_is_no_pem_file_is_refused_before_anything_is_built(
    tmp_path: Path,
) -> None:
    text = tmp_path / "bundle.txt"
    text.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match=r"--database-ca-bundle names .* no PEM"):
        PackageSettings(database_ca_bundle=text)

    done = run("--service", "orders", "--database-ca-bundle", str(tmp_path / "absent.pem"))

    assert done.returncode == 1
    assert "--database-ca-bundle names" in done.stderr
    assert "cannot be read" in done.stderr


def test_requirements_are_the_core_and_the_dialects_driver() -> None:
    postgresql = requirements_for("postgresql")
    mysql = requirements_for("mysql")
    assert any(r.startswith("psycopg2-binary") for r in postgresql)
    assert not any(r.startswith(("psycopg[", "PyMySQL", "alembic", "moto")) for r in postgresql)
    assert any(r.startswith("PyMySQL") for r in mysql)
    assert not any(r.startswith("psycopg") for r in mysql)


def test_settings_outside_lambdas_runtimes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="Lambda runs x86_64, arm64"):
        PackageSettings(architecture="sparc")
    with pytest.raises(ConfigurationError, match=r"python3\.11, python3\.12, python3\.13"):
        PackageSettings(python="3.9")
    done = run("--service", "nobody")
    assert done.returncode == 1
    assert "unknown service 'nobody'" in done.stderr


def test_two_modules_of_one_package_are_packaged_once(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "orders" / "replication.yaml").read_text()
    text = text.replace("contracts: [contracts]", "contracts: [contracts.crm, contracts.catalog]")
    text = text.replace("python_path: [../..]", f"python_path: [{ROOT}]")
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "replication.yaml").write_text(text)
    out = tmp_path / "out"

    done = run("--service", "orders", "--manifests", str(tmp_path / "orders"), "--out", str(out))

    assert done.returncode == 0, done.stderr
    [artifact] = out.glob("*.zip")
    with zipfile.ZipFile(artifact) as archive:
        names = archive.namelist()
    assert names.count("orders/contracts/crm.py") == 1
    assert "orders/mirror-statements.postgresql.json" in names
