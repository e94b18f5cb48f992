"""Throwaway PostgreSQL and MariaDB servers that speak TLS, with a test CA of their own.

The project's test servers have no TLS. To show ``REPLICATION_DATABASE_TLS=verify``
succeed and fail for the right reasons, :func:`certificates` makes a CA, a
server certificate it signs for ``localhost`` (not for ``127.0.0.1``, so a host
name check can fail on its own), and a second, unrelated CA; :func:`postgresql`
and :func:`mariadb` start a server of the machine's binaries on a free port in
a temporary folder with that certificate, and stop it after. As root, the
servers run as the ``postgres`` and ``mysql`` users (neither runs as root).
:func:`missing` says what is lacking when they cannot be started.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_EXTENSIONS = """\
subjectAltName=DNS:localhost
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


@dataclass(frozen=True)
class Certificates:
    """The test CA, the server's certificate it signed, and a CA that signed nothing."""

    ca: Path
    other_ca: Path
    server_certificate: Path
    server_key: Path


def _tool(name: str, *patterns: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(c for p in patterns for c in glob.glob(p))
    return candidates[-1] if candidates else None


def _initdb() -> str | None:
    return _tool("initdb", "/usr/lib/postgresql/*/bin/initdb")


def _pg_ctl() -> str | None:
    return _tool("pg_ctl", "/usr/lib/postgresql/*/bin/pg_ctl")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def missing(what: str) -> str | None:
    """Why ``what`` (``certificates``, ``postgresql``, ``mariadb``) cannot be made here, or None."""
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    if what == "certificates":
        return None
    if what == "postgresql":
        if _initdb() is None or _pg_ctl() is None:
            return "PostgreSQL's initdb and pg_ctl are not installed"
        if os.geteuid() == 0 and not (_user_exists("postgres") and shutil.which("runuser")):
            return "running as root without a postgres user (and runuser) to run PostgreSQL"
        return None
    if (
        shutil.which("mariadb-install-db") is None
        or _tool("mariadbd", "/usr/sbin/mariadbd") is None
    ):
        return "MariaDB's mariadb-install-db and mariadbd are not installed"
    if os.geteuid() == 0 and not _user_exists("mysql"):
        return "running as root without a mysql user to run MariaDB"
    return None


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for ``localhost`` it signs, and another CA, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _run(
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.pem")),
            *("-subj", f"/CN=replication test {name}"),
        )
    _run(
        *("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"),
        *("-keyout", str(folder / "server.key"), "-out", str(folder / "server.csr")),
    )
    (folder / "server.ext").write_text(SERVER_EXTENSIONS)
    _run(
        *("openssl", "x509", "-req", "-in", str(folder / "server.csr"), "-days", "2"),
        *("-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"), "-CAcreateserial"),
        *("-out", str(folder / "server.pem"), "-extfile", str(folder / "server.ext")),
    )
    return Certificates(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server_certificate=folder / "server.pem",
        server_key=folder / "server.key",
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _give(folder: Path, user: str) -> None:
    """``folder`` and all in it to ``user``, when running as root."""
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(user)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


def _own_folder(prefix: str) -> Path:
    # Not under pytest's tmp_path: its parents are closed to the server's user.
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextmanager
def postgresql(certs: Certificates) -> Iterator[int]:
    """A PostgreSQL server with TLS on a free port (user ``postgres``, trust); its port."""
    initdb, pg_ctl = _initdb(), _pg_ctl()
    assert initdb
    assert pg_ctl
    folder = _own_folder("replication-tls-postgresql-")
    key = folder / "server.key"
    shutil.copyfile(certs.server_key, key)
    shutil.copyfile(certs.server_certificate, folder / "server.pem")
    key.chmod(0o600)  # PostgreSQL refuses a key others may read
    _give(folder, "postgres")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = _free_port()
    data = folder / "data"
    try:
        _run(*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = " ".join(
            [
                f"-p {port}",
                f"-k {folder}",
                "-c listen_addresses=localhost",
                "-c ssl=on",
                f"-c ssl_cert_file={folder / 'server.pem'}",
                f"-c ssl_key_file={key}",
                "-c fsync=off",
            ]
        )
        log = folder / "server.log"
        _run(*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield port
        finally:
            _run(*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mariadb(certs: Certificates) -> Iterator[int]:
    """A MariaDB server with TLS on a free port (grant tables skipped: any user); its port."""
    mariadbd = _tool("mariadbd", "/usr/sbin/mariadbd")
    assert mariadbd
    folder = _own_folder("replication-tls-mariadb-")
    for source, name in (
        (certs.server_key, "server.key"),
        (certs.server_certificate, "server.pem"),
        (certs.ca, "ca.pem"),
    ):
        shutil.copyfile(source, folder / name)
    (folder / "server.key").chmod(0o600)
    _give(folder, "mysql")
    port = _free_port()
    data = folder / "data"
    user = ["--user=mysql"] if os.geteuid() == 0 else []  # mariadbd drops root itself
    try:
        _run(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            *user,
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        )
        _give(folder, "mysql")
        server = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={data}",
                *user,
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={folder / 'mysqld.sock'}",
                f"--pid-file={folder / 'mysqld.pid'}",
                f"--log-error={folder / 'server.log'}",
                "--skip-grant-tables",
                "--skip-networking=0",
                f"--ssl-ca={folder / 'ca.pem'}",
                f"--ssl-cert={folder / 'server.pem'}",
                f"--ssl-key={folder / 'server.key'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log = folder / "server.log"
                        text = log.read_text() if log.exists() else ""
                        raise RuntimeError(f"MariaDB did not start:\n{text[-3000:]}") from None
                    time.sleep(0.2)
            yield port
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
