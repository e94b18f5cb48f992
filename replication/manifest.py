"""Service manifests: what a service owns (and publishes) and what it mirrors.

One YAML file per service, for example ``examples/orders/replication.yaml``::

    service: orders
    contracts: [contracts]      # modules declaring the contracts it owns and mirrors
    database:
      url_env: ORDERS_DATABASE_URL
    mirrors:
      - entity: crm.customer
        version: 1
        table: customer_mirror
        fields: [id, name, tier]

Loading imports the contracts modules the manifest names (see
:mod:`replication.contract_modules`), checks the file against the registered
contracts and reports every problem at once, each with the file, the line and
the path in the document.
"""

from __future__ import annotations

__all__ = [
    "IDENTIFIER_RE",
    "Manifest",
    "MirrorDeclaration",
    "OwnedEntity",
    "import_manifest_contracts",
    "load_manifest",
    "load_manifests",
    "manifest_files",
    "mirrored_as_written",
]

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from replication.contract_modules import (
    CONTRACTS_ENV,
    import_module,
    overriding_modules,
    prepend_path,
    shadowed_by,
)
from replication.contracts import ContractInfo, ContractRegistry, registry
from replication.conversions import conversions
from replication.errors import ConfigurationError, ManifestError, ManifestIssue

IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
SERVICE_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")
ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
ROLE_ARN_RE = r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
"""An IAM role's ARN (with its path, if any); no wildcards: each operator is named."""
MODULE_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MANIFEST_NAME = "replication.yaml"
# Never searched for manifests: tools' and installers' folders (a virtualenv holds the
# demo's manifests, a build folder the packaged functions' copies).
_SKIPPED_FOLDERS = frozenset({"node_modules", "site-packages", "build", "dist", "__pycache__"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Database(_Strict):
    url_env: str = Field(description="name of the environment variable holding the URL")
    secret_arn_env: str | None = Field(
        default=None,
        description="name of the variable holding a Secrets Manager secret's ARN "
        "(default <SERVICE>_DATABASE_SECRET_ARN)",
    )


class OwnedEntity(_Strict):
    """An entity the service owns and publishes."""

    entity: str
    # Strict: YAML reads true/yes/on as booleans, which a lax int or bool field would take
    # as 1 (and "yes" as True); a manifest says exactly what it means.
    version: StrictInt = Field(ge=1)
    fifo: StrictBool = False
    supersede: StrictBool = Field(
        default=True,
        description="the relay publishes only the newest waiting version of a key (events "
        "carry the whole state); false publishes every version",
    )
    source: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$",
        description="module:attribute of the OwnerSource (backfill and reconcile read it)",
    )


class _Mirrored(_Strict):
    entity: str
    version: StrictInt = Field(ge=1)
    table: str
    fields: list[str] = Field(min_length=1)
    fifo: StrictBool = False
    max_receive_count: StrictInt = Field(default=5, ge=5, le=1000)
    filter_policy: dict[str, Any] | None = None


class _Document(_Strict):
    service: str
    account: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    contracts: list[Annotated[str, Field(pattern=MODULE_RE)]] = Field(default_factory=list)
    python_path: list[str] = Field(default_factory=lambda: ["."])
    migrations: str = "migrations"
    database: _Database
    owns: list[OwnedEntity] = Field(default_factory=list)
    mirrors: list[_Mirrored] = Field(default_factory=list)
    operator_roles: list[Annotated[str, Field(pattern=ROLE_ARN_RE)]] = Field(
        default_factory=list,
        description="IAM roles that may send to the service's queues and DLQs besides its "
        "topics and apply function (DLQ replay and import, backfill, repair)",
    )


@dataclass(frozen=True)
class MirrorDeclaration:
    """A consumer's read copy of an entity: which contract, which fields, which table."""

    service: str
    contract: ContractInfo
    table: str
    fields: tuple[str, ...]
    """Mirrored fields in contract order; always includes the key fields."""
    fifo: bool = False
    max_receive_count: int = 5
    """Receives before SQS moves a message to the dead-letter queue (at least 5 with Lambda)."""
    filter_policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated service manifest."""

    path: Path
    service: str
    database_url_env: str
    owns: tuple[OwnedEntity, ...]
    mirrors: tuple[MirrorDeclaration, ...]
    account: str | None = None
    """The AWS account the service lives in, when services span several accounts."""
    contracts: tuple[str, ...] = ()
    """Modules declaring the contracts the service owns and mirrors."""
    python_path: tuple[Path, ...] = ()
    """Folders put first on ``sys.path`` before those modules are imported."""
    migrations: Path | None = None
    """The service's Alembic environment (``migrations/`` beside the manifest by default)."""
    database_secret_env: str = ""
    """The variable holding the ARN of the service's database secret, when deployed."""
    operator_roles: tuple[str, ...] = ()
    """Role ARNs that may send to the service's queues besides its topics: on-call and the
    tools they run (DLQ replay and import, backfill, repair). Everyone else is denied."""

    def database_url(self) -> str:
        """The service's database URL, from the environment variable the manifest names."""
        url = os.environ.get(self.database_url_env)
        if not url:
            raise ConfigurationError(
                f"service {self.service}: environment variable {self.database_url_env} "
                "(named by database.url_env in its manifest) is not set"
            )
        return url

    def mirror(self, entity: str) -> MirrorDeclaration:
        """The declaration mirroring ``entity``; KeyError when the service does not mirror it."""
        for declaration in self.mirrors:
            if declaration.contract.entity == entity:
                return declaration
        raise KeyError(f"service {self.service} does not mirror {entity}")


def load_manifests(paths: list[Path], contracts: ContractRegistry = registry) -> list[Manifest]:
    """Load several manifests (files, or folders searched for replication.yaml)."""
    files = manifest_files(paths)
    issues: list[ManifestIssue] = []
    manifests: list[Manifest] = []
    for file in files:
        try:
            manifests.append(load_manifest(file, contracts))
        except ManifestError as exc:
            issues.extend(exc.issues)
    seen: dict[str, Path] = {}
    for manifest in manifests:
        if manifest.service in seen:
            issues.append(
                ManifestIssue(
                    str(manifest.path),
                    "service",
                    _line_of(manifest.path, ("service",)),
                    f"service {manifest.service!r} is also declared in {seen[manifest.service]}",
                )
            )
        seen.setdefault(manifest.service, manifest.path)
    if issues:
        raise ManifestError(issues)
    return manifests


def mirrored_as_written(paths: list[Path]) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """What each manifest mirrors, as ``(service, entity, version, fields)``.

    Checked for shape only, not against the registered contracts: the contract
    gate reads them to find whom a contract change reaches, and the change may
    be exactly what makes a declaration no longer resolve.
    """
    found = []
    issues: list[ManifestIssue] = []
    for file in manifest_files(paths):
        shape = _shape(file)
        if isinstance(shape, list):
            issues.extend(shape)
            continue
        _, document = shape
        for mirrored in document.mirrors:
            found.append(
                (document.service, mirrored.entity, mirrored.version, tuple(mirrored.fields))
            )
    if issues:
        raise ManifestError(issues)
    return found


def _shape(file: Path) -> tuple[dict[tuple[Any, ...], int], _Document] | list[ManifestIssue]:
    """A manifest read for shape only: its lines and document, or why it cannot be read.

    The line index comes first: it refuses YAML aliases before anything expands them.
    """
    try:
        text = file.read_text(encoding="utf-8")
        lines, problems = _line_index(str(file), text)
        if problems:
            return problems
        return lines, _Document.model_validate(yaml.safe_load(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
        return [ManifestIssue(str(file), "", None, f"cannot read: {exc}")]


def manifest_files(paths: list[Path]) -> list[Path]:
    """The manifest files of ``paths``: files as given, folders searched for replication.yaml.

    The search skips hidden folders and those of tools (virtualenvs' site-packages,
    node_modules, build, dist) and any folder packages are installed into (it holds a
    ``*.dist-info``), which may hold copies of manifests. A file named twice counts once.
    """
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = []
        for folder, children, names in os.walk(path):
            if any(c.endswith(".dist-info") for c in children):
                # pip install --target here (a Lambda package): the installed packages'
                # folders are not ours, but this folder's own manifest is.
                installed = {
                    c.split("-", 1)[0].lower() for c in children if c.endswith(".dist-info")
                }
                children[:] = [
                    c
                    for c in children
                    if c.lower() not in installed
                    and not c.endswith((".dist-info", ".libs"))
                    and c != "bin"
                ]
            children[:] = [
                c for c in children if not c.startswith(".") and c not in _SKIPPED_FOLDERS
            ]
            if MANIFEST_NAME in names:
                found.append(Path(folder) / MANIFEST_NAME)
        files.extend(sorted(found))
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def import_manifest_contracts(paths: list[Path]) -> None:
    """Import the contracts modules every manifest under ``paths`` names.

    Reads each file for shape only (like :func:`mirrored_as_written`), so a
    contract change that no longer resolves against a manifest still loads.
    """
    issues: list[ManifestIssue] = []
    for file in manifest_files(paths):
        shape = _shape(file)
        if isinstance(shape, list):
            issues.extend(shape)
            continue
        lines, document = shape
        issues.extend(_import_contracts(str(file), file, lines, document))
    if issues:
        raise ManifestError(issues)


def _line_of(path: Path, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` in a manifest that already loaded (so it reads and parses)."""
    lines, _ = _line_index(str(path), path.read_text(encoding="utf-8"))
    return lines.get(loc)


def load_manifest(path: Path, contracts: ContractRegistry = registry) -> Manifest:
    """Read and validate one manifest file; raises ManifestError listing every problem."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([ManifestIssue(name, "", None, f"cannot read: {exc}")]) from None
    lines, issues = _line_index(name, text)
    if issues:
        raise ManifestError(issues)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # a tag safe loading refuses (!!python/object...)
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([ManifestIssue(name, "", line, f"not valid: {problem}")]) from None
    if not isinstance(data, dict):
        problem = "empty file" if data is None else "the document must be a mapping"
        raise ManifestError([ManifestIssue(name, "", 1, problem)])
    try:
        document = _Document.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(
            [_issue(name, lines, tuple(e["loc"]), _message(e)) for e in exc.errors()]
        ) from None
    issues = _import_contracts(name, path, lines, document)
    if issues:
        raise ManifestError(issues)
    return _resolve(name, path, lines, document, contracts)


def _folders(path: Path, document: _Document) -> tuple[Path, ...]:
    base = path.resolve().parent
    return tuple((base / entry).resolve() for entry in document.python_path)


def _import_contracts(
    name: str, path: Path, lines: dict[tuple[Any, ...], int], document: _Document
) -> list[ManifestIssue]:
    """Import the contracts modules the manifest names (or REPLICATION_CONTRACTS names)."""
    folders = _folders(path, document)
    prepend_path(folders)
    issues: list[ManifestIssue] = []
    override = overriding_modules()
    if override is not None:
        for module in override:
            problem = import_module(module)
            if problem is not None:
                issues.append(
                    ManifestIssue(
                        name,
                        "",
                        None,
                        f"cannot import contracts module {module!r} named by {CONTRACTS_ENV} "
                        f"(or --contracts): {problem}",
                    )
                )
        return issues
    missing = [f for f in folders if not f.is_dir()]
    searched = (
        ", ".join(f"{f} (no such folder)" if f in missing else str(f) for f in folders)
        or "sys.path only"
    )
    for i, module in enumerate(document.contracts):
        other = shadowed_by(module, folders)
        if other is not None:
            loaded = sys.modules[module.split(".", 1)[0]].__file__
            issues.append(
                _issue(
                    name,
                    lines,
                    ("contracts", i),
                    f"contracts module {module!r} is already imported from {loaded}, so "
                    f"{other} cannot be: two services' contracts modules share a name; give "
                    "each a name of its own (e.g. <service>_contracts)",
                )
            )
            continue
        problem = import_module(module)
        if problem is not None:
            issues.append(
                _issue(
                    name,
                    lines,
                    ("contracts", i),
                    f"cannot import contracts module {module!r} ({problem}); searched "
                    f"python_path first: {searched}",
                )
            )
    return issues


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"])


def _resolve(
    name: str,
    path: Path,
    lines: dict[tuple[Any, ...], int],
    document: _Document,
    contracts: ContractRegistry,
) -> Manifest:
    issues: list[ManifestIssue] = []

    def report(loc: tuple[Any, ...], problem: str) -> None:
        issues.append(_issue(name, lines, loc, problem))

    service = document.service
    if not SERVICE_RE.fullmatch(service):
        report(
            ("service",),
            f"service name {service!r} must be lower case letters, digits and underscores, "
            "starting with a letter, at most 31 characters",
        )
    url_env = document.database.url_env
    if not ENV_NAME_RE.fullmatch(url_env):
        report(
            ("database", "url_env"),
            "url_env must name an environment variable (upper case, e.g. ORDERS_DATABASE_URL), "
            "never hold the URL itself: secrets do not belong in manifests",
        )
    secret_env = document.database.secret_arn_env or f"{service.upper()}_DATABASE_SECRET_ARN"
    if not ENV_NAME_RE.fullmatch(secret_env):
        report(
            ("database", "secret_arn_env"),
            "secret_arn_env must name an environment variable (upper case, e.g. "
            "ORDERS_DATABASE_SECRET_ARN)",
        )
    names_none = contracts is registry and not document.contracts and overriding_modules() is None

    def report_unknown(loc: tuple[Any, ...], problem: str) -> None:
        if names_none and problem.startswith("unknown entity"):
            problem += (
                "; this manifest names no contracts modules: list those that declare the "
                "entities it owns and mirrors in 'contracts: [module, ...]'"
            )
        report(loc, problem)

    published: dict[str, dict[int, tuple[int, ContractInfo]]] = {}
    for i, owned in enumerate(document.owns):
        info = _contract(contracts, owned.entity, owned.version, ("owns", i), report_unknown)
        if info is not None and info.owner != service:
            report(
                ("owns", i, "entity"),
                f"{owned.entity} belongs to service {info.owner!r}, not {service!r}",
            )
        elif info is not None and info.version in published.get(info.entity, {}):
            report(("owns", i), f"{info.label} is listed twice")
        elif info is not None:
            published.setdefault(info.entity, {})[info.version] = (i, info)
    for versions in published.values():
        _check_versions(service, versions, report)
    mirrors = []
    tables: dict[str, int] = {}
    for i, mirrored in enumerate(document.mirrors):
        loc = ("mirrors", i)
        if not IDENTIFIER_RE.fullmatch(mirrored.table):
            report(
                (*loc, "table"),
                f"table name {mirrored.table!r} is not a safe SQL identifier: use lower case "
                "letters, digits and underscores, starting with a letter, at most 63 characters",
            )
        elif mirrored.table in tables:
            report(
                (*loc, "table"),
                f"table {mirrored.table!r} is already used by mirrors[{tables[mirrored.table]}]",
            )
        else:
            tables[mirrored.table] = i
        info = _contract(contracts, mirrored.entity, mirrored.version, loc, report_unknown)
        if info is None:
            continue
        if info.owner == service:
            report(
                (*loc, "entity"),
                f"service {service!r} owns {info.entity}; an owner reads its own table, "
                "it does not mirror it",
            )
            continue
        declaration = _mirror(service, info, mirrored, loc, report)
        if declaration is not None:
            mirrors.append(declaration)
    if issues:
        raise ManifestError(issues)
    return Manifest(
        path,
        service,
        url_env,
        tuple(document.owns),
        tuple(mirrors),
        document.account,
        contracts=tuple(document.contracts),
        python_path=_folders(path, document),
        migrations=(path.resolve().parent / document.migrations).resolve(),
        database_secret_env=secret_env,
        operator_roles=tuple(document.operator_roles),
    )


def _check_versions(
    service: str, versions: dict[int, tuple[int, ContractInfo]], report: Any
) -> None:
    """Every version an owner publishes comes from recording the newest one."""
    index, newest = versions[max(versions)]
    newer = conversions.into(newest)
    if newer is not None:
        report(
            ("owns", index),
            f"{newest.label} is derived from {newer.source.label} by a declared conversion: "
            f"{service} must own {newer.source.label} and record its changes",
        )
        return
    written = set(conversions.published_with(newest))
    for version in sorted(set(versions) - written):
        report(
            ("owns", versions[version][0]),
            f"{service} publishes {newest.label} and v{version}, but no conversion derives "
            f"v{version} from v{newest.version}: declare one with "
            "replication.conversions.conversion (see docs/compatibility.md)",
        )
    for version in sorted(written - set(versions)):
        report(
            ("owns", index),
            f"recording {newest.label} also writes v{version} (a declared conversion), which "
            f"{service} does not list in owns: add it, or drop the conversion once no "
            f"consumer reads v{version}",
        )


def _contract(
    contracts: ContractRegistry, entity: str, version: int, loc: tuple[Any, ...], report: Any
) -> ContractInfo | None:
    info = contracts.find(entity, version)
    if info is not None:
        return info
    known = contracts.versions(entity)
    if known:
        listed = ", ".join(f"v{v}" for v in known)
        report((*loc, "version"), f"{entity} has no contract v{version} (known: {listed})")
    else:
        listed = ", ".join(sorted({c.entity for c in contracts})) or "none"
        report((*loc, "entity"), f"unknown entity {entity!r} (known entities: {listed})")
    return None


def _mirror(
    service: str, info: ContractInfo, mirrored: _Mirrored, loc: tuple[Any, ...], report: Any
) -> MirrorDeclaration | None:
    ok = True
    seen: set[str] = set()
    for j, field_name in enumerate(mirrored.fields):
        if field_name not in info.fields:
            report(
                (*loc, "fields", j),
                f"{info.label} has no field {field_name!r} (fields: {', '.join(info.fields)})",
            )
            ok = False
        elif field_name in seen:
            report((*loc, "fields", j), f"field {field_name!r} is listed twice")
            ok = False
        seen.add(field_name)
    left_out = [k for k in info.key if k not in seen]
    if left_out:
        report(
            (*loc, "fields"),
            f"the key field(s) {', '.join(left_out)} of {info.label} must be mirrored",
        )
        ok = False
    if not ok:
        return None
    ordered = tuple(name for name in info.fields if name in seen)
    return MirrorDeclaration(
        service,
        info,
        mirrored.table,
        ordered,
        fifo=mirrored.fifo,
        max_receive_count=mirrored.max_receive_count,
        filter_policy=mirrored.filter_policy,
    )


def _issue(
    name: str, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...], problem: str
) -> ManifestIssue:
    line = None
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            break
    return ManifestIssue(name, _path_text(loc), line, problem)


def _path_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_index(name: str, text: str) -> tuple[dict[tuple[Any, ...], int], list[ManifestIssue]]:
    """Map each path in the document to its 1-based line; report syntax errors and dup keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        return {}, [ManifestIssue(name, "", line, f"not valid YAML: {problem}")]
    lines: dict[tuple[Any, ...], int] = {(): 1}
    issues: list[ManifestIssue] = []
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        # An alias reuses a node already seen: walking it again would take time
        # exponential in the nesting (a few hundred bytes can stall a loader).
        if id(node) in seen_nodes:
            if any("aliases are not allowed" in i.problem for i in issues):
                return  # once per file is enough
            issues.append(
                ManifestIssue(
                    name,
                    _path_text(path),
                    node.start_mark.line + 1,
                    "YAML anchors and aliases are not allowed in a manifest: write it out",
                )
            )
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                here = (*path, key)
                if key in seen:
                    issues.append(
                        ManifestIssue(
                            name, _path_text(here), key_node.start_mark.line + 1, "duplicate key"
                        )
                    )
                seen.add(key)
                lines[here] = key_node.start_mark.line + 1
                walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines, issues
