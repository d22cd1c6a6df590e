"""The database an operator names, or does not: PostgreSQL only, and with DEBUG off the
service refuses to start without DATABASE_URL instead of running on the embedded one."""

import os
import subprocess
import sys

import pytest

from tests.servers import PROJECT_ROOT, free_port, server_command


def environment(**env):
    """The process environment with production settings and no database but `env`'s."""
    kept = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
    return {**kept, "SECRET_KEY": "x" * 50, "SMS_BACKEND": "simulated", **env}


def run(command, **env):
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_debug_off_check_and_migrate_refuse_without_database_url():
    for command in ("check", "migrate"):
        done = run([sys.executable, "manage.py", command])
        assert done.returncode != 0
        assert "DATABASE_URL is required when DEBUG is off" in done.stderr


def test_with_debug_off_the_server_refuses_to_start_without_database_url():
    done = run(server_command(free_port(), 1))
    assert done.returncode != 0
    assert "DATABASE_URL is required when DEBUG is off" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("url", "named"),
    [("sqlite:///db.sqlite3", "'sqlite'"), ("mysql://app@db/app", "'mysql'")],
)
def test_a_database_that_is_not_postgresql_is_refused_naming_it(url, named):
    done = run([sys.executable, "manage.py", "check"], DATABASE_URL=url)
    assert done.returncode != 0
    assert f"DATABASE_URL: {named} is not PostgreSQL" in done.stderr


def test_a_database_pooler_the_service_does_not_know_is_refused_naming_it():
    done = run(
        [sys.executable, "manage.py", "check"],
        DATABASE_URL="postgres://app@127.0.0.1:6432/app",
        DATABASE_POOLER="session",
    )
    assert done.returncode != 0
    assert "DATABASE_POOLER: 'session' is not `transaction` or empty" in done.stderr
