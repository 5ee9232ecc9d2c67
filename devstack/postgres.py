"""A throw-away or persistent local PostgreSQL cluster driven by initdb / pg_ctl, and the bootstrap
that creates the ten service databases and their login roles on any server (local or given by URL)."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from core.registry import SERVICES
from core.settings import Settings
from devstack.errors import SetupError
from devstack.ports import require_free

SUPERUSER = "postgres"


def find_pg_bindir(*, install: bool = True) -> Path:
    """Directory holding initdb/pg_ctl/postgres; installs Debian's server package when missing."""
    for candidate in _bindir_candidates():
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        print("PostgreSQL server binaries not found; installing Debian's postgresql package ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SetupError(
                    f"could not install PostgreSQL ({' '.join(cmd)} failed):\n{done.stderr[-800:]}",
                    "install a PostgreSQL server (15 or newer) yourself, or point POSTGRES_ADMIN_URL "
                    "at an existing server",
                )
        return find_pg_bindir(install=False)
    raise SetupError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found and cannot be installed here",
        "install them (Debian/Ubuntu: `sudo apt-get install postgresql`), or set POSTGRES_ADMIN_URL "
        "to a superuser URL of an existing server",
    )


def _bindir_candidates() -> list[Path]:
    found: list[Path] = []
    if env := os.environ.get("PG_BINDIR"):
        found.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if initdb := shutil.which("initdb"):
        found.append(Path(initdb).resolve().parent)
    return found


@dataclass
class LocalCluster:
    """A cluster in ``data_dir`` listening on 127.0.0.1:``port`` with its socket inside ``data_dir``.

    The superuser connects over the Unix socket without a password; service roles connect over TCP
    with a password (scram-sha-256), exactly as they would against a remote server.
    """

    data_dir: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    # -- lifecycle ------------------------------------------------------------------------------
    def ensure_initialized(self) -> bool:
        """Create the cluster once. Returns True when it was created now."""
        if (self.pgdata / "PG_VERSION").exists():
            return False
        bindir = find_pg_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._hand_to_service_user(self.data_dir)
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            what="initdb",
        )
        return True

    def start(self) -> None:
        require_free(self.port, "PostgreSQL", "POSTGRES_PORT")
        bindir = find_pg_bindir()
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c listen_addresses=127.0.0.1",
                "-c max_connections=300",
                "-c shared_buffers=256MB",
                "-c fsync=on",
                "-c synchronous_commit=off",
                "-c log_min_duration_statement=1000",
            ]
        )
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            what="pg_ctl start",
        )

    def stop(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        bindir = find_pg_bindir(install=False)
        self._run(
            [str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"], what="pg_ctl stop"
        )

    def is_running(self) -> bool:
        bindir = find_pg_bindir(install=False)
        done = subprocess.run(
            self._as_service_user([str(bindir / "pg_ctl"), "-D", str(self.pgdata), "status"]),
            capture_output=True,
        )
        return done.returncode == 0

    # -- running as the postgres OS user when we are root (initdb refuses root) -----------------
    def _as_service_user(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", _service_os_user(), "--", *cmd]

    def _hand_to_service_user(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam(_service_os_user())
        for p in [path, *path.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)
        path.chmod(0o700)
        probe = subprocess.run(["runuser", "-u", user.pw_name, "--", "test", "-w", str(path)])
        if probe.returncode != 0:
            raise SetupError(
                f"the '{user.pw_name}' user cannot reach {path} (a parent folder is not traversable)",
                "clone the project under a world-traversable folder, or set DATA_DIR to one",
            )

    def _run(self, cmd: list[str], *, what: str) -> None:
        done = subprocess.run(self._as_service_user(cmd), capture_output=True, text=True)
        if done.returncode != 0:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise SetupError(f"{what} failed:\n{done.stdout}{done.stderr}{log_tail}".rstrip())


def _service_os_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


# -- bootstrap: roles and databases ------------------------------------------------------------
async def bootstrap_databases(admin_dsn: str, settings: Settings) -> None:
    """Create each service's login role and its database (owned by that role, CONNECT revoked from
    PUBLIC), idempotently. Role names, passwords and database names come from the service URLs."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for info in SERVICES:
            url = make_url(settings.database_url(info.name))
            role, password, database = url.username, url.password, url.database
            if not (role and password and database):
                raise SetupError(
                    f"{info.name.upper()}_DATABASE_URL must name a user, a password and a database"
                )
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            quoted_pw = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(
                f'{verb} ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {quoted_pw}'
            )
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await conn.execute(
                    f'CREATE DATABASE "{database}" OWNER "{role}" ENCODING \'UTF8\' TEMPLATE template0'
                )
            await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{role}"')
    finally:
        await conn.close()


def main_bootstrap(admin_dsn: str, settings: Settings) -> None:  # pragma: no cover - CLI glue
    try:
        asyncio.run(bootstrap_databases(admin_dsn, settings))
    except SetupError as exc:
        sys.exit(str(exc))
