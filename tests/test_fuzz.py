"""Schema-driven fuzzing: no query or mutation the schema allows makes the server answer 5xx.

schemathesis builds GraphQL documents from the committed schema.graphql (kept current by
tests/test_project.py) and posts them to a real uvicorn, half of them with a valid access
token so that `me` and its referrals resolve too. Bounded in examples and in time.
"""

import asyncio
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.servers import FAST_SIGN_IN, PROJECT_ROOT, new_phone, served, sign_in, start_server

MAX_EXAMPLES = 500
TIME_BUDGET = 40  # seconds of requests; the examples left after it are drawn but not sent

schema = schemathesis.graphql.from_path(PROJECT_ROOT / "schema.graphql")


@served
def test_no_request_the_schema_allows_is_a_server_error():
    seen = {"sent": 0, "signed_in": 0, "statuses": {}, "5xx": []}
    with start_server(FAST_SIGN_IN) as server, requests.Session() as session:
        token = asyncio.run(sign_in(server.url, new_phone()))
        endpoint = f"{server.url}/graphql/"
        stop_at = time.monotonic() + TIME_BUDGET

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],  # no shrinking: a 5xx is reported with its query
            suppress_health_check=list(HealthCheck),
        )
        @given(case=schema.as_strategy(), signed_in=st.booleans())
        def fuzz(case, signed_in):
            if time.monotonic() > stop_at:
                return
            headers = {"Authorization": f"Bearer {token}"} if signed_in else {}
            response = case.call(base_url=endpoint, session=session, headers=headers, timeout=10)
            seen["sent"] += 1
            seen["signed_in"] += signed_in
            seen["statuses"][response.status_code] = (
                seen["statuses"].get(response.status_code, 0) + 1
            )
            if response.status_code >= 500:
                seen["5xx"].append((response.status_code, case.body, response.text[:300]))

        fuzz()
        log = server.log
    print(
        f"\n[fuzz] requests={seen['sent']}, signed_in={seen['signed_in']}, "
        f"statuses={seen['statuses']}, 5xx={len(seen['5xx'])}"
    )
    if seen["5xx"]:
        pytest.fail(
            f"{len(seen['5xx'])} of {seen['sent']} requests were 5xx, e.g.:\n"
            + "\n".join(repr(failure) for failure in seen["5xx"][:5])
            + f"\nserver log tail:\n{log[-3000:]}"
        )
    assert seen["sent"] >= 50, f"too few requests to mean anything: {seen}"
