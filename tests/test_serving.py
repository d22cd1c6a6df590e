"""The ASGI entry point served by uvicorn as operators run it."""

import asyncio

from tests.servers import SEND, graphql, served, start_server


@served
def test_uvicorn_with_its_defaults_does_not_let_clients_pick_their_address():
    """uvicorn trusts X-Forwarded-For from loopback by default; the service must not."""
    env = {"OTP_MAX_SENDS_PER_IP": "2", "OTP_RESEND_COOLDOWN": "0", "SMS_SIMULATED_DELAY": "0"}
    # proxy_headers: launched without --no-proxy-headers, as uvicorn's defaults would be.
    with start_server(env, proxy_headers=True) as server:

        async def sends():
            answers = []
            for i in range(3):
                response = await graphql(
                    server.url,
                    SEND,
                    {"phone": f"+37529123456{i}"},
                    headers={"X-Forwarded-For": f"9.9.9.{i}"},
                )
                answers.append(response.json())
            return answers

        answers = asyncio.run(sends())
    codes = [[e["code"] for e in a["data"]["sendCode"]["userErrors"]] for a in answers]
    assert codes == [[], [], ["RATE_LIMITED"]]
