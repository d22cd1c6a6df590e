"""The schema object, its limits and caches."""

import strawberry
from django.conf import settings
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from schema.errors import ErrorPolicy, IntrospectionPolicy
from schema.mutations import Mutation
from schema.queries import Query


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """ErrorPolicy logs what is unexpected; user mistakes are not server errors."""


schema = Schema(
    query=Query,
    mutation=Mutation,
    extensions=[
        IntrospectionPolicy,
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: QueryDepthLimiter(max_depth=settings.GRAPHQL_MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=settings.GRAPHQL_MAX_ALIASES),
        lambda: ValidationCache(maxsize=256),
        ErrorPolicy,
    ],
)
