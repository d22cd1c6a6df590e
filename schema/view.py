"""The one GraphQL endpoint, served asynchronously."""

from django.conf import settings
from strawberry.django.views import AsyncGraphQLView

from schema.context import Context, bearer_token, client_ip


class GraphQLView(AsyncGraphQLView):
    allow_queries_via_get = True  # GET runs queries only; mutations need POST

    @property
    def graphql_ide(self):
        return "graphiql" if settings.GRAPHIQL else None

    @graphql_ide.setter
    def graphql_ide(self, value):
        """Set by as_view(); GRAPHIQL decides."""

    async def get_context(self, request, response) -> Context:
        return Context(
            request=request,
            response=response,
            token=bearer_token(request),
            client_ip=client_ip(request),
        )
