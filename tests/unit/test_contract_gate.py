"""The contract gate: one case per rule, classified and with its exit code.

Each case declares a contract before and after a change in two throwaway
modules, locks the first, and runs ``replication contracts check`` as a
process against the second, with a consumer manifest mirroring some fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT

BEFORE = """
    id: int
    label: str = Field(max_length=50)
    weight: int
    color: Color
    note: str
"""
COLORS = ("red", "green")


def parcel(fields: str, *, key: str = "id", version: int = 1) -> str:
    """A Parcel contract class at ``version`` with ``fields``."""
    body = textwrap.indent(textwrap.dedent(fields).strip("\n"), "    ")
    return (
        f"class ParcelV{version}(Contract, entity='shipping.parcel', version={version}, "
        f"key={key!r}):\n{body}\n"
    )


def module(
    fields: str, *, key: str = "id", colors: tuple[str, ...] = COLORS, version: int = 1
) -> str:
    """A contracts module declaring Color and one Parcel version."""
    return with_classes(parcel(fields, key=key, version=version), colors=colors)


def with_classes(*classes: str, colors: tuple[str, ...] = COLORS) -> str:
    members = "".join(f"    {c.upper()} = {c!r}\n" for c in colors)
    header = (
        "import enum\nfrom pydantic import Field\nfrom replication.contracts import Contract\n\n"
        f"class Color(enum.StrEnum):\n{members}\n"
    )
    return header + "\n".join(classes)


def manifest(fields: tuple[str, ...], version: int = 1) -> str:
    return textwrap.dedent(
        f"""
        service: stores
        database:
          url_env: STORES_DATABASE_URL
        mirrors:
          - entity: shipping.parcel
            version: {version}
            table: parcel_mirror
            fields: [{", ".join(fields)}]
        """
    )


@dataclass
class Gate:
    tmp: Path

    def cli(self, *args: str, contracts: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": f"{self.tmp}{os.pathsep}{ROOT}"}
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "replication.cli",
                "--contracts",
                contracts,
                "contracts",
                *args,
                "--lock",
                str(self.tmp / "lock.json"),
                "--manifests",
                str(self.tmp / "stores.yaml"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.tmp,
            check=False,
        )

    def run(
        self, before: str, after: str, mirrored: tuple[str, ...], *, version: int = 1
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
        (self.tmp / "parcel_before.py").write_text(before)
        (self.tmp / "parcel_after.py").write_text(after)
        (self.tmp / "stores.yaml").write_text(manifest(mirrored, version))
        locked = self.cli("lock", contracts="parcel_before")
        assert locked.returncode == 0, locked.stderr
        checked = self.cli("check", contracts="parcel_after")
        as_json = self.cli("check", "--json", contracts="parcel_after")
        assert as_json.returncode == checked.returncode
        return checked, json.loads(as_json.stdout)["changes"]


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path)


def verdicts(changes: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(c["field"], c["rule"], c["verdict"]) for c in changes]


def test_unchanged_contracts_pass(gate: Gate) -> None:
    checked, changes = gate.run(module(BEFORE), module(BEFORE), ("id", "label"))
    assert checked.returncode == 0
    assert changes == []
    assert "0 change(s)" in checked.stdout


def test_added_optional_field_is_compatible_for_everyone(gate: Gate) -> None:
    after = module(BEFORE + "    size: int | None = None\n")
    checked, changes = gate.run(module(BEFORE), after, ("id", "label"))
    assert verdicts(changes) == [("size", "optional field added", "compatible")]
    assert checked.returncode == 0
    assert "run `replication contracts lock`" in checked.stdout


def test_added_required_field_breaks_a_consumer_that_mirrors_it(gate: Gate) -> None:
    after = module(BEFORE + "    size: int\n")
    checked, changes = gate.run(module(BEFORE), after, ("id", "label", "size"))
    assert verdicts(changes) == [("size", "required field added", "breaking")]
    assert changes[0]["consumers"] == {"stores": ["size"]}
    assert checked.returncode == 1
    assert "breaks stores (mirrors size)" in checked.stdout
    assert "publish shipping.parcel v2 alongside shipping.parcel v1" in checked.stderr


def test_added_required_field_nobody_mirrors_breaks_nobody(gate: Gate) -> None:
    after = module(BEFORE + "    size: int\n")
    checked, changes = gate.run(module(BEFORE), after, ("id", "label"))
    assert verdicts(changes) == [("size", "required field added", "breaking for nobody")]
    assert checked.returncode == 0


def test_removed_field_breaks_the_consumer_that_mirrors_it(gate: Gate) -> None:
    after = module(BEFORE.replace("    note: str\n", ""))
    checked, changes = gate.run(module(BEFORE), after, ("id", "label", "note"))
    assert verdicts(changes) == [("note", "field removed", "breaking")]
    assert changes[0]["consumers"] == {"stores": ["note"]}
    assert checked.returncode == 1


def test_removed_field_nobody_mirrors_breaks_nobody(gate: Gate) -> None:
    after = module(BEFORE.replace("    note: str\n", ""))
    checked, changes = gate.run(module(BEFORE), after, ("id", "label"))
    assert verdicts(changes) == [("note", "field removed", "breaking for nobody")]
    assert checked.returncode == 0
    assert "no consumer mirrors it" in checked.stdout


def test_renamed_field_is_recognised_and_breaks_its_readers(gate: Gate) -> None:
    after = module(BEFORE.replace("weight: int", "mass: int"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "weight"))
    assert verdicts(changes) == [("weight", "field renamed", "breaking")]
    assert changes[0]["detail"] == "weight -> mass"
    assert checked.returncode == 1


def test_type_narrowing_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE.replace("max_length=50", "max_length=20"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "label"))
    assert verdicts(changes) == [("label", "type narrowed", "breaking")]
    assert "maxLength 50 -> 20" in str(changes[0]["detail"])
    assert checked.returncode == 1


def test_type_widening_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE.replace("weight: int", "weight: float"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "weight"))
    assert verdicts(changes) == [("weight", "type widened", "breaking")]
    assert checked.returncode == 1
    wider = module(BEFORE.replace("max_length=50", "max_length=80"))
    checked, changes = gate.run(module(BEFORE), wider, ("id", "label"))
    assert verdicts(changes) == [("label", "type widened", "breaking")]


def test_type_change_unrelated_types_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE.replace("weight: int", "weight: str"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "weight"))
    assert verdicts(changes) == [("weight", "type changed", "breaking")]
    assert checked.returncode == 1


def test_narrowing_a_field_nobody_mirrors_breaks_nobody(gate: Gate) -> None:
    after = module(BEFORE.replace("max_length=50", "max_length=20"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "weight"))
    assert verdicts(changes) == [("label", "type narrowed", "breaking for nobody")]
    assert checked.returncode == 0


def test_enum_value_added_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE, colors=(*COLORS, "blue"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "color"))
    assert verdicts(changes) == [("color", "enum values added", "breaking")]
    assert changes[0]["detail"] == "color: added 'blue'"
    assert checked.returncode == 1


def test_enum_value_removed_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE, colors=("red",))
    checked, changes = gate.run(module(BEFORE), after, ("id", "color"))
    assert verdicts(changes) == [("color", "enum values removed", "breaking")]
    assert changes[0]["detail"] == "color: removed 'green'"
    assert checked.returncode == 1


def test_key_change_breaks_every_consumer(gate: Gate) -> None:
    after = module(BEFORE, key="label")
    checked, changes = gate.run(module(BEFORE), after, ("id", "label"))
    assert verdicts(changes) == [(None, "key changed", "breaking")]
    assert changes[0]["detail"] == "key id -> label"
    assert checked.returncode == 1


def test_made_nullable_breaks_readers(gate: Gate) -> None:
    after = module(BEFORE.replace("note: str", "note: str | None"))
    checked, changes = gate.run(module(BEFORE), after, ("id", "note"))
    assert verdicts(changes) == [("note", "now nullable", "breaking")]
    assert checked.returncode == 1


def test_made_required_breaks_readers(gate: Gate) -> None:
    before = module(BEFORE.replace("note: str", "note: str | None = None"))
    checked, changes = gate.run(before, module(BEFORE), ("id", "note"))
    assert verdicts(changes) == [("note", "no longer nullable", "breaking")]
    assert checked.returncode == 1


def test_a_new_major_version_is_compatible(gate: Gate) -> None:
    after = with_classes(parcel(BEFORE), parcel(BEFORE.replace("note: str", ""), version=2))
    checked, changes = gate.run(module(BEFORE), after, ("id", "note"))
    assert verdicts(changes) == [(None, "contract version added", "compatible")]
    assert checked.returncode == 0


def test_removing_a_major_version_breaks_consumers_pinned_to_it(gate: Gate) -> None:
    after = module(BEFORE, version=2)
    checked, changes = gate.run(module(BEFORE), after, ("id", "note"))
    assert checked.returncode == 1
    assert "shipping.parcel v1" in checked.stdout
    assert [(c["contract"], c["rule"], c["verdict"]) for c in changes] == [
        ("shipping.parcel v1", "contract version removed", "breaking"),
        ("shipping.parcel v2", "contract version added", "compatible"),
    ]


def test_lock_refuses_a_breaking_change_unless_forced(gate: Gate) -> None:
    after = module(BEFORE.replace("    note: str\n", ""))
    gate.run(module(BEFORE), after, ("id", "note"))
    lock = gate.tmp / "lock.json"
    before = lock.read_text()

    refused = gate.cli("lock", contracts="parcel_after")
    assert refused.returncode == 1
    assert "not locking changes that break a consumer" in refused.stderr
    assert lock.read_text() == before

    forced = gate.cli("lock", "--force", contracts="parcel_after")
    assert forced.returncode == 0
    assert gate.cli("check", "--strict", contracts="parcel_after").returncode == 0


def test_strict_check_exits_5_while_the_lock_is_behind(gate: Gate) -> None:
    after = module(BEFORE + "    size: int | None = None\n")
    gate.run(module(BEFORE), after, ("id",))
    assert gate.cli("check", "--strict", contracts="parcel_after").returncode == 5
    assert gate.cli("lock", contracts="parcel_after").returncode == 0
    assert gate.cli("check", "--strict", contracts="parcel_after").returncode == 0


def test_a_missing_lock_is_a_clear_error(gate: Gate) -> None:
    (gate.tmp / "parcel_after.py").write_text(module(BEFORE))
    (gate.tmp / "stores.yaml").write_text(manifest(("id",)))
    checked = gate.cli("check", contracts="parcel_after")
    assert checked.returncode == 1
    assert "no contract lock at" in checked.stderr
    assert "replication contracts lock" in checked.stderr


def test_the_projects_lock_is_current() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "replication.cli", "contracts", "check", "--strict"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
