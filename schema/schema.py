"""The schema object, its limits and caches."""

from collections.abc import Iterator
from functools import cache

import strawberry
from django.conf import settings
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxTokensLimiter, ParserCache, SchemaExtension, ValidationCache
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from schema.errors import ErrorPolicy
from schema.mutations import Mutation
from schema.queries import Query


@cache
def _rules(max_depth: int, max_aliases: int, introspection: bool) -> tuple:
    rules = (depth_rule(max_depth, None), aliases_rule(max_aliases))
    return rules if introspection else (*rules, NoSchemaIntrospectionCustomRule)


class GraphQLLimits(SchemaExtension):
    """Depth (10) and aliases (15) limits, and introspection only with GRAPHIQL.

    The rule classes are made once per setting, so ValidationCache, which keys on
    them, answers repeated queries without validating them again.
    """

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = (
            *self.execution_context.validation_rules,
            *_rules(settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES, settings.GRAPHIQL),
        )
        yield


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """ErrorPolicy logs what is unexpected; user mistakes are not server errors."""


schema = Schema(
    query=Query,
    mutation=Mutation,
    extensions=[
        GraphQLLimits,
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        ErrorPolicy,
    ],
)
