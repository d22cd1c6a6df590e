"""The SQL source files of the rules that must be atomic, and their installer.

The `.sql` files here are the rules' only text (windows.sql: sliding-window limits;
deliveries.sql: delivery statuses and the SMS pumping rule; sign_in.sql: a send, a
code check, a sign-in, with the lock order; sessions.sql: ending sessions;
referrals.sql: an activation's record, its fraud signals and notice). `install` runs them
after every `migrate` (users.apps), each a `CREATE OR REPLACE FUNCTION`, so the
database always holds what the files say; `differences` tells how it does not.

`CREATE OR REPLACE` cannot change a function's arguments or result: a change to those
comes with a migration that drops the old signature (0006 and 0007 show how); a test
lists any function of the database that is not in the files.
"""

from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

DIRECTORY = Path(__file__).resolve().parent
# In dependency order: sign_in.sql calls the functions of the others.
FILES = ["windows.sql", "deliveries.sql", "sign_in.sql", "sessions.sql", "referrals.sql"]
PREFIX = "users_"
_SCRATCH = "users_sql_check"


def call(function: str, /, **arguments: Any) -> tuple[Any, ...]:
    """The row `function` returns, each argument passed by its name (`p_` + the keyword),
    on the default database, in the caller's transaction if any."""
    named = ", ".join(f"p_{name} => %s" for name in arguments)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {function}({named})", list(arguments.values()))
        row: tuple[Any, ...] = cursor.fetchone()
    return row


def sources() -> list[str]:
    return [(DIRECTORY / name).read_text() for name in FILES]


def install(connection: BaseDatabaseWrapper) -> None:
    """Create or replace every function of the files, in one transaction."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for source in sources():
            cursor.execute(source)


def _functions(cursor: object, schema: str) -> dict[str, str]:
    """`schema`'s functions named PREFIX*: their signature -> their definition."""
    cursor.execute(  # type: ignore[attr-defined]
        """
        SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s AND starts_with(p.proname, %s)
        """,
        [schema, PREFIX],
    )
    prefix = f"{schema}."
    return {
        signature: definition.replace(f"FUNCTION {prefix}", "FUNCTION ", 1)
        for signature, definition in cursor.fetchall()  # type: ignore[attr-defined]
    }


def differences(connection: BaseDatabaseWrapper) -> list[str]:
    """How the database's functions differ from the files: one line per function that is
    missing, changed, or left over from an older version of them. [] when they agree.

    The files are run in a scratch schema, inside a transaction that is rolled back,
    and each function's definition as PostgreSQL prints it is compared there and here.
    """
    found = []
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
        cursor.execute(f"CREATE SCHEMA {_SCRATCH}")
        cursor.execute(f"SET LOCAL search_path = {_SCRATCH}, {schema}")
        for source in sources():
            cursor.execute(source)
        wanted = _functions(cursor, _SCRATCH)
        installed = _functions(cursor, schema)  # printed under the same search_path
        transaction.set_rollback(True, using=connection.alias)
    for signature in sorted(wanted.keys() - installed.keys()):
        found.append(f"missing: {signature}")
    for signature in sorted(installed.keys() - wanted.keys()):
        found.append(f"not in users/sql: {signature}")
    for signature in sorted(wanted.keys() & installed.keys()):
        if wanted[signature] != installed[signature]:
            found.append(f"differs from users/sql: {signature}")
    return found
