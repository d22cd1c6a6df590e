"""Through PgBouncer in transaction mode, with its defaults (docs/deploy/pgbouncer.ini):
DATABASE_POOLER=transaction sends no startup options, and the three server-side
timeouts are still in force, set on each transaction or taken from the role; the first
connection warns, naming the settings, when the role does not have them.

PostgreSQL and PgBouncer run on 127.0.0.1 here, each on a port the OS picks; the many
hosts are tests/test_cluster.py's.
"""

import asyncio
import json
import shutil
import subprocess
import sys

import psycopg
import pytest

from tests import topology
from tests.servers import (
    FAST_SIGN_IN,
    PROJECT_ROOT,
    free_port,
    http,
    new_phone,
    server_env,
    sign_in_and_me,
    start_server,
)

pytestmark = pytest.mark.skipif(
    not shutil.which("pgbouncer"), reason="needs Debian's pgbouncer (apt-get install pgbouncer)"
)

PASSWORD = "pooler-test-password"

# What a process on the engine sees through PgBouncer, as JSON on its last line.
PROBE = """
import json, time
import django
django.setup()
from django.db import connection, transaction
from django.db import Error
seen = {}
def failure(run):
    try:
        run()
    except Error as error:
        return str(error).splitlines()[0]
    return None
def sleep(seconds):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
with transaction.atomic(), connection.cursor() as cursor:
    for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        cursor.execute(f"SHOW {name}")
        seen[name] = cursor.fetchone()[0]
def in_transaction(run):
    def inside():
        with transaction.atomic():
            run()
    return failure(inside)
seen["sleep in a transaction"] = in_transaction(lambda: sleep(1.5))
seen["sleep outside"] = failure(lambda: sleep(1.5))
def locked():
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE held")
seen["lock wait"] = in_transaction(locked)
def idle():
    sleep(0)
    time.sleep(2.5)
    sleep(0)
seen["idle in a transaction"] = in_transaction(idle)
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def bouncer():
    local = topology.Host("local", "127.0.0.1")
    with (
        topology.postgres(local, free_port(), PASSWORD) as database,
        topology.pgbouncer(local, free_port(), database, PASSWORD) as running,
    ):
        running.database = database
        yield running


def url(bouncer) -> str:
    return f"postgres://app:{PASSWORD}@127.0.0.1:{bouncer.port}/app"


def probe(bouncer, **env) -> tuple[dict, str]:
    """Run PROBE with DATABASE_TIMEOUT=1 through PgBouncer while another session holds
    a lock on the table `held`; what it saw, and its log."""
    with psycopg.connect(bouncer.database.admin_url(), autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS held (id int)")
        admin.execute("GRANT ALL ON held TO app")
        with admin.transaction():
            admin.execute("LOCK TABLE held")
            done = subprocess.run(
                [sys.executable, "-c", PROBE],
                cwd=PROJECT_ROOT,
                env=server_env({"DATABASE_URL": url(bouncer), "DATABASE_TIMEOUT": "1", **env}),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def set_role_timeouts(bouncer, *timeouts: str) -> None:
    """The three timeouts on the role `app` (or reset), then PgBouncer restarted: a
    role's settings reach only sessions that start after them."""
    names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
    with psycopg.connect(bouncer.database.admin_url(), autocommit=True) as admin:
        for name, value in zip(names, timeouts or (None,) * 3, strict=True):
            change = f"SET {name} = '{value}'" if value else f"RESET {name}"
            admin.execute(f"ALTER ROLE app {change}")
    bouncer.restart()


def test_without_database_pooler_pgbouncer_refuses_the_timeouts_startup_options(bouncer):
    connect = (
        "import django; django.setup(); from django.db import connection;"
        " connection.ensure_connection()"
    )
    done = subprocess.run(
        [sys.executable, "-c", connect],
        cwd=PROJECT_ROOT,
        env=server_env({"DATABASE_URL": url(bouncer), "DATABASE_POOLER": None}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "unsupported startup parameter: options" in done.stderr


def test_each_transaction_carries_the_timeouts_and_the_role_without_them_is_named(bouncer):
    set_role_timeouts(bouncer)
    seen, log = probe(bouncer, DATABASE_POOLER="transaction")
    assert seen["statement_timeout"] == "1s"
    assert seen["lock_timeout"] == "500ms"
    assert seen["idle_in_transaction_session_timeout"] == "2s"
    assert "statement timeout" in seen["sleep in a transaction"]
    assert "lock timeout" in seen["lock wait"]
    assert seen["idle in a transaction"]  # the server ended the idle session
    assert seen["sleep outside"] is None  # what the WARNING says: no timeout outside
    warnings = [line for line in log.splitlines() if "DATABASE_POOLER=transaction" in line]
    assert len(warnings) == 1, log
    assert "statement_timeout=0ms" in warnings[0] and "ALTER ROLE" in warnings[0]


def test_with_the_timeouts_on_the_role_they_hold_everywhere_and_nothing_is_said(bouncer):
    set_role_timeouts(bouncer, "1s", "500ms", "2s")
    try:
        seen, log = probe(bouncer, DATABASE_POOLER="transaction")
    finally:
        set_role_timeouts(bouncer)
    assert "statement timeout" in seen["sleep in a transaction"]
    assert "statement timeout" in seen["sleep outside"]
    assert "lock timeout" in seen["lock wait"]
    assert seen["idle in a transaction"]
    assert "DATABASE_POOLER" not in log


def test_a_sign_in_through_pgbouncer_in_transaction_mode(bouncer):
    env = {**FAST_SIGN_IN, "DATABASE_URL": url(bouncer), "DATABASE_POOLER": "transaction"}
    migrate = [sys.executable, "manage.py", "migrate", "--noinput"]
    done = subprocess.run(
        migrate,
        cwd=PROJECT_ROOT,
        env=server_env({**env, "DATABASE_TIMEOUT": "0"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with start_server(env, workers=1) as server:

        async def scenario():
            assert (await http(server.url, "GET", "/readyz")).status == 200
            me = await sign_in_and_me(server.url, phone := new_phone())
            assert me["phone"] == phone

        asyncio.run(scenario())
    errors = [line for line in server.log.splitlines() if '"ERROR"' in line]
    assert errors == []
