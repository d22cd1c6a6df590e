"""Top-level errors of requests that cannot run: Apollo's codes, the statuses of the
GraphQL-over-HTTP specification for clients that accept application/graphql-response+json,
and bodies that are not a GraphQL request at all.

Clients that do not ask for that type (no Accept header, `*/*`, application/json) keep
the answers they always had: 200, `"data": null`.
"""

import asyncio
import json

import pytest
from django.test import Client

from tests.servers import http, served, start_server

GRAPHQL_RESPONSE = "application/graphql-response+json"
# What graphql-request 7 and the reference client send; Apollo Client 4 adds ;q=0.9.
PREFERS_GRAPHQL_RESPONSE = "application/graphql-response+json, application/json"
INT_VARIABLE = "query($n: Int!) { me { referrals(first: $n) { totalCount } } }"

# (name, query, variables, the code it must get)
REFUSED = [
    ("syntax error", "{ me { id }", None, "GRAPHQL_PARSE_FAILED"),
    ("too many tokens", "{ " + "__typename " * 2100 + "}", None, "GRAPHQL_PARSE_FAILED"),
    ("unknown field", "{ mee { id } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("introspection off", "{ __schema { queryType { name } } }", None, "GRAPHQL_VALIDATION_FAILED"),
    (
        "wrong argument type",
        '{ me { referrals(first: "x") { totalCount } } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    (
        "too many aliases",
        "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    ("variable of the wrong type", INT_VARIABLE, {"n": "x"}, "BAD_USER_INPUT"),
    ("variable missing", INT_VARIABLE, {}, "BAD_USER_INPUT"),
]
IDS = [name for name, *_ in REFUSED]


def post(query, variables=None, **headers):
    body = json.dumps({"query": query, "variables": variables})
    return Client().post("/graphql/", body, content_type="application/json", **headers)


@pytest.mark.parametrize(("name", "query", "variables", "code"), REFUSED, ids=IDS)
def test_a_request_that_cannot_run_has_a_code(db, settings, name, query, variables, code):
    settings.GRAPHIQL = False
    response = post(query, variables)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["data"] is None
    assert {error["extensions"]["code"] for error in body["errors"]} == {code}


@pytest.mark.parametrize(
    ("accept", "answered_in"),
    [
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (PREFERS_GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("application/json, application/graphql-response+json", "application/json"),
        ("application/graphql-response+json;q=0.9, application/json", "application/json"),
        ("application/json;q=0.9, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("*/*, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/graphql-response+json;q=0, */*", "application/json"),
        ("text/html, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("text/html", "application/json"),  # none of ours: answered anyway, as before
    ],
)
def test_the_answer_is_in_the_type_the_client_ranks_first(db, accept, answered_in):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = post("{ mee }", **headers)
    assert response["Content-Type"].split(";")[0] == answered_in
    assert response.status_code == (400 if answered_in == GRAPHQL_RESPONSE else 200)
    assert "Accept" in response["Vary"]


def _exchange(url, query, variables=None, accept=None):
    headers = {"Content-Type": "application/json"}
    if accept:
        headers["Accept"] = accept
    body = json.dumps({"query": query, "variables": variables}).encode()
    return http(url, "POST", "/graphql/", body, headers)


@served
def test_with_graphql_response_json_a_request_that_cannot_run_is_a_400_without_data():
    async def answers(url):
        refused = [_exchange(url, q, v, PREFERS_GRAPHQL_RESPONSE) for _, q, v, _ in REFUSED]
        legacy = [_exchange(url, q, v) for _, q, v, _ in REFUSED]
        ran = [
            _exchange(url, "{ __typename }", accept=PREFERS_GRAPHQL_RESPONSE),
            _exchange(url, "{ me { id } }", accept=PREFERS_GRAPHQL_RESPONSE),  # no token
        ]
        return await asyncio.gather(*refused, *legacy, *ran)

    with start_server({"GRAPHIQL": "0"}) as server:
        everything = asyncio.run(answers(server.url))
    refused, legacy, ran = everything[:8], everything[8:16], everything[16:]

    for (name, *_, code), answer in zip(REFUSED, refused, strict=True):
        assert answer.status == 400, (name, answer)
        assert answer.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8", name
        body = answer.json()
        assert "data" not in body, name  # nothing ran
        assert {error["extensions"]["code"] for error in body["errors"]} == {code}, name
    for (name, *_, code), answer in zip(REFUSED, legacy, strict=True):
        assert (answer.status, answer.headers["content-type"]) == (200, "application/json"), name
        assert answer.json()["data"] is None, name
        assert answer.json()["errors"][0]["extensions"]["code"] == code, name

    typename, me = ran
    assert typename.status == 200 and typename.json() == {"data": {"__typename": "Query"}}
    # A field's error is a partial answer, not a refused request: 200, with data null.
    assert me.status == 200 and me.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert me.json()["data"] is None
    assert me.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_body_that_is_not_graphql_is_answered_in_the_type_asked_for(db):
    response = Client().post(
        "/graphql/", b"[]", content_type="application/json", HTTP_ACCEPT=PREFERS_GRAPHQL_RESPONSE
    )
    assert response.status_code == 400
    assert response["Content-Type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# Bodies that are not a GraphQL request: a 400 with a GraphQL-shaped error, never a 500.

ME_FIRST = "query($first: Int!) { me { referrals(first: $first) { totalCount } } }"
MALFORMED_BODIES = {
    "null": b"null",
    "number": b"123",
    "string": b'"x"',
    "true": b"true",
    "empty-array": b"[]",
    "not-json": b"{not json",
    "query-not-a-string": b'{"query": 5}',
    "variables-not-an-object": b'{"query": "{ me { id } }", "variables": "x"}',
    "invalid-utf8": b'{"query": "\xff\xfe"}',
    "nested-100000": b"[" * 100_000 + b"]" * 100_000,
    "number-of-5000-digits": json.dumps({"query": ME_FIRST}).encode()[:-1]
    + b', "variables": {"first": '
    + b"9" * 5000
    + b"}}",
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_a_malformed_body_is_a_400_with_a_graphql_error(db, body):
    response = Client().post("/graphql/", body, content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" and error["message"]


def test_deeply_nested_variables_in_a_get_are_a_400_with_a_graphql_error(db):
    nested = "[" * 100_000 + "]" * 100_000
    response = Client().get("/graphql/", {"query": "{ __typename }", "variables": nested})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
