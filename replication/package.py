"""``replication package``: the zip a service's Lambda function runs from.

An artifact holds, at its root, the library and its dependencies as binary
wheels for the function's architecture and Python version (``pip install
--platform ... --only-binary=:all: --target``), the database driver of the
service's dialect, and in ``<service>/`` the service's manifest (its
``python_path`` set to that folder), the contracts modules it names, and for
an apply function the pre-rendered statements, so the function never imports
SQLAlchemy on its hot path. Given a CA bundle (``--database-ca-bundle``, such
as RDS's ``global-bundle.pem``), it ships at the root as
``database-ca-bundle.pem``, where the template's ``DatabaseCaBundle`` looks by
default. Lambda's limits are checked: an artifact whose unzipped size exceeds
250 MB is refused.
"""

from __future__ import annotations

__all__ = [
    "ARCHITECTURES",
    "PYTHON_VERSIONS",
    "Artifact",
    "PackageSettings",
    "build_artifacts",
    "requirements_for",
]

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from replication.consumer.wiring import STATEMENTS_FILE
from replication.dbtls import PACKAGED_CA_BUNDLE, ca_bundle_file
from replication.dialects import dialect_named, registered
from replication.errors import ConfigurationError
from replication.manifest import Manifest

ARCHITECTURES = {
    # Lambda's architecture: the manylinux platforms whose wheels run on Amazon Linux 2023.
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
}
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
UNZIPPED_LIMIT = 250 * 1024 * 1024
"""Lambda: the function and its layers, unzipped."""
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
"""Lambda: a zip uploaded in the API call itself; larger ones go through S3."""
# Never shipped to a function: the demo (and its example lines), caches.
_LEFT_OUT = ("replication/demo", "__pycache__")


@dataclass(frozen=True)
class PackageSettings:
    """What to build for."""

    architecture: str = "x86_64"
    python: str = "3.12"
    dialect: str = "postgresql"
    database_ca_bundle: Path | None = None
    """A PEM file of CA certificates shipped as ``database-ca-bundle.pem`` (checked here)."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigurationError(
                f"architecture {self.architecture!r}: Lambda runs {', '.join(ARCHITECTURES)}"
            )
        if self.python not in PYTHON_VERSIONS:
            raise ConfigurationError(
                f"Python {self.python}: the Lambda runtimes supported are "
                + ", ".join(f"python{v}" for v in PYTHON_VERSIONS)
            )
        packaged = [d.name for d in registered() if d.package_extra]
        if self.dialect not in packaged:
            raise ConfigurationError(
                f"dialect {self.dialect!r}: Lambda functions reach {' or '.join(packaged)}"
            )
        if self.database_ca_bundle is not None:
            ca_bundle_file(str(self.database_ca_bundle), named_by="--database-ca-bundle")


@dataclass(frozen=True)
class Artifact:
    """One function's zip and its sizes."""

    function: str
    path: Path
    zipped: int
    unzipped: int

    @property
    def needs_s3(self) -> bool:
        """Too large to upload in the API call; fine through S3 (as the template does)."""
        return self.zipped > DIRECT_UPLOAD_LIMIT


def requirements_for(dialect: str) -> list[str]:
    """The library's own requirements, plus the driver of ``dialect``, as pip reads them."""
    database = dialect_named(dialect)
    found = []
    for requirement in importlib.metadata.requires("replication") or []:
        spec, _, marker = requirement.partition(";")
        marker = marker.replace(" ", "").replace("'", '"')
        if not marker or marker == f'extra=="{database.package_extra}"':
            found.append(spec.strip())
    # Drivers of the extra a function never opens (psycopg 3: only owners' code uses it).
    return [r for r in found if not any(r.startswith(u) for u in database.unpackaged)]


def _install(target: Path, settings: PackageSettings, requirements: list[str]) -> None:
    platforms = [a for p in ARCHITECTURES[settings.architecture] for a in ("--platform", p)]
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        # No bytecode: it would be compiled by this interpreter, not the function's.
        "--no-compile",
        *("--target", str(target), "--only-binary=:all:", "--implementation", "cp"),
        *("--python-version", settings.python, *platforms, *requirements),
    ]
    # The command is this interpreter's pip with arguments built here, never a shell.
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise ConfigurationError(
            "pip could not install the function's dependencies for "
            f"{settings.architecture} Python {settings.python}:\n{done.stderr.strip()[-3000:]}"
        )


def _copy_library(target: Path) -> None:
    """The running library's own files (it is pure Python), without what functions never use."""
    source = Path(__file__).resolve().parent
    for path in source.rglob("*"):
        relative = path.relative_to(source.parent)
        text = relative.as_posix()
        if path.is_dir() or any(part in text for part in _LEFT_OUT) or path.suffix == ".pyc":
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _module_files(module_name: str) -> tuple[Path, bool]:
    """Where an imported contracts module lives: its file, or its package's folder."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module is None or file is None:
        raise ConfigurationError(f"contracts module {module_name!r} is not imported from a file")
    path = Path(file)
    if path.name == "__init__.py":
        return path.parent, True
    return path, False


def _service_folder(folder: Path, manifest: Manifest, statements: str | None, dialect: str) -> None:
    """``<service>/``: the manifest pointing at this folder, the contracts, the statements."""
    document = yaml.safe_load(manifest.path.read_text(encoding="utf-8"))
    document["python_path"] = ["."]
    document.pop("migrations", None)
    folder.mkdir(parents=True)
    (folder / "replication.yaml").write_text(
        "# Packaged by replication package from "
        + manifest.path.name
        + "\n"
        + yaml.safe_dump(document, sort_keys=False),
        encoding="utf-8",
    )
    for top in dict.fromkeys(name.split(".", 1)[0] for name in manifest.contracts):
        path, is_package = _module_files(top)
        if is_package:
            shutil.copytree(path, folder / path.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, folder / path.name)
    if statements is not None:
        (folder / STATEMENTS_FILE.format(dialect=dialect)).write_text(statements, encoding="utf-8")


def _zip(folder: Path, out: Path) -> tuple[int, int]:
    unzipped = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                unzipped += path.stat().st_size
                info = zipfile.ZipInfo.from_file(path, path.relative_to(folder).as_posix())
                # Lambda runs as another user: files must be world-readable, scripts executable.
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return out.stat().st_size, unzipped


def build_artifacts(manifest: Manifest, settings: PackageSettings, out: Path) -> list[Artifact]:
    """The zips of ``manifest``'s functions (relay if it owns, apply if it mirrors) in ``out``."""
    from replication.consumer.wiring import dump_statements

    functions = [
        name for name, has in (("relay", manifest.owns), ("apply", manifest.mirrors)) if has
    ]
    if not functions:
        raise ConfigurationError(f"service {manifest.service} owns and mirrors nothing")
    out.mkdir(parents=True, exist_ok=True)
    artifacts = []
    with tempfile.TemporaryDirectory(prefix="replication-package-") as tmp:
        dependencies = Path(tmp) / "dependencies"
        _install(dependencies, settings, requirements_for(settings.dialect))
        _copy_library(dependencies)
        for function in functions:
            root = Path(tmp) / function
            shutil.copytree(dependencies, root, symlinks=False)
            statements = (
                dump_statements(manifest, settings.dialect) if function == "apply" else None
            )
            _service_folder(root / manifest.service, manifest, statements, settings.dialect)
            if settings.database_ca_bundle is not None:
                shutil.copyfile(settings.database_ca_bundle, root / PACKAGED_CA_BUNDLE)
            name = f"{manifest.service}-{function}-{settings.architecture}-py{settings.python}.zip"
            zipped, unzipped = _zip(root, out / name)
            artifact = Artifact(function, out / name, zipped, unzipped)
            if unzipped > UNZIPPED_LIMIT:
                (out / name).unlink()
                raise ConfigurationError(
                    f"{name} would be {unzipped / 2**20:.1f} MB unzipped; Lambda allows "
                    f"{UNZIPPED_LIMIT // 2**20} MB (function and layers)"
                )
            artifacts.append(artifact)
    return artifacts
