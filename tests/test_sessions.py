"""Devices and sessions, through uvicorn with two workers as operators run it: a person
sees where they are signed in, ends one device or all of them, and it takes effect at
once; two tabs refreshing one token stay signed in; a copied token ends its session;
staff sign a person out everywhere from the admin."""

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import Api, top_error_code
from tests.servers import (
    FAST_SIGN_IN,
    graphql,
    graphql_data,
    new_phone,
    send_code,
    served,
    start_server,
    this_database_url,
)
from tests.servers import top_error_code as served_error_code
from tests.test_metrics import per_worker, stopped, worker_pids
from users.hashing import token_hash
from users.models import RefreshToken, Session, SignInEvent, User

ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LAPTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"

VERIFY = """mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) {
  token refreshToken userErrors { code } } }"""
SESSIONS = "{ me { phone sessions { id createdAt lastUsedAt device current } } }"
REFRESH = """mutation($t: String!) { refreshToken(refreshToken: $t) {
  token refreshToken userErrors { code } } }"""
REVOKE_SESSION = """mutation($id: ID!) { revokeSession(id: $id) {
  revoked userErrors { code field message } } }"""
EVERYWHERE = """mutation($keep: Boolean!) { signOutEverywhere(keepCurrent: $keep) {
  revoked userErrors { code } } }"""
REVOKE_TOKEN = """mutation($t: String!) { revokeToken(refreshToken: $t) {
  revoked userErrors { code } } }"""
REFRESHED = 'token_refreshes_total{outcome="refreshed"}'


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def server(django_db_setup, metrics_dir):
    """Two workers on the test database; /metrics tells which worker served what."""
    env = {
        **FAST_SIGN_IN,
        "METRICS_TOKEN": "sessions-test-token",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # A worker stopped below answers its supervisor's ping when it is let go, and a
        # refresh waits on a row this test holds for as long as the test needs.
        "UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "120",
        "DATABASE_TIMEOUT": "60",
    }
    with start_server(env, workers=2) as running:
        yield running


def run(coroutine):
    return asyncio.run(coroutine)


async def sign_in(url, phone, user_agent):
    """A sign-in from a device: its access and refresh tokens."""
    code = await send_code(url, phone)
    headers = {"User-Agent": user_agent}
    response = await graphql(url, VERIFY, {"phone": phone, "code": code}, headers=headers)
    verified = response.json()["data"]["verifyCode"]
    assert verified["userErrors"] == [], verified
    return verified


async def sessions_of(url, token):
    return (await graphql_data(url, SESSIONS, token=token))["me"]["sessions"]


async def refused(url, token) -> bool:
    """Is this access token refused as it would be on any call?"""
    return served_error_code(await graphql(url, SESSIONS, token=token)) == "UNAUTHENTICATED"


async def refresh(url, refresh_token):
    return (await graphql_data(url, REFRESH, {"t": refresh_token}))["refreshToken"]


def current(sessions):
    [session] = [session for session in sessions if session["current"]]
    return session


@served
def test_a_device_lists_both_ends_the_other_and_it_is_refused_at_once(server):
    url, phone = server.url, new_phone()

    async def scenario():
        phone_1 = await sign_in(url, phone, ANDROID)
        phone_2 = await sign_in(url, phone, IPHONE)
        listed = await sessions_of(url, phone_1["token"])
        assert sorted(s["device"] for s in listed) == ["Chrome on Android", "Safari on iOS"]
        assert current(listed)["device"] == "Chrome on Android"
        assert listed[0]["lastUsedAt"] >= listed[1]["lastUsedAt"]  # most recent first
        assert current(await sessions_of(url, phone_2["token"]))["device"] == "Safari on iOS"
        [other] = [s for s in listed if not s["current"]]

        ended = await graphql_data(url, REVOKE_SESSION, {"id": other["id"]}, token=phone_1["token"])
        assert ended["revokeSession"] == {"revoked": True, "userErrors": []}
        # Device 2's next call is refused, its access token's expiry notwithstanding...
        assert await refused(url, phone_2["token"])
        # ...and so is its refresh token.
        again = await refresh(url, phone_2["refreshToken"])
        assert [e["code"] for e in again["userErrors"]] == ["INVALID_TOKEN"]
        assert again["token"] is None
        [left] = await sessions_of(url, phone_1["token"])
        assert left["current"] and left["device"] == "Chrome on Android"
        # Ending it twice: it is no longer one of mine.
        twice = await graphql_data(url, REVOKE_SESSION, {"id": other["id"]}, token=phone_1["token"])
        assert twice["revokeSession"]["revoked"] is False
        assert [e["code"] for e in twice["revokeSession"]["userErrors"]] == ["SESSION_NOT_FOUND"]

    run(scenario())
    # What the network column shows is the /24, never the address.
    assert set(Session.objects.values_list("network", flat=True)) == {"127.0.0.0/24"}


@served
def test_sign_out_everywhere_keeps_this_device_or_not(server):
    url, phone = server.url, new_phone()

    async def scenario():
        devices = [await sign_in(url, phone, agent) for agent in (ANDROID, IPHONE, LAPTOP)]
        this = devices[0]["token"]
        kept = await graphql_data(url, EVERYWHERE, {"keep": True}, token=this)
        assert kept["signOutEverywhere"] == {"revoked": 2, "userErrors": []}
        assert [s["device"] for s in await sessions_of(url, this)] == ["Chrome on Android"]
        for other in devices[1:]:
            assert await refused(url, other["token"])
            assert (await refresh(url, other["refreshToken"]))["userErrors"][0]["code"] == (
                "INVALID_TOKEN"
            )
        # The default keeps this one too.
        default = await graphql_data(url, "mutation { signOutEverywhere { revoked } }", token=this)
        assert default["signOutEverywhere"]["revoked"] == 0
        everywhere = await graphql_data(url, EVERYWHERE, {"keep": False}, token=this)
        assert everywhere["signOutEverywhere"] == {"revoked": 1, "userErrors": []}
        assert await refused(url, this)
        ended = await refresh(url, devices[0]["refreshToken"])
        assert ended["userErrors"][0]["code"] == "INVALID_TOKEN"

    run(scenario())


@served
def test_a_strangers_session_is_not_found_and_stays_signed_in(server):
    url = server.url

    async def scenario():
        mine = await sign_in(url, new_phone(), ANDROID)
        stranger = await sign_in(url, new_phone(), IPHONE)
        [theirs] = await sessions_of(url, stranger["token"])
        answers = {}
        for session_id in (theirs["id"], "999999999", "0", "-1", "x", "1" * 40, "\u0661"):
            answer = await graphql_data(
                url, REVOKE_SESSION, {"id": session_id}, token=mine["token"]
            )
            answers[session_id] = answer["revokeSession"]
        # One answer for all of them, word for word: nothing tells a stranger's id apart.
        assert len({repr(answer) for answer in answers.values()}) == 1
        assert answers[theirs["id"]]["revoked"] is False
        [error] = answers[theirs["id"]]["userErrors"]
        assert (error["code"], error["field"]) == ("SESSION_NOT_FOUND", "id")
        assert await sessions_of(url, stranger["token"]) == [theirs]
        # And without an access token, nothing at all.
        anonymous = await graphql(url, REVOKE_SESSION, {"id": theirs["id"]})
        assert served_error_code(anonymous) == "UNAUTHENTICATED"

    run(scenario())


@served
def test_signing_out_with_the_refresh_token_refuses_the_access_token_at_once(server):
    url = server.url

    async def scenario():
        device = await sign_in(url, new_phone(), LAPTOP)
        signed_out = await graphql_data(url, REVOKE_TOKEN, {"t": device["refreshToken"]})
        assert signed_out["revokeToken"] == {"revoked": True, "userErrors": []}
        assert await refused(url, device["token"])

    run(scenario())


@served
def test_two_tabs_refreshing_the_same_token_together_stay_signed_in(server):
    url = server.url

    async def scenario():
        device = await sign_in(url, new_phone(), ANDROID)
        tabs = await asyncio.gather(*(refresh(url, device["refreshToken"]) for _ in range(2)))
        assert [tab["userErrors"] for tab in tabs] == [[], []]
        assert tabs[0]["refreshToken"] == tabs[1]["refreshToken"] != device["refreshToken"]
        for tab in tabs:
            assert current(await sessions_of(url, tab["token"]))["device"] == "Chrome on Android"
        # Each tab goes on refreshing: the token they share rotates as one.
        onwards = await refresh(url, tabs[1]["refreshToken"])
        assert onwards["userErrors"] == []
        assert len(await sessions_of(url, onwards["token"])) == 1

    run(scenario())


@served
def test_a_rotated_token_used_after_the_grace_window_ends_its_session(server):
    url, phone = server.url, new_phone()

    async def scenario():
        copied = await sign_in(url, phone, ANDROID)
        elsewhere = await sign_in(url, phone, LAPTOP)
        rotated = await refresh(url, copied["refreshToken"])
        assert rotated["userErrors"] == []
        return copied, elsewhere, rotated

    copied, elsewhere, rotated = run(scenario())
    # The grace window is over for the copied token: it was rotated long ago.
    RefreshToken.objects.filter(token_hash=token_hash(copied["refreshToken"])).update(
        revoked_at=timezone.now() - timedelta(minutes=5)
    )

    async def reuse():
        reused = await refresh(url, copied["refreshToken"])
        assert reused["userErrors"][0]["code"] == "INVALID_TOKEN"
        # The whole family ends: the rotated token and its access token too...
        assert (await refresh(url, rotated["refreshToken"]))["userErrors"][0]["code"] == (
            "INVALID_TOKEN"
        )
        assert await refused(url, rotated["token"])
        # ...and nothing else of the person's.
        assert [s["device"] for s in await sessions_of(url, elsewhere["token"])] == [
            "Firefox on Windows"
        ]

    run(reuse())


@contextlib.contextmanager
def session_row_held(session_id):
    """The session's row locked by another transaction for the block: a refresh of one of
    its tokens waits for it in PostgreSQL."""
    with psycopg.connect(this_database_url()) as holder:
        holder.execute("SELECT 1 FROM users_session WHERE id = %s FOR UPDATE", [session_id])
        yield
        holder.rollback()


def waiting_on_locks() -> int:
    with psycopg.connect(this_database_url(), autocommit=True) as watcher:
        return watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]


async def until(condition, what, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.02)


@served
def test_concurrent_refreshes_of_one_family_on_two_workers_give_one_new_pair(server, metrics_dir):
    """Both refreshes are inside their transactions at once, one on each worker, waiting
    on the session's row; then they go on together. One rotation, one successor."""
    url = server.url
    device = run(sign_in(url, new_phone(), ANDROID))
    session = Session.objects.get(refresh_tokens__token_hash=token_hash(device["refreshToken"]))
    workers = sorted(worker_pids(Path(metrics_dir)))
    assert len(workers) == 2, "both workers serving"
    before = per_worker(Path(metrics_dir), REFRESHED)

    async def refreshes():
        tasks = []
        with session_row_held(session.pk):
            for serving in workers:
                [idle] = set(workers) - {serving}
                with stopped(idle):  # the next connection goes to `serving`
                    tasks.append(asyncio.create_task(refresh(url, device["refreshToken"])))
                    count = len(tasks)
                    await until(lambda: waiting_on_locks() == count, "the refresh waiting")  # noqa: B023
        return await asyncio.gather(*tasks)

    tabs = run(refreshes())
    assert [tab["userErrors"] for tab in tabs] == [[], []]
    assert tabs[0]["refreshToken"] == tabs[1]["refreshToken"]
    after = per_worker(Path(metrics_dir), REFRESHED)
    assert {pid: after.get(pid, 0) - before.get(pid, 0) for pid in workers} == {
        pid: 1 for pid in workers
    }
    live = RefreshToken.objects.filter(session=session, revoked_at=None)
    assert list(live.values_list("token_hash", flat=True)) == [token_hash(tabs[0]["refreshToken"])]
    assert RefreshToken.objects.filter(session=session).count() == 2  # one rotation
    for tab in tabs:
        assert run(sessions_of(url, tab["token"]))[0]["current"]


# In-process: the rest of the API and the admin


@pytest.fixture
def staff_client(make_user):
    staff, _ = make_user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    return client


def test_sessions_are_only_on_me(make_user):
    api = Api()
    _, staff = make_user(is_staff=True)
    users = api.data("{ users { edges { node { phone sessions { id } } } } }", token=staff)
    assert {edge["node"]["sessions"] is None for edge in users["users"]["edges"]} == {True}
    assert len(api.data("{ me { sessions { id } } }", token=staff)["me"]["sessions"]) == 1


def test_an_access_token_without_a_session_is_unauthenticated(make_user):
    from graphql_jwt.utils import jwt_encode

    user, _ = make_user()
    now = int(time.time())
    old_style = jwt_encode({"sub": str(user.pk), "iat": now, "exp": now + 60})
    assert top_error_code(Api().post(SESSIONS, token=old_style)) == "UNAUTHENTICATED"


def test_the_admin_shows_sessions_and_history_and_signs_out_everywhere(api, staff_client):
    phone = "+375291234567"
    first = api.sign_in(phone)
    code = api.send(phone)["debugCode"]
    api.verify(phone, "1111" if code == "0000" else "0000")  # a wrong code: history only
    devices = [first, api.sign_in(phone)]
    user = User.objects.get(phone=phone)
    Session.objects.filter(user=user).update(device="Safari on iOS", network="192.0.2.0/24")
    history = SignInEvent.objects.filter(user=user).order_by("at", "id")
    assert list(history.values_list("outcome", flat=True)) == [
        "signed_in",
        "wrong_code",
        "signed_in",
    ]

    page = staff_client.get(reverse("admin:users_user_change", args=[user.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("Safari on iOS") >= 2 and "192.0.2.0/24" in html
    assert "wrong_code" in html and "Sign out everywhere" in html

    sign_out = reverse("admin:users_user_sign_out_everywhere", args=[user.pk])
    confirm = staff_client.get(sign_out)
    assert confirm.status_code == 200 and "2 live" in confirm.content.decode()
    assert Session.objects.filter(user=user, ended_at=None).count() == 2  # a GET changes nothing
    done = staff_client.post(sign_out)
    assert done.status_code == 302
    assert Session.objects.filter(user=user, ended_at=None).count() == 0
    for device in devices:
        assert top_error_code(api.post(SESSIONS, token=device["token"])) == "UNAUTHENTICATED"
    [entry] = LogEntry.objects.filter(object_id=str(user.pk))
    assert entry.action_flag == CHANGE
    assert entry.get_change_message() == "Signed out everywhere: 2 sessions ended."


def test_the_admin_list_signs_the_selected_users_out_everywhere(make_user, staff_client):
    (one, one_token), (two, two_token) = make_user(), make_user()
    _, kept_token = make_user()
    answer = staff_client.post(
        reverse("admin:users_user_changelist"),
        {"action": "sign_out_everywhere", "_selected_action": [one.pk, two.pk]},
    )
    assert answer.status_code == 302
    api = Api()
    for token in (one_token, two_token):
        assert top_error_code(api.post(SESSIONS, token=token)) == "UNAUTHENTICATED"
    assert api.data(SESSIONS, token=kept_token)["me"]["sessions"][0]["current"]
    logged = set(LogEntry.objects.values_list("object_id", flat=True))
    assert logged == {str(one.pk), str(two.pk)}


def test_a_person_cannot_reach_the_admins_sign_out(make_user):
    user, _ = make_user()
    client = Client()
    client.force_login(user)  # not staff
    answer = client.post(reverse("admin:users_user_sign_out_everywhere", args=[user.pk]))
    assert answer.status_code == 302 and "/login/" in answer["Location"]
    assert Session.objects.filter(user=user, ended_at=None).count() == 1
