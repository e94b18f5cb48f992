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

__all__ = [
    "CONTRACTS_ENV",
    "import_module",
    "manifest_path",
    "overriding_modules",
    "prepend_path",
    "shadowed_by",
]

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


def manifest_path() -> str:
    """``REPLICATION_MANIFEST``: the function's manifest, or a clear error when it is unset."""
    from replication.errors import ConfigurationError

    path = os.environ.get("REPLICATION_MANIFEST")
    if not path:
        raise ConfigurationError(
            "REPLICATION_MANIFEST is not set: give the path of the service's replication.yaml "
            "in the function's package (the template sets <service>/replication.yaml)"
        )
    return path


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
    # A contracts module may fail in any way, exiting included (a script's sys.exit or
    # argparse): say how, never end the command with its exit code.
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        return f"{type(exc).__name__}: {exc}"
    return None


def shadowed_by(name: str, folders: Iterable[Path]) -> Path | None:
    """The file ``folders`` hold for module ``name`` when another file of that name is
    already imported (two services' modules sharing one name), else None."""
    module = sys.modules.get(name.split(".", 1)[0])
    loaded = getattr(module, "__file__", None)
    if loaded is None:
        return None
    top = name.split(".", 1)[0]
    for folder in folders:
        for candidate in (folder / f"{top}.py", folder / top / "__init__.py"):
            if candidate.is_file() and candidate.resolve() != Path(loaded).resolve():
                return candidate
    return None
