#!/usr/bin/env python
"""What the per-request session check costs: the signed-in user's lookup with the
session joined (users.selectors.active_user) against the same lookup without it, as
it was before sessions.

Run on the embedded PostgreSQL (or DATABASE_URL's server):

    .venv/bin/python -m backend.embedded run -- .venv/bin/python bench/session_check.py

It makes a throwaway test database with 20,000 users of 3 sessions each and times one
lookup of one user, the two kinds alternating call by call (LOOKUPS times each) so that
a loaded machine's noise falls on both alike: medians of the wall time per call (this
process and PostgreSQL), of this process's CPU (the ORM building the query), and of
PostgreSQL's own execution time (EXPLAIN ANALYZE).
"""

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    DJANGO_SETTINGS_MODULE="backend.settings",
    DEBUG="0",
    SECRET_KEY=os.environ.get("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789abcdef"),
    SMS_BACKEND="simulated",
    DATABASE_TIMEOUT="0",
)
LOOKUPS = int(os.environ.get("BENCH_LOOKUPS", "3000"))
USERS = 20_000


def main() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from users import selectors
    from users.models import User

    test_database = connection.creation.create_test_db(verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users_user (phone, password, invite_code) "
                "SELECT '+37533' || lpad(i::text, 7, '0'), '!', "
                "translate(lpad(i::text, 6, '0'), '01', 'AB') FROM generate_series(1, %s) i",
                [USERS],
            )
            cursor.execute(
                "INSERT INTO users_session (user_id, device, network) "
                "SELECT u.id, 'Chrome on Android', '192.0.2.0/24' "
                "FROM users_user u, generate_series(1, 3)"
            )
            cursor.execute("ANALYZE")
            cursor.execute("SELECT max(user_id), max(id) FROM users_session")
            user_id, session_id = cursor.fetchone()

        def without_session() -> User | None:  # the lookup before sessions
            return (
                User.objects.select_related("invited_by").filter(pk=user_id, is_active=True).first()
            )

        def with_session() -> User | None:
            return selectors.active_user(user_id=user_id, session_id=session_id)

        lookups = {"without the session": without_session, "with the session": with_session}
        for lookup in lookups.values():
            assert lookup() is not None
            for _ in range(200):  # warm: the connection, the plans, the buffers
                lookup()
        wall_us: dict[str, list[float]] = {name: [] for name in lookups}
        cpu_us: dict[str, list[float]] = {name: [] for name in lookups}
        for _ in range(LOOKUPS):
            for name, lookup in lookups.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                lookup()
                cpu_us[name].append((time.process_time() - started_cpu) * 1e6)
                wall_us[name].append((time.perf_counter() - started) * 1e6)
        # The SQL each lookup sends, as sent, for PostgreSQL's own timing.
        statements = {}
        for name, lookup in lookups.items():
            with CaptureQueriesContext(connection) as captured:
                lookup()
            [query] = captured.captured_queries
            statements[name] = query["sql"]
        executed_us: dict[str, list[float]] = {name: [] for name in lookups}
        with connection.cursor() as cursor:
            for _ in range(300):
                for name, statement in statements.items():
                    cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
                    plan = cursor.fetchone()[0]
                    plan = plan[0] if isinstance(plan, list) else plan
                    executed_us[name].append(plan["Execution Time"] * 1000)
    finally:
        connection.creation.destroy_test_db(test_database, verbosity=0)

    print(f"the signed-in user's lookup, {LOOKUPS} calls each, alternating:")
    for name in lookups:
        print(
            f"  {name:<20}: wall median {statistics.median(wall_us[name]):.0f} us, "
            f"this process's CPU {statistics.median(cpu_us[name]):.0f} us, "
            f"PostgreSQL execution {statistics.median(executed_us[name]):.0f} us"
        )
    extra = statistics.median(wall_us["with the session"]) - statistics.median(
        wall_us["without the session"]
    )
    print(f"  the session check adds {extra:.0f} us of wall time per request")


if __name__ == "__main__":
    main()
