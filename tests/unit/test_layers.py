"""The import contracts (pyproject's ``[tool.importlinter]``) hold, and would catch a breach.

``make lint`` runs ``lint-imports``; these tests run it on the tree as it is and
on a copy with a cycle put back and a layer crossed upwards, to show the
contracts are not vacuous.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

LINT = Path(sys.executable).parent / "lint-imports"


def lint(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_a_cycle_and_an_upward_import_break_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "replication", tmp_path / "replication", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "replication" / "consumer" / "dead_letters.py").open("a") as f:
        f.write("\nfrom replication.consumer.core import Consumer  # noqa: E402\n")
    with (tmp_path / "replication" / "mirror" / "apply.py").open("a") as f:
        f.write("\nimport sqlalchemy  # noqa: E402\n")
    with (tmp_path / "replication" / "mirror" / "decide.py").open("a") as f:
        f.write("\nfrom replication.consumer.records import Delivery  # noqa: E402\n")

    done = lint(tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Contracts: 0 kept, 3 broken." in done.stdout
    assert ".dead_letters -> .core" in done.stdout
    assert "replication.mirror.decide -> replication.consumer.records" in done.stdout
    assert "replication.mirror.apply -> sqlalchemy" in done.stdout
