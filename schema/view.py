"""The one GraphQL endpoint, served asynchronously.

Every answer is JSON: a body that is not a GraphQL request (not JSON, not an object,
invalid UTF-8, nested past what the parser allows, a number too long to read) is a
400 with a GraphQL-shaped error, never a server error.

The media type and status follow the GraphQL-over-HTTP specification (draft of
2025). A client whose Accept header prefers `application/graphql-response+json` gets
that type, and for a request that could not be run (it does not parse or validate,
or its variables do not fit, codes in schema/errors.py) a 400 whose body has no
`data` entry. Everyone else, without an Accept header or with `*/*`, gets
`application/json` and, as before, 200 for every GraphQL request, `"data": null` when
nothing ran; a client cannot tell a 4xx of ours in that type from a proxy's.
"""

import json
from typing import Any, Literal, cast

from cross_web import HTTPException
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import translation
from django.utils.cache import patch_vary_headers
from strawberry.django.views import AsyncGraphQLView
from strawberry.http import GraphQLHTTPResponse

from backend import database
from backend.languages import preferred_language
from schema.context import Context
from schema.errors import REQUEST_ERRORS
from schema.graphiql import render_graphiql

ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


def response_media_type(accept: str) -> str:
    """The type to answer in: the one of ours the Accept header ranks highest.

    By q-value, then a type named outright before a wildcard, then the order listed
    (`application/graphql-response+json, application/json` is the first). A wildcard,
    no header, or neither type: application/json.
    """
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media_range, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if not 0 < quality <= 1:
            continue
        media_range = media_range.lower()
        if media_range in (GRAPHQL_RESPONSE, JSON):
            ranked.append((quality, 1, -position, media_range))
        elif media_range in ("application/*", "*/*"):
            ranked.append((quality, 0, -position, JSON))
    return max(ranked)[3] if ranked else JSON


def content_type(media_type: str) -> str:
    return f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else media_type


def error_response(status: int, message: str, media_type: str = JSON) -> JsonResponse:
    code = ERROR_CODES.get(status, "BAD_REQUEST")
    return JsonResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status=status,
        content_type=content_type(media_type),
    )


def request_error_status(response: GraphQLHTTPResponse) -> int | None:
    """The status of an answer to a request that was refused before anything ran.

    None when something ran: data, or errors at a field's path (a partial answer,
    200 whatever the type). 400 when the client's request was at fault, else 500.
    """
    errors = cast(list[dict[str, Any]], response.get("errors"))  # formatted GraphQLErrors
    if not errors or response.get("data") is not None:
        return None
    if any(error.get("path") for error in errors):
        return None
    codes = {(error.get("extensions") or {}).get("code") for error in errors}
    return 400 if codes <= REQUEST_ERRORS else 500


class GraphQLView(AsyncGraphQLView[Context, None]):
    @property
    def graphql_ide(self) -> Literal["graphiql"] | None:
        return "graphiql" if settings.GRAPHIQL else None

    @graphql_ide.setter
    def graphql_ide(self, value: object) -> None:
        """Set by as_view(); GRAPHIQL decides."""

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        """Our GraphiQL page, which loads nothing from another host (schema/graphiql.py)."""
        return render_graphiql(request)

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # Django makes a view object per request, so this is this request's.
        self.media_type = response_media_type(request.headers.get("Accept", ""))
        language = preferred_language(request.headers.get("Accept-Language", ""))
        with translation.override(language):
            async with database.request_scope():
                try:
                    response = await self.run(request=request)
                except HTTPException as error:
                    response = error_response(error.status_code, error.reason, self.media_type)
        patch_vary_headers(response, ["Accept", "Accept-Language"])
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: HttpResponse,
    ) -> HttpResponseBase:
        """The answer in the media type asked for; see the module docstring."""
        if self.media_type != GRAPHQL_RESPONSE or isinstance(response_data, list):
            return super().create_response(response_data, sub_response)
        status = request_error_status(response_data)
        if status is not None:  # nothing ran: the GraphQL specification leaves `data` out
            response_data = cast(
                GraphQLHTTPResponse, {k: v for k, v in response_data.items() if k != "data"}
            )
        response = super().create_response(response_data, sub_response)
        response["Content-Type"] = content_type(GRAPHQL_RESPONSE)
        if status is not None:
            response.status_code = status
        return response

    def decode_json(self, data: str | bytes) -> object:
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):  # JSON, UTF-8, integer length or nesting
            raise HTTPException(400, "The request is not valid JSON.") from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "The request must be a JSON object.")
        return value

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        return Context.for_request(request, response)
