"""Importing the modules that declare a service's contracts.

A manifest names them (``contracts: [shipping_contracts]``). They are
imported with the manifest's ``python_path`` folders (default: the manifest's
own folder) put first on ``sys.path``, as Alembic's ``prepend_sys_path`` does,
so the command, the relay and apply functions and the scheduled reconcile
register the same contracts from the same manifest with no extra environment.
``REPLICATION_CONTRACTS`` (comma-separated module names; the command's
``--contracts``) overrides the manifests' lists.
"""

from __future__ import annotations

__all__ = ["CONTRACTS_ENV", "import_module", "overriding_modules", "prepend_path"]

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

CONTRACTS_ENV = "REPLICATION_CONTRACTS"


def overriding_modules() -> list[str] | None:
    """The modules ``REPLICATION_CONTRACTS`` names instead of the manifests', if it is set."""
    modules = [m.strip() for m in os.environ.get(CONTRACTS_ENV, "").split(",") if m.strip()]
    return modules or None


def prepend_path(folders: Iterable[Path]) -> None:
    """Put ``folders`` first on ``sys.path`` (in their order), each at most once."""
    for folder in reversed(list(folders)):
        text = str(folder)
        if text not in sys.path:
            sys.path.insert(0, text)


def import_module(name: str) -> str | None:
    """Import ``name`` so its contracts register; None, or why it could not be imported."""
    if name in sys.modules:
        return None
    importlib.invalidate_caches()  # a module written since the folder was last listed
    try:
        importlib.import_module(name)
    except Exception as exc:  # a contracts module may fail in any way: say how, never crash
        return f"{type(exc).__name__}: {exc}"
    return None
