"""The schema object: its types, limits, caches and error policy."""

from typing import Any

import strawberry
from django.conf import settings
from strawberry.extensions import MaxTokensLimiter, ParserCache

from schema.errors import ErrorPolicy
from schema.execution import ExecutionContext
from schema.limits import GraphQLLimits
from schema.mutations import Mutation
from schema.observe import ObserveOperation
from schema.queries import Query


class Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """ErrorPolicy logs what is unexpected; user mistakes are not server errors."""


schema = Schema(
    query=Query,
    mutation=Mutation,
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        GraphQLLimits,
        ObserveOperation,  # before ErrorPolicy, so it sees the codes ErrorPolicy gives
        ErrorPolicy,
    ],
    execution_context_class=ExecutionContext,
)
