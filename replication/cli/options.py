"""What several command groups share: common options, and reading them into manifests."""

from __future__ import annotations

__all__ = [
    "Subcommands",
    "existing_paths",
    "find_manifests",
    "import_contracts",
    "json_option",
    "manifests_option",
    "override_contracts",
    "prefix_of",
    "prefix_option",
    "print_json",
    "selected",
]

import argparse
import json
import os
from pathlib import Path
from typing import Any, TypeAlias

from replication.contract_modules import (
    CONTRACTS_ENV,
    import_module,
    overriding_modules,
    prepend_path,
)
from replication.errors import ConfigurationError
from replication.manifest import (
    Manifest,
    import_manifest_contracts,
    load_manifests,
    manifest_files,
)

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns: each group's module adds its commands to it."""


def manifests_option(
    command: argparse.ArgumentParser, help: str = "manifest files or folders"
) -> None:
    """``--manifests``: the manifest files or folders a command reads (default: here)."""
    command.add_argument(
        "--manifests",
        nargs="+",
        default=["."],
        help=f"{help} (default: the current folder, searched for replication.yaml)",
    )


def prefix_option(command: argparse.ArgumentParser) -> None:
    """``--prefix``: the topology's resource name prefix."""
    command.add_argument(
        "--prefix", help="resource name prefix (default $REPLICATION_PREFIX or dev)"
    )


def json_option(
    command: argparse._ActionsContainer, help: str = "print the result as JSON"
) -> None:
    """``--json``: the command's report as one JSON document on stdout (a command or a group)."""
    command.add_argument("--json", action="store_true", help=help)


def print_json(document: Any) -> None:
    """Print ``document`` as the JSON report of ``--json``."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def prefix_of(args: argparse.Namespace) -> str:
    """The topology's prefix: --prefix, else $REPLICATION_PREFIX, else the default."""
    from replication.topology.naming import DEFAULT_PREFIX

    return str(args.prefix or os.environ.get("REPLICATION_PREFIX", DEFAULT_PREFIX))


def override_contracts(modules: str) -> None:
    """``--contracts``: these modules instead of the manifests' own, for this command.

    They are imported where a manifest is loaded, after its ``python_path``, as the
    functions do, with the current folder searched too.
    """
    os.environ[CONTRACTS_ENV] = modules
    prepend_path([Path.cwd()])


def existing_paths(paths: list[str]) -> list[Path]:
    """``paths`` as Paths; ConfigurationError naming those that do not exist."""
    found = [Path(p) for p in paths]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise ConfigurationError(f"no such file or folder: {', '.join(missing)}")
    return found


def find_manifests(paths: list[str]) -> list[Manifest]:
    """The manifests under ``paths``; ConfigurationError when there is none."""
    manifests = load_manifests(existing_paths(paths))
    if not manifests:
        raise ConfigurationError(f"no replication.yaml found under {', '.join(paths)}")
    return manifests


def selected(manifests: list[Manifest], service: str | None) -> list[Manifest]:
    """``service``'s manifest (every one when None); ConfigurationError for an unknown one."""
    if service is None:
        return manifests
    chosen = [m for m in manifests if m.service == service]
    if not chosen:
        known = ", ".join(sorted(m.service for m in manifests))
        raise ConfigurationError(f"unknown service {service!r} (known: {known})")
    return chosen


def import_contracts(paths: list[str]) -> None:
    """Register the contracts the manifests under ``paths`` name (or --contracts names)."""
    found = existing_paths(paths)
    if not manifest_files(found) and not overriding_modules():
        # Nothing would register: a check would pass on nothing and a lock would be emptied.
        raise ConfigurationError(
            f"no replication.yaml found under {', '.join(paths)}: give --manifests, or the "
            "contracts modules with --contracts"
        )
    import_manifest_contracts(found)
    for name in overriding_modules() or []:
        problem = import_module(name)
        if problem is not None:
            raise ConfigurationError(
                f"cannot import contracts module {name!r} named by --contracts or "
                f"{CONTRACTS_ENV}: {problem}"
            )
