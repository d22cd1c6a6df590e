"""The schema object: its types, limits, caches and error policy."""

from collections.abc import Iterable
from typing import Any

import strawberry
from cross_web import HTTPException
from django.conf import settings
from strawberry.extensions import MaxTokensLimiter
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from schema.errors import ErrorPolicy
from schema.execution import execution_context_class
from schema.limits import CachedParser, GraphQLLimits
from schema.mutations import Mutation
from schema.observe import ObserveOperation
from schema.queries import Query
from schema.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """ErrorPolicy logs what is unexpected; user mistakes are not server errors."""

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """strawberry checks the `query`, `variables` and `extensions` of a JSON body but
        hands `operationName` on as it came: a number there broke the request's metrics
        and its access line. It is the request's mistake, a 400 as theirs are."""
        if operation_name is not None and not isinstance(operation_name, str):
            raise HTTPException(
                400, "The GraphQL operation's `operationName` must be a string or null."
            )
        # Subscriptions are served over WebSocket only (schema/websocket.py): over HTTP
        # they are a 400 that says so, not strawberry's multipart streams.
        if allowed_operation_types is not None:
            allowed_operation_types = set(allowed_operation_types) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        CachedParser,
        GraphQLLimits,
        ObserveOperation,  # before ErrorPolicy, so it sees the codes ErrorPolicy gives
        ErrorPolicy,
    ],
    execution_context_class=execution_context_class(),
)
