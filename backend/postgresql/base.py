"""Django's PostgreSQL backend, its psycopg pool checking connections as they leave it.

A restart of the database (or a failover, or PgBouncer's restart) closes every pooled
connection at once. Django's own health check (CONN_HEALTH_CHECKS) finds them dead one
by one, each costing the request a back-off of a second or more, so a request that
meets three gives up after the pool's 2 s. Here the first dead one found has the pool
check all its idle connections at once (psycopg_pool's `check`) and replace the dead:
the request that found it waits about a second, and the ones after it none.
"""

from typing import Any

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


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
