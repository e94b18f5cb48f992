"""``replication init``: a service's replication files, written into its own repository.

The scaffold of a service is its manifest (``replication.yaml``), a contracts
module for what it owns (a starter contract per entity, to edit), and its
Alembic environment (``migrations/``, copied from the package as ``alembic
init`` does, with ``versions/<service>/`` for its revisions and an
``alembic.ini`` for plain Alembic). Nothing existing is ever overwritten: when
any target exists, nothing is written.
"""

from __future__ import annotations

__all__ = ["Scaffold", "plan_migrations", "plan_service", "remove_scaffold", "write_scaffold"]

import contextlib
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path

from replication.contract_modules import import_module, prepend_path
from replication.contracts import ContractInfo, registry
from replication.errors import ConfigurationError
from replication.manifest import ENV_NAME_RE, SERVICE_RE

_ENTITY_RE = re.compile(r"([a-z][a-z0-9_]{0,30})\.([a-z][a-z0-9_]{0,30})(?::([1-9][0-9]*))?")
_MIGRATION_FILES = ("env.py", "script.py.mako", "README.md")
# replication.migrations.TEMPLATE, without importing Alembic (the cli extra) to read it.
TEMPLATE = Path(__file__).resolve().parent / "migrations" / "template"


@dataclass
class Scaffold:
    """The files of a new service, relative to its folder, and what to run next."""

    service: str
    files: dict[Path, str] = field(default_factory=dict)
    folders: list[Path] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


# Names the starter module already binds: a contract class must not hide them.
_TAKEN = frozenset({"Contract", "Field", "annotations"})


def _class_name(name: str) -> str:
    """``line_item`` -> ``LineItem``; names Python or the module reserve get ``Entity``."""
    base = "".join(part.capitalize() for part in name.split("_") if part)
    if keyword.iskeyword(base) or base in _TAKEN or not base.isidentifier():
        return f"{base}Entity"
    return base


def _contracts_module(service: str, owned: list[tuple[str, str]]) -> str:
    classes = "\n\n".join(
        f'''class {_class_name(name)}(Contract, entity="{service}.{name}", version=1, key="id"):
    """A {name.replace("_", " ")}, as {service} publishes it (a starter: edit its fields)."""

    id: int
    name: str = Field(min_length=1, max_length=200)
'''
        for _, name in owned
    )
    return f'''"""Contracts {service} owns and publishes (written by replication init).

A contract is the pydantic model of an entity at one major version. Change it
compatibly (add optional fields) or publish version 2 beside it; `replication
contracts check` says which. See the docs on contracts and compatibility.
"""

from __future__ import annotations

from pydantic import Field

from replication import Contract


{classes}'''


def _mirrored(entity: str, version: int | None) -> ContractInfo:
    versions = registry.versions(entity)
    if not versions:
        known = ", ".join(sorted({c.entity for c in registry})) or "none"
        raise ConfigurationError(
            f"no contract for {entity} is registered (known entities: {known}): name the "
            "module that declares it with --contracts, and where it is with --python-path"
        )
    chosen = version or max(versions)
    info = registry.find(entity, chosen)
    if info is None:
        listed = ", ".join(f"v{v}" for v in versions)
        raise ConfigurationError(f"{entity} has no contract v{chosen} (known: {listed})")
    return info


def _mirror_block(info: ContractInfo) -> str:
    fields = [name for name in info.fields if name in info.key or not info.fields[name].pii]
    left_out = [name for name in info.fields if name not in fields]
    note = (
        f"  # pii left out: {', '.join(left_out)} (add what this service needs)" if left_out else ""
    )
    return (
        f"  - entity: {info.entity}\n"
        f"    version: {info.version}\n"
        f"    table: {info.entity.split('.', 1)[1]}_mirror\n"
        f"    fields: [{', '.join(fields)}]{note}\n"
    )


def plan_service(
    folder: Path,
    service: str,
    *,
    owns: list[str],
    mirrors: list[str],
    contracts: list[str],
    python_path: list[str],
    url_env: str | None = None,
) -> Scaffold:
    """The scaffold of ``service`` in ``folder``; ConfigurationError on bad input."""
    if not SERVICE_RE.fullmatch(service):
        raise ConfigurationError(
            f"service name {service!r} must be lower case letters, digits and underscores, "
            "starting with a letter, at most 31 characters"
        )
    url_env = url_env or f"{service.upper()}_DATABASE_URL"
    if not ENV_NAME_RE.fullmatch(url_env):
        raise ConfigurationError(f"{url_env!r} is not an environment variable name")
    owned: list[tuple[str, str]] = []
    for entity in owns:
        match = _ENTITY_RE.fullmatch(entity)
        if match is None or match.group(3) is not None:
            raise ConfigurationError(f"--owns {entity!r}: an entity is '<service>.<name>'")
        if match.group(1) != service:
            raise ConfigurationError(
                f"--owns {entity}: an entity is named after its owner, so {service} owns "
                f"'{service}.<name>' entities"
            )
        if any(entity == e for e, _ in owned):
            raise ConfigurationError(f"--owns {entity} is given twice")
        owned.append((entity, match.group(2)))
    classes: dict[str, str] = {}
    for entity, name in owned:
        other = classes.setdefault(_class_name(name), entity)
        if other != entity:
            raise ConfigurationError(
                f"{other} and {entity} would both be class {_class_name(name)}: entity names "
                "that differ only in underscores are too alike; rename one"
            )
    prepend_path((folder / p).resolve() for p in python_path)
    for module in contracts:
        problem = import_module(module)
        if problem is not None:
            raise ConfigurationError(f"cannot import contracts module {module!r}: {problem}")
    blocks = []
    for entity in mirrors:
        match = _ENTITY_RE.fullmatch(entity)
        if match is None:
            raise ConfigurationError(
                f"--mirrors {entity!r}: an entity is '<owner>.<name>', optionally ':<version>'"
            )
        if match.group(1) == service:
            raise ConfigurationError(f"{service} cannot mirror its own entity {entity}")
        version = int(match.group(3)) if match.group(3) else None
        blocks.append(_mirror_block(_mirrored(f"{match.group(1)}.{match.group(2)}", version)))
    if not owned and not blocks:
        raise ConfigurationError("say what the service does: --owns ENTITY and/or --mirrors ENTITY")

    scaffold = Scaffold(service)
    modules = list(contracts)
    if owned:
        own_module = f"{service}_contracts"
        source = _contracts_module(service, owned)
        compile(source, f"{own_module}.py", "exec")  # a generated module always parses
        scaffold.files[Path(f"{own_module}.py")] = source
        modules.insert(0, own_module)
    lines = [
        f"# {service}'s replication manifest: what it owns (and publishes) and what it",
        "# mirrors. `replication manifests validate` checks it; see docs/manifests.md.",
        f"service: {service}",
        f"contracts: [{', '.join(modules)}]",
    ]
    if python_path:
        lines.append(f"python_path: [{', '.join(['.', *python_path])}]")
    lines += ["database:", f"  url_env: {url_env}"]
    if owned:
        lines.append("owns:")
        lines += [f"  - entity: {entity}\n    version: 1" for entity, _ in owned]
    if blocks:
        lines.append("mirrors:")
        lines += [block.rstrip("\n") for block in blocks]
    scaffold.files[Path("replication.yaml")] = "\n".join(lines) + "\n"
    _add_migrations(scaffold, service)
    scaffold.next_steps = [
        f"export {url_env}=postgresql://USER@HOST:5432/DATABASE   # or mysql://, sqlite:///",
        "replication manifests validate",
        f'replication migrations generate --service {service} -m "replication tables"',
        f"replication migrations upgrade --service {service}",
        f"replication migrations check --service {service}",
    ]
    if owned:
        scaffold.next_steps.append(f"replication relay --service {service}")
    if blocks:
        scaffold.next_steps.append(f"replication consume --service {service}")
    return scaffold


def _add_migrations(scaffold: Scaffold, service: str) -> None:
    for name in _MIGRATION_FILES:
        scaffold.files[Path("migrations") / name] = (TEMPLATE / name).read_text(encoding="utf-8")
    scaffold.files[Path("alembic.ini")] = (
        f"# Plain Alembic for {service}: alembic -x manifest=replication.yaml upgrade head\n"
        "# (`replication migrations ...` needs no configuration file).\n"
        "[alembic]\n"
        "script_location = %(here)s/migrations\n"
        f"version_locations = %(here)s/migrations/versions/{service}\n"
    )
    scaffold.folders.append(Path("migrations") / "versions" / service)


def plan_migrations(folder: Path, service: str) -> Scaffold:
    """Only the Alembic environment, for a service whose manifest already exists."""
    if not (folder / "replication.yaml").is_file():
        raise ConfigurationError(
            f"no replication.yaml in {folder}: --migrations-only adds the Alembic "
            "environment beside an existing manifest"
        )
    scaffold = Scaffold(service)
    _add_migrations(scaffold, service)
    scaffold.next_steps = [f'replication migrations generate --service {service} -m "..."']
    return scaffold


def remove_scaffold(created: list[Path]) -> None:
    """Take back what ``write_scaffold`` created (files, then the folders it made)."""
    for path in reversed(created):
        if path.is_dir():
            with contextlib.suppress(OSError):  # not empty: something else is in it
                path.rmdir()
        else:
            path.unlink(missing_ok=True)


def _make_folder(folder: Path, created: list[Path]) -> None:
    """``folder`` and its missing parents, each recorded in ``created`` as it is made."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def write_scaffold(folder: Path, scaffold: Scaffold) -> list[Path]:
    """Write ``scaffold`` into ``folder``; refuses (writing nothing) when a file exists.

    Returns every file and folder it created, in order, for :func:`remove_scaffold`.
    """
    existing = [str(folder / p) for p in scaffold.files if (folder / p).exists()]
    if existing:
        raise ConfigurationError(
            f"not overwriting {', '.join(existing)}: replication init writes only new files "
            "(move them away, or init in another folder)"
        )
    created: list[Path] = []
    for relative, text in scaffold.files.items():
        target = folder / relative
        _make_folder(target.parent, created)
        with target.open("x", encoding="utf-8") as out:  # "x": never replace a file
            out.write(text)
        created.append(target)
    for relative in scaffold.folders:
        _make_folder(folder / relative, created)
    return created
