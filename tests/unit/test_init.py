"""``replication init``: a service's files in its own folder; refusals write nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replication.cli import ExitCode, main


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPLICATION_CONTRACTS", raising=False)
    return tmp_path


def files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts
    )


def test_an_owner_gets_a_manifest_a_contracts_module_and_its_alembic_environment(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = f"ini{abs(hash(here)) % 10**6}"
    assert main(["init", "--service", service, "--owns", f"{service}.line_item"]) == ExitCode.OK
    assert files(here) == sorted(
        [
            "alembic.ini",
            f"{service}_contracts.py",
            "migrations",
            "migrations/README.md",
            "migrations/env.py",
            "migrations/script.py.mako",
            "migrations/versions",
            f"migrations/versions/{service}",
            "replication.yaml",
        ]
    )
    assert "class LineItem(Contract" in (here / f"{service}_contracts.py").read_text()
    out = capsys.readouterr().out
    assert f"replication migrations generate --service {service}" in out


def test_class_names_never_hide_a_keyword_or_an_import(here: Path) -> None:
    service = f"kw{abs(hash(here)) % 10**6}"
    owns = [a for n in ("none", "field", "contract", "item") for a in ("--owns", f"{service}.{n}")]
    assert main(["init", "--service", service, *owns]) == ExitCode.OK
    text = (here / f"{service}_contracts.py").read_text()
    for name in ("NoneEntity", "FieldEntity", "ContractEntity", "Item"):
        assert f"class {name}(Contract" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--owns", "dup.item", "--owns", "dup.item"], "--owns dup.item is given twice"),
        (["--owns", "dup.item_", "--owns", "dup.item__"], "would both be class Item"),
        (["--owns", "other.item"], "so dup owns 'dup.<name>' entities"),
        (["--mirrors", "nobody.thing"], "no contract for nobody.thing is registered"),
        ([], "say what the service does"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    here: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--service", "dup", *args]) == ExitCode.INVALID
    assert message in capsys.readouterr().err
    assert files(here) == []


def test_an_override_meant_for_other_work_does_not_decide_the_new_manifest(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATION_CONTRACTS", "some_other_module")
    service = f"ov{abs(hash(here)) % 10**6}"
    assert main(["init", "--service", service, "--owns", f"{service}.item"]) == ExitCode.OK
    assert os.environ["REPLICATION_CONTRACTS"] == "some_other_module"  # restored after


def test_migrations_only_adds_the_environment_beside_an_existing_manifest(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "replication.yaml").write_text("service: bare\ndatabase:\n  url_env: BARE_URL\n")
    assert main(["init", "--service", "bare", "--migrations-only"]) == ExitCode.OK
    assert (here / "migrations" / "env.py").is_file()
    assert (here / "alembic.ini").is_file()
    assert main(["init", "--service", "bare", "--migrations-only"]) == ExitCode.INVALID
    assert "not overwriting migrations/env.py" in capsys.readouterr().err


def test_an_environment_for_a_manifest_that_does_not_load_leaves_nothing_behind(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "replication.yaml").write_text(
        "service: bare\ndatabase:\n  url_env: BARE_URL\n"
        "mirrors:\n  - entity: nobody.thing\n    version: 1\n    table: t\n    fields: [id]\n"
    )
    assert main(["init", "--service", "bare", "--migrations-only"]) == ExitCode.INVALID
    assert "nothing written" in capsys.readouterr().err
    assert files(here) == ["replication.yaml"]
