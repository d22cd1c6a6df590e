"""Database work and the request it belongs to (backend/database.py): none starts once
the request has answered, and every connection is back in the pool.

graphql-core answers as soon as one field's error nulls the whole answer, while the
fields beside it may still have database work queued; that work must not start after
the answer, on a thread nothing waits for.
"""

import asyncio
import json
import threading

import pytest
from django.db import connection

from backend import database
from users import selectors
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)  # the work runs on other threads


def checked_out() -> int:
    """Connections taken from the pool and not given back."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


@pytest.fixture
def patient(settings, monkeypatch):
    """No deadline and a long wait for a slot: only what the test releases decides."""
    settings.DATABASE_TIMEOUT = 0
    monkeypatch.setattr(database, "QUEUE_TIMEOUT", 60)


def test_work_of_a_request_that_has_answered_never_starts(settings, patient):
    """One slot, held by work the request started; a second piece waiting for it and a
    third asked for only after the answer: both are refused, neither touches the
    database, and the held work's connection goes back to the pool."""
    settings.DATABASE_POOL_SIZE = 1
    holding, release = threading.Event(), threading.Event()
    ran = []

    def hold():
        User.objects.exists()  # with a connection of its own
        holding.set()
        release.wait(30)
        ran.append("hold")

    def count():
        ran.append("count")
        return User.objects.count()

    async def scenario():
        database.serving()  # as under the ASGI application: on the database threads
        answered = asyncio.Event()

        async def asks_after_the_answer():
            await answered.wait()
            return await database.run(count)

        async with database.request_scope():
            held = asyncio.ensure_future(database.run(hold))
            await asyncio.to_thread(holding.wait, 30)  # the one slot is taken
            queued = asyncio.ensure_future(database.run(count))
            later = asyncio.ensure_future(asks_after_the_answer())
            await asyncio.sleep(0)  # `queued` waits for the slot
        answered.set()  # the request's answer has gone
        with pytest.raises(database.RequestEnded):
            await asyncio.wait_for(later, 30)  # at once: no slot taken, no thread
        release.set()
        await held
        with pytest.raises(database.RequestEnded):
            await asyncio.wait_for(queued, 30)  # when its turn came

    before = checked_out()
    asyncio.run(scenario())
    assert ran == ["hold"]
    assert checked_out() == before


QUERY = """{ me {
  bad: referrals(first: -1) { totalCount }
  one: referrals(first: 2) @include(if: true) { totalCount }
  two: referrals(first: 3) @include(if: true) { totalCount } } }"""


def test_a_query_answered_while_a_sibling_still_has_work_queued_starts_none_after(
    make_user, monkeypatch, patient
):
    """`bad` fails at once and nulls the answer; `one` and `two` are read one after the
    other by the referral loader, and the first read is held until the answer is out:
    `two`'s read, asked for after the answer, is refused, and no connection is kept."""
    from tests.conftest import asgi_request

    _, token = make_user()
    release = threading.Event()
    reads = []
    read = selectors.referral_pages

    def held_read(**kwargs):
        reads.append(kwargs["request"])
        release.wait(30)
        return read(**kwargs)

    monkeypatch.setattr(selectors, "referral_pages", held_read)
    outcomes = []
    run = database.run

    async def counted_run(fn, /, **kwargs):
        try:
            result = await run(fn, **kwargs)
        except database.RequestEnded:
            outcomes.append("refused")
            raise
        outcomes.append("ran")
        return result

    monkeypatch.setattr(database, "run", counted_run)

    async def afterwards():
        """Once the answer is out: let the held read go, and wait for the loader."""
        release.set()
        async with asyncio.timeout(30):
            while "refused" not in outcomes:
                await asyncio.sleep(0.01)

    before = checked_out()
    status, _, content = asgi_request(
        "POST",
        "/graphql/",
        json.dumps({"query": QUERY}).encode(),
        [("content-type", "application/json"), ("authorization", f"Bearer {token}")],
        then=afterwards,
    )
    answer = json.loads(content)
    assert status == 200 and answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert len(reads) <= 1  # `two` was never read; `one` only if it began in time
    assert outcomes[-1] == "refused"
    assert checked_out() == before
