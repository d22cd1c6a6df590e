"""The admin's sign-in under a burst: the password cap holds exactly, the admin never
answers 500, and the API beside it keeps its database connections.

Through uvicorn as operators run it (tests/servers.py), with the admin's share of the
worker (ADMIN_CONCURRENCY) and its password throttle (users/admin.py)."""

import asyncio
import re
from collections import Counter
from urllib.parse import urlencode

from tests.servers import FAST_SIGN_IN, ME, graphql, http, new_phone, served, sign_in, start_server
from users.models import User

STAFF = "+375291112233"
PASSWORD = "a-long-admin-password"
TOKEN_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
COOKIE = re.compile(r"csrftoken=([^;]+)")


async def login_form(url):
    page = await http(url, "GET", "/admin/login/")
    return COOKIE.search(page.headers["set-cookie"])[1], TOKEN_FIELD.search(page.body)[1].decode()


async def try_password(url, cookie, token, phone, password):
    body = urlencode(
        {"csrfmiddlewaretoken": token, "username": phone, "password": password, "next": "/admin/"}
    ).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookie}",
        "Referer": f"{url}/admin/login/",
    }
    return await http(url, "POST", "/admin/login/", body, headers, timeout=60)


def outcome(response):
    if response.status == 302:
        return "signed in"
    if response.status == 503:
        return "busy"
    if response.status == 200 and b"Too many failed sign-ins" in response.body:
        return "throttled"
    if response.status == 200 and b"correct phone" in response.body:
        return "wrong password"
    return f"HTTP {response.status}"


@served
def test_a_burst_of_passwords_checks_at_most_the_cap_and_the_api_keeps_serving():
    """40 wrong passwords and the right one at once, for one staff phone from one address,
    while a signed-in user calls `me` ten times a second: at most 5 passwords are
    checked, nothing answers 500, and `me` is never refused."""
    User.objects.create_superuser(STAFF, PASSWORD)
    with start_server({**FAST_SIGN_IN, "DATABASE_POOL_SIZE": "4"}) as server:

        async def scenario():
            token = await sign_in(server.url, new_phone())
            cookie, form_token = await login_form(server.url)
            tries = [
                try_password(server.url, cookie, form_token, STAFF, f"wrong-{n}") for n in range(40)
            ]
            tries.insert(20, try_password(server.url, cookie, form_token, STAFF, PASSWORD))
            burst = asyncio.gather(*tries)
            api = []
            while not burst.done():
                api.append(await graphql(server.url, ME, token=token))
                await asyncio.sleep(0.1)
            outcomes = [outcome(answer) for answer in await burst]
            print(f"\n[admin burst] {Counter(outcomes)}, me: {len(api)} calls")
            checked = outcomes.count("wrong password") + outcomes.count("signed in")
            assert checked <= 5, outcomes
            assert set(outcomes) <= {"wrong password", "signed in", "throttled", "busy"}, outcomes
            refused = [a for a in api if a.status != 200 or not a.json().get("data")]
            assert api and refused == [], refused[:3]

        asyncio.run(scenario())


@served
def test_a_burst_of_unknown_phones_is_no_500_and_the_probes_stay_prompt():
    with start_server({**FAST_SIGN_IN}) as server:

        async def scenario():
            cookie, form_token = await login_form(server.url)
            tries = [
                try_password(server.url, cookie, form_token, f"+37529{n:07d}", "whatever")
                for n in range(60)
            ]
            burst = asyncio.gather(*tries)
            probes = []
            while not burst.done():
                probes.append(await http(server.url, "GET", "/healthz"))
                await asyncio.sleep(0.1)
            outcomes = [outcome(answer) for answer in await burst]
            assert set(outcomes) <= {"wrong password", "throttled", "busy"}, outcomes
            assert outcomes.count("wrong password") <= 20  # the address's cap
            # Promptness is the point, so a bound; generous, for a loaded machine (before
            # the admin had its own share, /healthz took up to 6 s here).
            assert probes and max(p.elapsed for p in probes) < 3.0, [p.elapsed for p in probes]

        asyncio.run(scenario())
