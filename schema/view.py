"""The one GraphQL endpoint, served asynchronously.

Every answer is JSON: a body that is not a GraphQL request (not JSON, not an object,
invalid UTF-8, nested past what the parser allows, a number too long to read) is a
400 with a GraphQL-shaped error, never a server error.
"""

import json
from typing import Any, Literal

from cross_web import HTTPException
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils import translation
from django.utils.cache import patch_vary_headers
from strawberry.django.views import AsyncGraphQLView

from backend import database
from backend.languages import preferred_language
from schema.context import Context
from schema.graphiql import render_graphiql

ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def error_response(status: int, message: str) -> JsonResponse:
    code = ERROR_CODES.get(status, "BAD_REQUEST")
    return JsonResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status=status
    )


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
        language = preferred_language(request.headers.get("Accept-Language", ""))
        with translation.override(language):
            async with database.request_scope():
                try:
                    response = await self.run(request=request)
                except HTTPException as error:
                    response = error_response(error.status_code, error.reason)
        patch_vary_headers(response, ["Accept-Language"])
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
