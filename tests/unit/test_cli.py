"""The ``replication`` command: exit codes, messages, and the README's examples."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from replication.cli import ExitCode, main
from replication.consumer.wiring import load_statements
from replication.manifest import load_manifest
from tests.paths import ROOT


def test_validate_accepts_the_example_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "validate", str(ROOT / "examples")]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "service orders" in out
    assert "crm.customer v1 -> customer_mirror" in out


def test_validate_reports_every_problem_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "replication.yaml"
    bad.write_text(
        "service: orders\n"
        "database:\n"
        "  url_env: ORDERS_DATABASE_URL\n"
        "mirrors:\n"
        "  - entity: crm.customer\n"
        "    version: 1\n"
        "    table: customer_mirror\n"
        "    fields: [name, shoe_size]\n"
    )
    assert main(["manifests", "validate", str(bad)]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert f"{bad}:8 at mirrors[0].fields[1]: crm.customer v1 has no field 'shoe_size'" in err
    assert f"{bad}:8 at mirrors[0].fields: the key field(s) id of crm.customer v1" in err


def test_missing_path_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "validate", "/nonexistent/replication.yaml"]) == ExitCode.INVALID
    assert "no such file or folder: /nonexistent/replication.yaml" in capsys.readouterr().err


def test_unknown_contract_module_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--contracts", "no_such_module", "contracts", "list"]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert "cannot import contracts module 'no_such_module' named by" in err
    assert "No module named 'no_such_module'" in err


def test_unknown_service_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mirrors", "ddl", str(ROOT / "examples"), "--service", "billing"])
    assert code == ExitCode.INVALID
    assert "unknown service 'billing' (known: catalog, crm, orders)" in capsys.readouterr().err


def test_bad_usage_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["mirrors", "ddl", "--dialect", "oracle"])
    assert exc.value.code == ExitCode.USAGE


def test_contracts_list_marks_pii(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "list"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "crm.customer v1  (owner crm, key id)" in out
    assert "email: str  [pii]" in out
    assert "phone: str  [pii, optional]" in out


def test_ddl_renders_each_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    for dialect, marker in [
        ("postgresql", "JSONB"),
        ("mariadb", "DATETIME(6)"),
        ("sqlite", "CREATE TABLE product_mirror"),
    ]:
        args = ["mirrors", "ddl", str(ROOT / "examples"), "--dialect", dialect]
        assert main(args) == ExitCode.OK
        assert marker in capsys.readouterr().out


def test_render_writes_statements_that_load_back(tmp_path: Path) -> None:
    args = ["mirrors", "render", str(ROOT / "examples"), "--dialect", "mysql", "--out"]
    assert main([*args, str(tmp_path)]) == ExitCode.OK
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json"))
    assert files == ["orders/mirror-statements.mysql.json"]
    manifest = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    loaded = load_statements(manifest, "mysql", tmp_path / files[0])
    assert sorted(loaded) == ["catalog.product", "crm.customer"]
    assert "ON DUPLICATE KEY UPDATE" in loaded["catalog.product"].upsert_suffix


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The command", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/replication"
    argv = [a.replace("build/statements", str(tmp_path)) for a in argv[1:]]
    done = subprocess.run(
        [sys.executable, "-m", "replication.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout


def test_readme_python_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(from pathlib import Path.*?)```", text, re.S)
    assert block is not None
    code = block.group(1).replace('"examples/', f'"{ROOT}/examples/')
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    promised = re.search(r"print\(result\)  # (.*)", code)
    assert promised is not None
    assert done.stdout.strip() == promised.group(1)


def test_migrations_without_alembic_say_which_extra_installs_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['alembic'] = None  # as if the cli extra were not installed\n"
        "from replication.cli import main\n"
        "sys.exit(main(['migrations', 'check', '--service', 'orders', '--url', 'sqlite://']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == ExitCode.INVALID, done.stderr
    assert "install the wheel with its cli extra, or pip install alembic" in done.stderr
