"""A real PostgreSQL server for the instance tests: a throwaway cluster on 127.0.0.1."""

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

# Debian and Ubuntu install the server binaries here, off the PATH (`apt-get install postgresql`).
_DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# PostgreSQL refuses to run as root; the Debian package creates this account.
_SERVER_ACCOUNT = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USER": self.user, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_DB": self.db_name}

    def connect(self, db_name: str | None = None) -> "psycopg2.extensions.connection":
        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=db_name or self.db_name)


def _server_bin() -> Path | None:
    """The folder with initdb and pg_ctl: on the PATH, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    installed = sorted(glob.glob(_DEBIAN_BIN_GLOB), key=lambda p: int(Path(p).parent.name))
    return Path(installed[-1]) if installed else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """initdb a cluster in a temporary folder, start it on a free loopback port (password
    authentication, a `dagster` database), stop and delete it after the session."""
    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on the PATH or under "
                    f"{_DEBIAN_BIN_GLOB}: `apt-get install postgresql` (.ci/run does)")
    as_server = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(_SERVER_ACCOUNT)
        except KeyError:
            pytest.skip(f"running as root and there is no {_SERVER_ACCOUNT!r} account to run "
                        "PostgreSQL as (it refuses root)")
        as_server = ["runuser", "-u", _SERVER_ACCOUNT, "--"]
    # Not under pytest's tmp_path: that is private to the test user, and the server account
    # must reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="cpo-postgres-"))
    server = PostgresServer("127.0.0.1", _free_port(), "dagster", secrets.token_hex(12), "dagster")
    password_file = root / "password"
    password_file.write_text(server.password)
    if as_server:
        shutil.chown(root, account.pw_uid, account.pw_gid)
        shutil.chown(password_file, account.pw_uid, account.pw_gid)
    data, log = root / "data", root / "server.log"

    def run(*command: str) -> None:
        done = subprocess.run([*as_server, *command], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}"
                               f"{done.stderr}{server_log}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={password_file}",
        "--auth=scram-sha-256", "-E", "UTF8", "--locale=C")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-h {server.host} -p {server.port} -k {root}", "start")
    try:
        connection = server.connect("postgres")
        connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
        connection.cursor().execute(f"CREATE DATABASE {server.db_name}")
        connection.close()
        yield server
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
