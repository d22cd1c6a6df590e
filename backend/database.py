"""Database work off the event loop: bounded, with a deadline, never outliving its request.

Every piece of synchronous database work the API does (a use case, a page of
referrals, the signed-in user) goes through `run`. It

- waits, without a thread, for one of DATABASE_POOL_SIZE slots per worker, so at most
  that many threads use the database at once and the connection pool never has a
  queue of its own; a request that cannot get a slot within QUEUE_TIMEOUT is refused
  with `DatabaseBusy` (load: the refusal is fast and frees itself);
- gives the work DATABASE_TIMEOUT seconds (+1, so PostgreSQL's own statement_timeout
  normally answers first) and answers `DatabaseTimeout` after that. A database that
  hangs without closing its sockets (a frozen server, a partition) is noticed here;
  the thread stays with the work until the database answers, and keeps its slot, so
  a hung database holds at most DATABASE_POOL_SIZE threads per worker;
- hands the connection back to the pool when the work ends, whatever else the
  request did, instead of waiting for Django's request_finished;
- under the ASGI application (backend/edge.py marks it `serving`), runs the work on
  this worker's own DATABASE_POOL_SIZE database threads, never on the request's
  thread: Django runs middleware hooks there, and a hung query must not hold up the
  answer that says so. Called from sync code instead (Django's test client, a
  management command), the work runs on the caller's thread, inside its transaction;
- refuses to start work for a request that has already answered (`request_scope`).
  When one field of a query fails, graphql-core answers at once while sibling fields
  may still be running; without this their database work would start after the
  request, on a thread nothing cleans up, holding a connection nothing gives back;
- hands work that finished after its request gave up on it (the deadline passed, or
  the client left) to `if_abandoned`, on the work's thread with its connection: a
  sign-in that committed while its answer said SERVICE_UNAVAILABLE is kept so that
  the person's retry finds it (users.services.codes.keep_unanswered).
"""

import asyncio
import contextvars
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

QUEUE_TIMEOUT = 2.0


class DatabaseBusy(Exception):
    """Every database slot of this worker stayed taken for QUEUE_TIMEOUT seconds."""


class DatabaseTimeout(Exception):
    """The database did not answer within DATABASE_TIMEOUT seconds."""


class RequestEnded(Exception):
    """Database work asked for after its request had answered."""


class _Scope:
    ended = False


_scope: contextvars.ContextVar[_Scope] = contextvars.ContextVar("database_request_scope")
_serving: contextvars.ContextVar[bool] = contextvars.ContextVar("database_serving", default=False)
_threads: ThreadPoolExecutor | None = None


def serving() -> contextvars.Token[bool]:
    """Mark this request as served by the ASGI application (see the module docstring)."""
    return _serving.set(True)


def _database_threads() -> ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(settings.DATABASE_POOL_SIZE, thread_name_prefix="database")
    return _threads


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def request_scope() -> AsyncIterator[None]:
    """Work started by `run` inside this block belongs to one request; none starts after."""
    scope = _Scope()
    token = _scope.set(scope)
    try:
        yield
    finally:
        scope.ended = True
        _scope.reset(token)


def release_connection() -> None:
    """Give this thread's connection back to the pool.

    Inside an outer transaction (a management command, a test) the connection is the
    transaction's and stays.
    """
    if not connection.in_atomic_block:
        connection.close()


def _slots_of(loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(settings.DATABASE_POOL_SIZE)
    return slots


class _Handoff:
    """Who gets the work's result, decided once under a lock: the request that waits
    for it, or, if that request gave up first, `if_abandoned`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken = False
        self.abandoned = False

    def give_up(self) -> bool:
        """The request stops waiting; False if the result is already its own."""
        with self.lock:
            self.abandoned = not self.taken
            return self.abandoned


async def run[T](
    fn: Callable[..., T], /, *, if_abandoned: Callable[[T], object] | None = None, **kwargs: Any
) -> T:
    """Run `fn(**kwargs)`, which uses the database, in a thread; see the module docstring."""
    scope = _scope.get(None)
    if scope is not None and scope.ended:
        raise RequestEnded(fn.__name__)
    loop = asyncio.get_running_loop()
    slots = _slots_of(loop)
    try:
        async with asyncio.timeout(QUEUE_TIMEOUT):
            await slots.acquire()
    except TimeoutError:
        raise DatabaseBusy(fn.__name__) from None

    handoff = _Handoff()

    def work() -> T:
        try:
            if scope is not None and scope.ended:  # queued behind work that outlived it
                raise RequestEnded(fn.__name__)
            result = fn(**kwargs)
            with handoff.lock:
                handoff.taken = not handoff.abandoned
            if not handoff.taken and if_abandoned is not None:
                try:
                    if_abandoned(result)
                except Exception:
                    logger.exception("%s: keeping an answer nobody received failed", fn.__name__)
            return result
        finally:
            release_connection()
            with suppress(RuntimeError):  # the loop has closed: nobody waits for the slot
                loop.call_soon_threadsafe(slots.release)

    if _serving.get():
        in_thread = sync_to_async(work, thread_sensitive=False, executor=_database_threads())
    else:
        in_thread = sync_to_async(work)
    task = asyncio.ensure_future(in_thread())
    deadline = settings.DATABASE_TIMEOUT + 1 if settings.DATABASE_TIMEOUT else None
    try:
        async with asyncio.timeout(deadline):
            return await asyncio.shield(task)
    except TimeoutError:
        if not handoff.give_up():  # it finished as the deadline passed: answer it
            return await task
        # The task, and the slot, end when the database answers.
        task.add_done_callback(_consume)
        raise DatabaseTimeout(fn.__name__) from None
    except asyncio.CancelledError:  # the client left: nobody will read the answer
        handoff.give_up()
        task.add_done_callback(_consume)
        raise


def _consume(task: "asyncio.Future[Any]") -> None:
    """The answer of work whose request gave up on it: nobody reads it, asyncio need not warn."""
    if not task.cancelled():
        task.exception()
