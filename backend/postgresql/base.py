"""Django's PostgreSQL backend, its psycopg pool checking connections as they leave it,
and the server-side timeouts carried by each transaction behind a transaction pooler.

A restart of the database (or a failover, or PgBouncer's restart) closes every pooled
connection at once. Django's own health check (CONN_HEALTH_CHECKS) finds them dead one
by one, each costing the request a back-off of a second or more, so a request that
meets three gives up after the pool's 2 s. Here the first dead one found has the pool
check all its idle connections at once (psycopg_pool's `check`) and replace the dead:
the request that found it waits about a second, and the ones after it none.

With DATABASE_POOLER=transaction (PgBouncer in transaction mode) a session is not ours:
each transaction may run on another server connection, and startup `options` are
refused. The first connection reads the timeouts the database role gives every session
(what a statement outside a transaction runs with). If they are DATABASE_TIMEOUT's or
stricter, nothing more is done; otherwise one WARNING says so, naming the settings, and
every transaction begins with one `set_config` call that sets all three for itself (a
round trip more per transaction, none for reads outside one).
"""

import logging
import threading
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

# One round trip for the three: `is_local` true, so they end with the transaction.
SET_LOCAL_TIMEOUTS = (
    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true),"
    " set_config('idle_in_transaction_session_timeout', %s, true)"
)
ROLE_TIMEOUTS = (
    "SELECT name, setting::int FROM pg_settings WHERE name IN"
    " ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')"
)

# Per process and database alias: the values each transaction must set, () when the
# role already has them; absent until the first connection has looked.
_per_transaction: dict[str, tuple[str, ...]] = {}
_looked = threading.Lock()


def _milliseconds(value: str) -> int:
    return int(value.removesuffix("ms"))


def role_timeouts_in_force(connection: Any) -> bool:
    """Does the role give every session the three timeouts DATABASE_TIMEOUT asks for, or
    stricter ones? Logs one WARNING naming the settings when it does not."""
    wanted = settings.DATABASE_SERVER_TIMEOUTS
    with connection.cursor() as cursor:
        found = dict(cursor.execute(ROLE_TIMEOUTS).fetchall())
    weaker = {
        name: found.get(name, 0)
        for name, value in wanted.items()
        if not 0 < found.get(name, 0) <= _milliseconds(value)
    }
    if weaker:
        role = connection.info.user
        logger.warning(
            "DATABASE_POOLER=transaction: the database role %r runs sessions with %s, not "
            "DATABASE_TIMEOUT's %s: each transaction sets them as it begins, but statements "
            "outside a transaction run without them. Set them on the role: %s",
            role,
            ", ".join(f"{name}={ms}ms" for name, ms in weaker.items()),
            ", ".join(f"{name}={value}" for name, value in wanted.items()),
            " ".join(f"ALTER ROLE \"{role}\" SET {name} = '{v}';" for name, v in wanted.items()),
        )
    return not weaker


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        options = self.settings_dict["OPTIONS"].get("pool")
        pools = self._connection_pools  # type: ignore[attr-defined]
        if options and self.alias != NO_DB_ALIAS and self.alias not in pools:
            # Made here, with its check; Django's property then finds and opens it.
            pools.setdefault(self.alias, self._new_pool(options))
        pool: ConnectionPool | None = super().pool
        return pool

    def _new_pool(self, options: dict[str, Any]) -> ConnectionPool:
        connect_kwargs = self.get_connection_params()
        connect_kwargs["autocommit"] = True  # as Django's own: it sets the mode later
        made: list[ConnectionPool] = []

        def check(connection: Any) -> None:
            try:
                ConnectionPool.check_connection(connection)
            except psycopg.Error:
                made[0].check()  # the others are as dead: replace them all now
                raise

        made.append(
            ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,  # type: ignore[attr-defined]
                check=check,
                **options,
            )
        )
        return made[0]

    def _timeouts_per_transaction(self) -> tuple[str, ...]:
        if not (settings.DATABASE_POOLER and settings.DATABASE_SERVER_TIMEOUTS):
            return ()
        with _looked:
            if self.alias not in _per_transaction:
                in_force = role_timeouts_in_force(self.connection)
                values = tuple(settings.DATABASE_SERVER_TIMEOUTS.values())
                _per_transaction[self.alias] = () if in_force else values
            return _per_transaction[self.alias]

    def init_connection_state(self) -> None:
        super().init_connection_state()
        self._timeouts_per_transaction()  # the first connection looks, in autocommit

    def _set_autocommit(self, autocommit: bool) -> None:
        super()._set_autocommit(autocommit)  # type: ignore[misc]
        if not autocommit and (values := self._timeouts_per_transaction()):
            with self.wrap_database_errors, self.connection.cursor() as cursor:
                cursor.execute(SET_LOCAL_TIMEOUTS, values)
