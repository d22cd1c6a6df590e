#!/usr/bin/env python
"""What the execution short cut (schema/execution.py) is worth: the CPU of one `me` with
50 referrals, in-process, with GRAPHQL_SHORT_CUT on and off.

Run on the embedded PostgreSQL (or DATABASE_URL's server):

    .venv/bin/python -m backend.embedded run -- .venv/bin/python bench/short_cut.py

It makes a throwaway test database, one user with 50 referrals, and posts the same `me`
as `make bench` through Django's test client: the whole view, GraphQL and the reads, on
this process's CPU (time.process_time, every thread), PostgreSQL's own excluded. The
two settings alternate request by request, REQUESTS times each, so that a loaded
machine's noise falls on both alike; the answers must be the same.
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
    ALLOWED_HOSTS="testserver",
)
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "600"))
ME_QUERY = """{ me { id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined
  referrals(first: 50) { totalCount edges { cursor node { phone activatedAt } }
  pageInfo { hasNextPage endCursor } } } }"""


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from schema import execution
    from schema.schema import schema
    from users.models import User
    from users.services import tokens

    if schema.execution_context_class is not execution.ExecutionContext:
        sys.exit("the short cut is off in this process (GRAPHQL_SHORT_CUT, graphql-core)")
    test_database = connection.creation.create_test_db(verbosity=0)
    try:
        inviter = User.objects.create_user("+375330000000")
        for i in range(1, 51):
            User.objects.create_user(
                f"+37533{i:07d}", invited_by=inviter, invite_activated_at=inviter.date_joined
            )
        token = tokens.issue(user=inviter).token
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

        def answer() -> bytes:
            response = client.post(
                "/graphql/", {"query": ME_QUERY}, content_type="application/json"
            )
            assert response.status_code == 200 and b'"errors"' not in response.content
            return response.content

        answers = {}
        for on in (True, False):
            settings.GRAPHQL_SHORT_CUT = on
            answers[on] = answer()
            for _ in range(50):  # warm: caches, the pool, the database's own
                answer()
        assert answers[True] == answers[False], "the short cut changed the answer"

        cpu_ms: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(REQUESTS):
            for on in (True, False):
                settings.GRAPHQL_SHORT_CUT = on
                started = time.process_time()
                answer()
                cpu_ms[on].append((time.process_time() - started) * 1000)
    finally:
        connection.creation.destroy_test_db(test_database, verbosity=0)

    print(f"`me` with 50 referrals, CPU ms per request in-process ({REQUESTS} each):")
    for on in (True, False):
        low, median, high = statistics.quantiles(cpu_ms[on], n=4)
        name = "on " if on else "off"
        print(f"  short cut {name}: median {median:.1f} (quartiles {low:.1f}, {high:.1f})")
    saved = 1 - statistics.median(cpu_ms[True]) / statistics.median(cpu_ms[False])
    print(f"  saved: {saved:.0%} of the CPU without it")


if __name__ == "__main__":
    main()
